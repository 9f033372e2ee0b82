"""A py: target for the serving tests: a 32x32 grey generator that fails inside on codes far from the prior."""
import torch
from torch import nn

NZ = 8


class _Fragile(nn.Module):
    def forward(self, z):
        if z.abs().max() > 1000:
            raise RuntimeError("internal state /secret/path/weights.bin is unreadable")
        return z


def make_fragile():
    torch.manual_seed(0)
    return nn.Sequential(_Fragile(), nn.Linear(NZ, 32 * 32), nn.Tanh(), nn.Unflatten(1, (1, 32, 32)))
