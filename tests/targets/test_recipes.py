"""The "bring your own generator" recipes in docs/recipes run as written, on stand-ins with the same interfaces."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from foreign_generators import DCGAN

from faststeal.targets import open_target

RECIPES = Path(__file__).parents[2] / "docs" / "recipes"


def recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ZooPGAN(nn.Module):
    """Stands for pytorch_GAN_zoo's PGAN generator: (N, 512) codes -> [-1, 1] images."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(512, 3 * 32 * 32), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 3, 32, 32)


class StyleGAN2Like(nn.Module):
    """Stands for a stylegan2-ada-pytorch G: G(z, c, truncation_psi, noise_mode), a little beyond [-1, 1]."""

    z_dim, c_dim = 32, 0

    def __init__(self):
        super().__init__()
        self.mapping = nn.Linear(32, 32)
        self.synthesis = nn.Linear(32, 3 * 64 * 64)
        self.register_buffer("w_avg", torch.zeros(32))

    def forward(self, z, c, truncation_psi=1.0, noise_mode="random"):
        w = self.mapping(z)
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return 1.2 * torch.tanh(self.synthesis(w)).view(-1, 3, 64, 64)


def _same(target, model, z, view):
    with torch.no_grad():
        assert (target.generator(z) - model(view(z)).clamp(-1, 1)).abs().max() <= 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_dcgan_tutorial_to_torchscript(tmp_path):
    netG = DCGAN(nz=100).eval()
    recipe("dcgan_torchscript").export(netG, str(tmp_path / "g.ts"))
    t = open_target(str(tmp_path / "g.ts"))
    assert t.latent_dim == 100 and (t.resolution, t.channels) == (64, 3)
    _same(t, netG, torch.randn(3, 100), lambda z: z.view(-1, 100, 1, 1))


def test_pgan_zoo_to_torch_export(tmp_path):
    netG = ZooPGAN().eval()
    recipe("pgan_zoo").export(netG, str(tmp_path / "g.pt2"))
    t = open_target(str(tmp_path / "g.pt2"))
    assert t.kind == "export" and t.latent_dim == 512 and t.probed["latent_shape"] == "(N, d)"
    _same(t, netG, torch.randn(3, 512), lambda z: z)


def test_stylegan2_ada_wrapped_and_traced(tmp_path):
    G = StyleGAN2Like().eval()
    recipe("stylegan2_ada").export(G, str(tmp_path / "g.ts"))
    t = open_target(str(tmp_path / "g.ts"))
    assert t.latent_dim == 32 and t.probed["output_range"] == "-1,1"
    _same(t, lambda z: G(z, None), torch.randn(3, 32), lambda z: z)


def test_onnx_export(tmp_path):
    netG = DCGAN(nz=100).eval()
    recipe("onnx_export").export(netG, str(tmp_path / "g.onnx"), torch.randn(2, 100, 1, 1))
    t = open_target(str(tmp_path / "g.onnx"))
    assert t.kind == "onnx" and t.latent_dim == 100
    _same(t, netG, torch.randn(3, 100), lambda z: z.view(-1, 100, 1, 1))


def test_python_entry_point():
    t = open_target(f"py:{RECIPES / 'py_entry_point.py'}:make_generator")
    assert t.kind == "python" and t.latent_dim == 64 and (t.resolution, t.channels) == (32, 3)
