"""A PGAN from pytorch_GAN_zoo: its generator network takes (N, 512) codes and returns [-1, 1] images.

`model` is the zoo's ProgressiveGAN (e.g. from torch.hub); `model.netG` is the full-resolution generator.
The exported program keeps a free batch dimension so that faststeal can ask for any number of images.
"""
import torch


def export(netG: torch.nn.Module, path: str, latent_dim: int = 512) -> None:
    netG.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(netG, (torch.randn(2, latent_dim),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    # then: faststeal extract --target PATH.pt2
