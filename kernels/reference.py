"""Plain-torch reference implementations of every faststeal kernel.

These are the oracles the Triton kernels are tested against and the path used on CPUs. Each function is the
textbook formula with autograd doing the backward pass, rearranged only where the algebra is exact and the
CPU gains (bench/kernels.py measures it):

* the He constant (and a positive activation gain, since leaky ReLU is positively homogeneous) scales the
  small weight, never the activations, and the bias rides inside the convolution;
* nearest 2x upsample + conv is one stride-2 transposed conv with a (k+1)x(k+1) kernel: 2.25x fewer MACs
  for k=3, and it avoids upsample_nearest2d's slow CPU backward (below 8x8 inputs the plain chain is
  quicker);
* conv + 2x2 average is one stride-2 conv with the box-filtered (k+1)x(k+1) kernel.
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


def box_kernel(weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Kernel of conv(stride) followed by a 2x2 average, as one conv: size k+stride, stride 2*stride."""
    s = stride
    return 0.25 * sum(F.pad(weight, (s * dx, s * (1 - dx), s * dy, s * (1 - dy))) for dy in (0, 1) for dx in (0, 1))


def upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Transposed-conv kernel (in, out, k+1, k+1) equal to nearest 2x upsample followed by conv(weight)."""
    return 4.0 * box_kernel(weight.flip(2, 3)).transpose(0, 1)


def _act_norm(x: torch.Tensor, activation: str, alpha: float, act_gain: float, pixelnorm: bool) -> torch.Tensor:
    """Activation, leftover gain and pixel norm; x is a fresh tensor, so leaky ReLU runs in place."""
    if activation == "lrelu":
        x = F.leaky_relu(x, alpha, inplace=True)
    if act_gain != 1.0:
        x = x * act_gain
    return pixel_norm(x) if pixelnorm else x


def _fold_gain(weight, bias, gain, activation, act_gain):
    """(scaled weight, bias, leftover gain): a positive act_gain commutes with leaky ReLU into W and b."""
    if activation not in ("lrelu", "linear"):
        raise ValueError(f"activation must be 'lrelu' or 'linear', got {activation!r}")
    scale = he_scale(weight, gain)
    if act_gain > 0 and act_gain != 1.0:
        scale, bias, act_gain = scale * act_gain, (bias * act_gain if bias is not None else None), 1.0
    return weight * scale, bias, act_gain


def eqlr_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                gain: float = DEFAULT_GAIN, stride: int = 1, padding: int | None = None, up: int = 1,
                down: int = 1, activation: str = "lrelu", alpha: float = 0.2, act_gain: float = 1.0,
                pixelnorm: bool = False) -> torch.Tensor:
    """Equalized-LR convolution: [nearest 2x up] -> conv(W * he_scale) -> [2x2 average] -> _act_norm.

    ``padding`` (default: 'same' for odd kernels, 0 for even) pads the conv's own input, i.e. the upsampled
    image when up=2; ``stride`` is the conv's stride, applied before the 2x2 average when down=2.
    """
    if up not in (1, 2) or down not in (1, 2):
        raise ValueError(f"up and down must be 1 or 2, got up={up}, down={down}")
    k = weight.shape[-1]
    if padding is None:
        padding = default_padding(k)
    w, b, act_gain = _fold_gain(weight, bias, gain, activation, act_gain)
    if up == 2 and down == 1 and stride == 1 and padding <= k - 1 and x.shape[-1] * x.shape[-2] >= 64:
        x = F.conv_transpose2d(x, upsample_kernel(w), b, stride=2, padding=k - 1 - padding)
    elif down == 2 and up == 1:
        x = F.conv2d(x, box_kernel(w, stride), b, stride=2 * stride, padding=padding)
    else:  # rare combinations: the literal chain
        if up == 2:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.conv2d(x, w, b if down == 1 else None, stride=stride, padding=padding)
        if down == 2:
            x = F.avg_pool2d(x, 2)
            if b is not None:
                x = x + b.view(1, -1, 1, 1)
    return _act_norm(x, activation, alpha, act_gain, pixelnorm)


def eqlr_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                gain: float = DEFAULT_GAIN, activation: str = "lrelu", alpha: float = 0.2,
                act_gain: float = 1.0, pixelnorm: bool = False) -> torch.Tensor:
    """Equalized-LR dense layer: x @ (W * he_scale)^T -> _act_norm."""
    w, b, act_gain = _fold_gain(weight, bias, gain, activation, act_gain)
    return _act_norm(F.linear(x, w, b), activation, alpha, act_gain, pixelnorm)


def _normalize(v: torch.Tensor, eps: float) -> torch.Tensor:
    """v / max(|v|, eps) in one call (the per-layer cost here is launch overhead, not arithmetic)."""
    return F.normalize(v, dim=0, eps=eps)


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
