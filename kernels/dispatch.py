"""Choose between the torch reference and the Triton kernels for each call."""
from __future__ import annotations

import os

import torch

from . import reference

IMPLS = ("auto", "torch", "triton")


def resolve_impl(impl: str, *tensors: torch.Tensor) -> str:
    """Return "torch" or "triton" for these tensors; raise if Triton is forced where it cannot run."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    env = os.environ.get("FASTSTEAL_KERNELS", "").strip().lower()
    if impl == "auto" and env:
        if env not in ("torch", "triton"):
            raise ValueError(f"FASTSTEAL_KERNELS must be 'torch' or 'triton', got {env!r}")
        impl = env
    if impl == "auto":
        return "torch"  # Triton kernels are wired in by faststeal.kernels.triton_* when available.
    if impl == "triton":
        raise RuntimeError("impl='triton' requested but the Triton kernels are not built into this version; "
                           "use impl='torch' or unset FASTSTEAL_KERNELS")
    return impl


def eqlr_conv2d(x, weight, bias=None, *, impl: str = "auto", **kwargs):
    """Equalized-LR conv with fused up/down, bias, activation and pixel norm. See reference.eqlr_conv2d."""
    resolve_impl(impl, x, weight)
    return reference.eqlr_conv2d(x, weight, bias, **kwargs)


def eqlr_linear(x, weight, bias=None, *, impl: str = "auto", **kwargs):
    """Equalized-LR dense layer with fused bias/activation/pixel norm. See reference.eqlr_linear."""
    resolve_impl(impl, x, weight)
    return reference.eqlr_linear(x, weight, bias, **kwargs)


def spectral_norm(weight, u, *, impl: str = "auto", **kwargs):
    """Power-iteration spectral norm; returns (weight / sigma, sigma, u_new). See reference.spectral_norm."""
    resolve_impl(impl, weight)
    return reference.spectral_norm(weight, u, **kwargs)


def spectral_norm_multi(weights, us, *, impl: str = "auto", **kwargs):
    """Spectral norm of many layers in one call (one launch on Triton)."""
    resolve_impl(impl, *weights)
    return reference.spectral_norm_multi(weights, us, **kwargs)
