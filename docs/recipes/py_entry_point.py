"""A model that cannot be exported: faststeal imports this file and calls `make_generator()`.

`faststeal extract --target py:docs/recipes/py_entry_point.py:make_generator` runs this code in the
faststeal process: point it only at code you trust. The factory takes no arguments and returns an
nn.Module (or any callable from codes to images).
"""
import torch


def make_generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(                      # stands for your own model and its weights
        torch.nn.Linear(64, 3 * 32 * 32), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 32, 32))).eval()
