"""Plain-torch reference implementations of every faststeal kernel.

These are the oracles the Triton kernels are tested against and the path used on CPUs. They are written
for clarity first: each function is the textbook formula, with autograd doing the backward pass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PIXELNORM_EPS = 1e-8
DEFAULT_GAIN = math.sqrt(2)


def default_padding(kernel_size: int) -> int:
    """'Same' padding for odd kernels; no padding for even ones (the 4x4 'valid' conv of the PGGAN head)."""
    return kernel_size // 2 if kernel_size % 2 == 1 else 0


def he_scale(weight: torch.Tensor, gain: float) -> float:
    """Equalized learning rate: the runtime He constant gain / sqrt(fan_in) (fan_in = in * kh * kw)."""
    fan_in = weight[0].numel()
    return gain / math.sqrt(fan_in)


def pixel_norm(x: torch.Tensor, eps: float = PIXELNORM_EPS) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit RMS over channels (PGGAN's local response norm)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, activation: str, alpha: float, act_gain: float,
             pixelnorm: bool) -> torch.Tensor:
    """Bias, activation, gain and optional pixel norm: the elementwise tail shared by conv and linear."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.dim() - 2)
        x = x + bias.view(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, alpha)
    elif activation != "linear":
        raise ValueError(f"activation must be 'lrelu' or 'linear', got {activation!r}")
    if act_gain != 1.0:
        x = x * act_gain
    if pixelnorm:
        x = pixel_norm(x)
    return x


def eqlr_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                gain: float = DEFAULT_GAIN, stride: int = 1, padding: int | None = None, up: int = 1,
                down: int = 1, activation: str = "lrelu", alpha: float = 0.2, act_gain: float = 1.0,
                pixelnorm: bool = False) -> torch.Tensor:
    """Equalized-LR convolution: [nearest up] -> conv(W * he_scale) -> [2x2 average down] -> bias_act."""
    if up not in (1, 2) or down not in (1, 2):
        raise ValueError(f"up and down must be 1 or 2, got up={up}, down={down}")
    if padding is None:
        padding = default_padding(weight.shape[-1])
    if up == 2:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = F.conv2d(x, weight * he_scale(weight, gain), None, stride=stride, padding=padding)
    if down == 2:
        x = F.avg_pool2d(x, 2)
    return bias_act(x, bias, activation, alpha, act_gain, pixelnorm)


def eqlr_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                gain: float = DEFAULT_GAIN, activation: str = "lrelu", alpha: float = 0.2,
                act_gain: float = 1.0, pixelnorm: bool = False) -> torch.Tensor:
    """Equalized-LR dense layer: x @ (W * he_scale)^T -> bias_act."""
    x = F.linear(x, weight * he_scale(weight, gain))
    return bias_act(x, bias, activation, alpha, act_gain, pixelnorm)


def _normalize(v: torch.Tensor, eps: float) -> torch.Tensor:
    return v / v.norm().clamp_min(eps)


def spectral_norm(weight: torch.Tensor, u: torch.Tensor, *, n_iter: int = 1, eps: float = 1e-12,
                  update_u: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spectral normalisation by power iteration (Miyato et al. 2018).

    The weight is viewed as a matrix W of shape (out, in*kh*kw). With update_u, n_iter rounds of
    v = normalize(W^T u), u = normalize(W v) refine the left singular vector; otherwise u is used as is.
    Then v = normalize(W^T u) and sigma = u^T W v. Storing only u, this is exactly the per-forward update
    of torch.nn.utils.parametrizations.spectral_norm (rounds of u = normalize(W v), v = normalize(W^T u)).
    u and v are held constant in sigma, so the gradient flows only through W (as in the paper).
    Returns (weight / sigma, sigma, u_new); the caller stores u_new.
    """
    w_mat = weight.reshape(weight.shape[0], -1)
    with torch.no_grad():
        u_new = u.detach().to(w_mat.dtype)
        w_det = w_mat.detach()
        rounds = n_iter if update_u else 0
        for _ in range(rounds):
            v = _normalize(w_det.t() @ u_new, eps)
            u_new = _normalize(w_det @ v, eps)
        v = _normalize(w_det.t() @ u_new, eps)
    sigma = torch.dot(u_new, w_mat @ v)
    return weight / sigma, sigma, u_new


def spectral_norm_multi(weights: list[torch.Tensor], us: list[torch.Tensor], *, n_iter: int = 1,
                        eps: float = 1e-12, update_u: bool = True):
    """Spectral norm of many layers at once; the reference simply loops. Returns three lists."""
    outs = [spectral_norm(w, u, n_iter=n_iter, eps=eps, update_u=update_u) for w, u in zip(weights, us)]
    return [o[0] for o in outs], [o[1] for o in outs], [o[2] for o in outs]
