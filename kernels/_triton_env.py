"""Lazy Triton access: the package must import (and the torch path must run) without Triton installed.

Kernels are compiled for the GPU, or run by Triton's CPU interpreter when TRITON_INTERPRET=1 was set
before Triton was first imported. Which of the two we got is fixed when the kernel modules load, so a
CPU tensor reaching a compiled kernel is caught here with a clear message instead of a crash.
"""
from __future__ import annotations

import os

import torch

_state: dict = {}


def triton_available() -> bool:
    """True when `import triton` works (cached; never raises)."""
    if "available" not in _state:
        try:
            import triton  # noqa: F401
            _state["available"] = True
        except Exception:  # ImportError, or a broken install on an unsupported platform
            _state["available"] = False
    return _state["available"]


def interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def check_can_run(tensors) -> None:
    """Raise a RuntimeError saying why forced Triton cannot run on these tensors; return if it can."""
    if not triton_available():
        raise RuntimeError("impl='triton' (or FASTSTEAL_KERNELS=triton) was requested but the 'triton' package "
                           "is not importable; install triton or use impl='torch'")
    devices = {t.device.type for t in tensors if isinstance(t, torch.Tensor)}
    if devices <= {"cuda"}:
        return
    if devices != {"cpu"}:
        raise RuntimeError(f"Triton kernels need all tensors on one kind of device, got {sorted(devices)}")
    if not interpreter_requested():
        raise RuntimeError("impl='triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before triton is imported (or use impl='torch', or move the tensors to CUDA)")
    from . import triton_conv  # imports triton; tells whether the kernels were built interpreted
    if not triton_conv.kernels_interpreted():
        raise RuntimeError("Triton was imported before TRITON_INTERPRET=1 was set, so its kernels were compiled "
                           "for the GPU and cannot take CPU tensors; set the variable before importing triton")
