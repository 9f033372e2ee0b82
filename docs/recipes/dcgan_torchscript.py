"""The PyTorch DCGAN tutorial's generator, saved as TorchScript.

`netG` is the tutorial's Generator (codes of shape (N, nz, 1, 1), tanh output), trained or loaded as usual.
Tracing records what the model computes; loading it back runs no pickled Python.
"""
import torch


def export(netG: torch.nn.Module, path: str, nz: int = 100) -> None:
    netG.eval()                                     # BatchNorm uses its running statistics when traced
    torch.jit.trace(netG, torch.randn(2, nz, 1, 1)).save(path)
    # then: faststeal extract --target PATH   (nz and the (N, nz, 1, 1) layout are probed)
