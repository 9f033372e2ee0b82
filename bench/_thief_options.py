"""Options the training-step benchmarks share: the thief's shape, how many steps to time, and where to write."""
from __future__ import annotations

import argparse

SIZES = ("resolution", "channels", "width", "batch", "steps", "rounds", "threads")


def add_thief_options(p: argparse.ArgumentParser, steps: int, steps_help: str) -> None:
    """--resolution --channels --width --batch (the default fast thief at 3x64x64), --steps, --rounds,
    --threads, --out."""
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=steps, help=steps_help)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")


def parse_thief_options(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, refusing a size or count below one with the flag's name."""
    a = p.parse_args(argv)
    for name in SIZES:
        if getattr(a, name) <= 0:
            p.error(f"--{name} must be > 0")
    return a
