"""Choose between the torch reference and the Triton kernels for each call.

"auto" takes, for CUDA tensors, the path measured faster there (AUTO_ON_CUDA) and the reference otherwise;
FASTSTEAL_KERNELS overrides "auto". A forced "triton" never falls back: it runs (GPU, or the interpreter on CPU when
TRITON_INTERPRET=1) or raises. Triton modules are imported only on the Triton path.
"""
from __future__ import annotations

import os

import torch

from . import reference
from ._triton_env import check_can_run, triton_available

IMPLS = ("auto", "torch", "triton")

# What "auto" runs on a GPU, per kernel family, from bench/kernels.py on an H200 (docs/results/speed.md, "On
# a GPU"): the Triton equalized-LR convolution is slower than the cuDNN-backed reference at these sizes (PGGAN
# training step 57.6 vs 35.5 ms at 32 px), while the one-launch spectral norm is faster (SNGAN step 23.9 vs
# 26.7 ms). Forcing either path stays possible (impl= or FASTSTEAL_KERNELS).
AUTO_ON_CUDA = {"eqlr": "torch", "spectral_norm": "triton"}


def resolve_impl(impl: str, *tensors: torch.Tensor, family: str = "spectral_norm") -> str:
    """Return "torch" or "triton" for these tensors; raise if Triton is forced where it cannot run."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    env = os.environ.get("FASTSTEAL_KERNELS", "").strip().lower()
    if impl == "auto" and env and env != "auto":
        if env not in ("torch", "triton"):
            raise ValueError(f"FASTSTEAL_KERNELS must be 'torch', 'triton' or 'auto', got {env!r}")
        impl = env
    if impl == "auto":
        on_cuda = bool(tensors) and all(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
        return "triton" if on_cuda and AUTO_ON_CUDA[family] == "triton" and triton_available() else "torch"
    if impl == "triton":
        check_can_run(tensors)
    return impl


def eqlr_conv2d(x, weight, bias=None, *, impl: str = "auto", **kwargs):
    """Equalized-LR conv with fused up/down, bias, activation and pixel norm. See reference.eqlr_conv2d."""
    if resolve_impl(impl, x, weight, family="eqlr") == "triton":
        from . import triton_conv  # imports triton: only once a Triton launch is chosen
        kwargs.setdefault("gain", reference.DEFAULT_GAIN)
        return triton_conv.eqlr_conv2d(x, weight, bias, **kwargs)
    return reference.eqlr_conv2d(x, weight, bias, **kwargs)


def eqlr_linear(x, weight, bias=None, *, impl: str = "auto", **kwargs):
    """Equalized-LR dense layer with fused bias/activation/pixel norm. See reference.eqlr_linear."""
    if resolve_impl(impl, x, weight, family="eqlr") == "triton":
        from . import triton_conv  # imports triton: only once a Triton launch is chosen
        kwargs.setdefault("gain", reference.DEFAULT_GAIN)
        return triton_conv.eqlr_linear(x, weight, bias, **kwargs)
    return reference.eqlr_linear(x, weight, bias, **kwargs)


def spectral_norm(weight, u, *, impl: str = "auto", **kwargs):
    """Power-iteration spectral norm; returns (weight / sigma, sigma, u_new). See reference.spectral_norm."""
    if resolve_impl(impl, weight, u) == "triton":
        from . import triton_sn  # imports triton: only once a Triton launch is chosen
        return triton_sn.spectral_norm(weight, u, **kwargs)
    return reference.spectral_norm(weight, u, **kwargs)


def spectral_norm_multi(weights, us, *, impl: str = "auto", **kwargs):
    """Spectral norm of many layers in one call (one launch on Triton). Returns three lists."""
    if resolve_impl(impl, *weights, *us) == "triton":
        from . import triton_sn  # imports triton: only once a Triton launch is chosen
        return triton_sn.spectral_norm_multi(weights, us, **kwargs)
    return reference.spectral_norm_multi(weights, us, **kwargs)
