"""faststeal.kernels: the compute primitives every model layer goes through.

Each public function takes ``impl="auto"|"torch"|"triton"``. The torch reference (kernels/reference.py)
is the oracle and the CPU path; Triton versions are used for CUDA tensors. The environment variable
``FASTSTEAL_KERNELS=torch|triton`` overrides "auto". Forcing Triton where it cannot run is an error, never a
silent fallback.

Triton is imported only when a Triton path runs (kernels/triton_conv.py, kernels/triton_sn.py), so this
package imports and runs its reference path on machines without Triton.
"""
from .dispatch import eqlr_conv2d, eqlr_linear, resolve_impl, spectral_norm, spectral_norm_multi
from .reference import default_padding, he_scale, pixel_norm

__all__ = ["eqlr_conv2d", "eqlr_linear", "spectral_norm", "spectral_norm_multi", "resolve_impl",
           "pixel_norm", "he_scale", "default_padding"]
