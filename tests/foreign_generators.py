"""Generators of architectures faststeal does not train, written the way their authors publish them.

DCGAN follows the PyTorch tutorial's shape (codes (N, nz, 1, 1), ConvTranspose + BatchNorm + ReLU, tanh);
the others cover a (N, d) code with [0, 1] output, a class-conditional model and broken models. They are
small so that every format and command runs on them in seconds.
"""
from __future__ import annotations

import torch
import torch.nn as nn

NZ = 16


class DCGAN(nn.Module):
    """The PyTorch DCGAN tutorial generator at reduced width: (N, nz, 1, 1) -> tanh images (N, nc, 64, 64)."""

    def __init__(self, nz: int = NZ, ngf: int = 8, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


def make_dcgan(seed: int = 0) -> DCGAN:
    """A DCGAN with seeded weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    g = DCGAN()
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return g.eval()


class UnitRangeMLP(nn.Module):
    """(N, 24) codes -> grey 32x32 images in [0, 1] (sigmoid), like many hand-rolled generators."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 32 * 32), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, 1, 32, 32)


class Conditional(nn.Module):
    """G(z, y): an embedding of the class index y added to the code; (N, 8) codes, 10 classes, 32x32 RGB."""

    def __init__(self, classes: int = 10):
        super().__init__()
        torch.manual_seed(2)
        self.embed = nn.Embedding(classes, 8)
        self.net = nn.Sequential(nn.Linear(8, 3 * 32 * 32), nn.Tanh())

    def forward(self, z, y):
        return self.net(z + self.embed(y)).view(-1, 3, 32, 32)


def make_dcgan_factory():
    """A py: entry point: a factory taking no arguments."""
    return make_dcgan()


def make_odd_size():
    return nn.Sequential(nn.Linear(NZ, 3 * 40 * 40), nn.Unflatten(1, (3, 40, 40)))


def make_nan():
    return nn.Sequential(nn.Linear(NZ, 3 * 32 * 32), nn.Unflatten(1, (3, 32, 32)), _Nan())


class _Nan(nn.Module):
    def forward(self, x):
        return x * float("nan")


def make_grey128():
    """(N, 12) codes -> grey 128x128 images in [-1, 1]."""
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(12, 32 * 32), nn.Tanh(), nn.Unflatten(1, (1, 32, 32)),
                         nn.Upsample(scale_factor=4, mode="bilinear"))


def make_byte_range():
    """Float outputs in [0, 255], as a model that ends in `* 255` returns them."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(NZ, 3 * 32 * 32), nn.Sigmoid(), _Scale(255.0), nn.Unflatten(1, (3, 32, 32)))


class _Scale(nn.Module):
    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


NOT_CALLABLE = 42
