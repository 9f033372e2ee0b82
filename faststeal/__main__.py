"""`python -m faststeal` (and `torchrun -m faststeal`) runs the CLI."""
from .cli import main

main()
