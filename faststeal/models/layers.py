"""Layer modules: thin parameter holders whose arithmetic lives in faststeal.kernels.

Keeping the maths in kernels means the models never change when a kernel gets faster.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faststeal import distributed, kernels


class EqualizedConv2d(nn.Module):
    """Conv with weights stored ~N(0, 1) and scaled at run time by gain / sqrt(fan_in) (PGGAN's equalized LR).

    Optional fused 2x nearest upsample (before) or 2x average downsample (after), activation and pixel norm.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, gain: float = math.sqrt(2),
                 up: int = 1, down: int = 1, activation: str = "lrelu", pixelnorm: bool = False,
                 padding: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.options = dict(gain=gain, up=up, down=down, activation=activation, pixelnorm=pixelnorm,
                            padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.eqlr_conv2d(x, self.weight, self.bias, **self.options)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, k={self.weight.shape[-1]}, {self.options}"


class EqualizedLinear(nn.Module):
    """Dense layer with equalized learning rate; see EqualizedConv2d."""

    def __init__(self, in_features: int, out_features: int, *, gain: float = math.sqrt(2),
                 activation: str = "lrelu", pixelnorm: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.options = dict(gain=gain, activation=activation, pixelnorm=pixelnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.eqlr_linear(x, self.weight, self.bias, **self.options)


class MinibatchStddev(nn.Module):
    """Append one feature map: the mean over features of the per-group standard deviation (PGGAN).

    The batch is split into groups of ``group_size`` (or the whole batch when it is smaller / indivisible);
    every sample in a group gets the same extra channel, telling D how varied the batch is.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g != 0:
            g = n
        y = x.reshape(g, n // g, c, h, w)
        y = y - y.mean(dim=0, keepdim=True)
        y = (y.pow(2).mean(dim=0) + self.eps).sqrt()        # (n/g, c, h, w)
        y = y.mean(dim=(1, 2, 3)).view(n // g, 1, 1, 1)     # (n/g, 1, 1, 1)
        y = y.repeat(g, 1, h, w)                            # sample i belongs to group column i % (n/g)
        return torch.cat([x, y], dim=1)


class SpectralNormed(nn.Module):
    """Base for spectrally normalised layers with a persistent left singular vector ``u``.

    The owning model calls ``apply_spectral_norm(model)`` once per forward: one power iteration for every
    layer in a single kernel call, then each layer reads its ``weight_sn``.
    """

    def _init_sn(self, out_features: int):
        u = torch.randn(out_features)
        self.register_buffer("u", u / u.norm())
        self.weight_sn: torch.Tensor | None = None

    def normalized_weight(self) -> torch.Tensor:
        if self.weight_sn is None:
            raise RuntimeError("spectral norm not applied; call apply_spectral_norm(model) before forward")
        return self.weight_sn


class SNConv2d(SpectralNormed):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, padding: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.padding = kernel_size // 2 if padding is None else padding
        self._init_sn(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


class SNLinear(SpectralNormed):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self._init_sn(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


def apply_spectral_norm(model: nn.Module) -> None:
    """Normalise every SpectralNormed layer of ``model`` in one multi-tensor call.

    In training mode ``u`` advances one power iteration (and is stored); in eval mode the stored ``u`` is used.
    """
    layers = [m for m in model.modules() if isinstance(m, SpectralNormed)]
    if not layers:
        return
    weights, _, us = kernels.spectral_norm_multi([m.weight for m in layers], [m.u for m in layers],
                                                 update_u=model.training)
    for m, w, u in zip(layers, weights, us):
        m.weight_sn = w
        if model.training:
            with torch.no_grad():
                m.u.copy_(u)


class RankSyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span the global batch of all torch.distributed ranks.

    With one process it is exactly nn.BatchNorm2d. Under data parallelism each rank holds a slice of the
    batch; normalising by per-slice statistics would train a different model than one process does, and
    torch's SyncBatchNorm only runs on GPUs. Mean and variance are all-reduced (two passes, for accuracy)
    with a differentiable all-reduce, on CPU and GPU alike; the state dict is nn.BatchNorm2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed.active()):
            return super().forward(x)
        count = distributed.all_sum(x.new_tensor([float(x.shape[0] * x.shape[2] * x.shape[3])]))
        mean = distributed.differentiable_sum(x.sum(dim=(0, 2, 3))) / count
        centred = x - mean.view(1, -1, 1, 1)
        var = distributed.differentiable_sum(centred.pow(2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(unbiased.detach(), m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y
