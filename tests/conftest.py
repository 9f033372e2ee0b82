"""Test-wide settings. Triton must see TRITON_INTERPRET before it is first imported, so it is set here."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(min(2, torch.get_num_threads()))
