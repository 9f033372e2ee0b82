"""The faststeal checkpoint: one .pt file of plain tensors and Python values, safe to load.

Layout (all keys plain): format, format_version, faststeal_version, config (arch, resolution, channels,
latent_dim, width, training options), data_fingerprint, progress, G, G_ema, D (state dicts), and for
resumable files optim_G, optim_D, loader, rng. Everything loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from faststeal import __version__
from faststeal.errors import FaststealError
from faststeal.models import build_discriminator, build_generator

from .fileio import atomic_write

FORMAT = "faststeal-checkpoint"
FORMAT_VERSION = 1
BUILTIN_PREFIX = "builtin:"
REQUIRED = ("config", "G_ema", "D")


class CheckpointError(FaststealError, ValueError):
    """A file is not a usable faststeal checkpoint; the message is one line naming the file."""


def builtin_names() -> list[str]:
    folder = resources.files("faststeal") / "builtin"
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".pt"))


def resolve_path(path) -> Path:
    """Map ``builtin:NAME`` to the checkpoint shipped in the package; other paths pass through."""
    path = str(path)
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX):]
        candidate = Path(str(resources.files("faststeal") / "builtin" / f"{name}.pt"))
        if not candidate.exists():
            raise CheckpointError(f"{path}: unknown built-in target; available: {', '.join(builtin_names())}")
        return candidate
    return Path(path)


def content_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a checkpoint's bytes: what results derived from it are keyed
    on, so replacing the file behind a path never lets old results pass for the new target's."""
    h = hashlib.sha256()
    with open(resolve_path(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def atomic_torch_save(obj, path) -> Path:
    """torch.save through an atomic write: a kill never leaves a half-written checkpoint."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(state: dict, path) -> Path:
    state = dict(state)
    state.update(format=FORMAT, format_version=FORMAT_VERSION, faststeal_version=__version__)
    return atomic_torch_save(state, path)


def load_checkpoint(path) -> dict:
    """Load and validate a checkpoint (weights_only); any problem becomes a one-line CheckpointError."""
    path = resolve_path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes: all one message
        raise CheckpointError(f"{path}: not a readable faststeal checkpoint ({_first_sentence(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a faststeal checkpoint (no '{FORMAT}' marker); "
                              f"train one with `faststeal train-target`")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer faststeal (format {state['format_version']}); "
                              f"upgrade faststeal")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


class ImageGenerator(nn.Module):
    """A trained generator as users see it: z (N, latent_dim) -> images in [-1, 1], (N, C, R, R)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.latent_dim = net.latent_dim
        self.resolution = net.resolution
        self.channels = net.channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.net(z.to(next(self.net.parameters()).dtype)).clamp(-1.0, 1.0)


def float_state(sd: dict) -> dict:
    """Cast floating tensors of a state dict to float32 (built-in targets are stored in fp16)."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def build_from_config(config: dict):
    g = build_generator(config["arch"], config["resolution"], config["channels"], config["latent_dim"],
                        config["width"])
    d = build_discriminator(config["arch"], config["resolution"], config["channels"], config["width"])
    return g, d


def _load_network(path, key: str, pick: int, what: str, state: dict | None = None) -> nn.Module:
    """Build the network a checkpoint's config describes and load state ``key`` into it (eval, frozen).

    ``state``: the checkpoint already read from ``path`` (then the file is not read again)."""
    state = load_checkpoint(path) if state is None else state
    try:
        net = build_from_config(state["config"])[pick]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its config does not describe a network ({_first_sentence(exc)}); "
                              f"the file is damaged or was edited") from None
    try:
        net.load_state_dict(float_state(state[key]))
    except (RuntimeError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path}: {what} weights do not match its config ({_first_sentence(exc)})") from None
    broken = [name for name, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise CheckpointError(f"{path}: {what} weights hold NaN or infinite values ({broken[0]}"
                              f"{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}); the training "
                              f"diverged: use an earlier snapshot")
    return net.eval().requires_grad_(False)


def _first_sentence(exc: Exception, limit: int = 160) -> str:
    """The first line/sentence of an exception's message, for one-line errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    text = text.split(". ")[0]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def load_generator(path, device="cpu") -> ImageGenerator:
    """The EMA generator of a checkpoint at full resolution, in eval mode."""
    return ImageGenerator(_load_network(path, "G_ema", 0, "generator")).to(device).eval().requires_grad_(False)


class LoadedTarget(NamedTuple):
    """A target checkpoint read once: what an experiment would otherwise re-read for every oracle and picture."""
    path: str
    config: dict
    generator: ImageGenerator
    model_id: str          # content_digest of the file: what results derived from it are keyed on


def load_target(path) -> LoadedTarget:
    """Read a target checkpoint once: its config, EMA generator and digest."""
    state = load_checkpoint(path)
    generator = ImageGenerator(_load_network(path, "G_ema", 0, "generator", state=state)).eval()
    return LoadedTarget(str(path), state["config"], generator.requires_grad_(False), content_digest(path))


def load_discriminator(path, device="cpu") -> nn.Module:
    """The discriminator of a checkpoint at full resolution, in eval mode (scores: higher = more real)."""
    return _load_network(path, "D", 1, "discriminator").to(device)


def slim_checkpoint(state: dict, dtype=torch.float16) -> dict:
    """Drop optimiser/resume state and store weights in fp16: the small file shipped as a built-in target."""
    keep = {k: state[k] for k in ("config", "data_fingerprint", "progress") if k in state}
    for key in ("G", "G_ema", "D"):
        if key in state:
            keep[key] = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state[key].items()}
    keep.pop("G", None)  # the EMA generator is what users sample; the raw G is only needed to resume
    return keep
