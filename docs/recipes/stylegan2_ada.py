"""A StyleGAN2-ADA generator (mapping + synthesis), wrapped to faststeal's interface and traced.

`G` is `G_ema` from a stylegan2-ada-pytorch pickle, loaded with that repository's code on the path (its
pickles hold code: load only files you trust). It takes z (N, z_dim) and a class vector c (empty for an
unconditional model), and returns images in about [-1, 1].
"""
import torch


class FaststealView(torch.nn.Module):
    """z -> images in [-1, 1] at a fixed truncation, with deterministic noise."""

    def __init__(self, G: torch.nn.Module, truncation_psi: float = 1.0):
        super().__init__()
        self.G, self.psi = G, truncation_psi

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = torch.zeros(z.shape[0], self.G.c_dim, device=z.device)
        return self.G(z, c, truncation_psi=self.psi, noise_mode="const").clamp(-1, 1)


def export(G: torch.nn.Module, path: str) -> None:
    view = FaststealView(G.eval())
    torch.jit.trace(view, torch.randn(2, G.z_dim), check_trace=False).save(path)
    # 1024x1024 models: resize inside FaststealView (faststeal measures 32, 64 or 128 pixels)
