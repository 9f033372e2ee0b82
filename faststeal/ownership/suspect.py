"""What a suspect is: a generator checkpoint we can sample, or the images it produced (folder or array)."""
from __future__ import annotations

from pathlib import Path

import torch

from faststeal.checkpoint import CheckpointError
from faststeal.data import DataError, load_dataset
from faststeal.targets import TargetError, detect_kind, open_target

from .detect import VerifyError, moment_image

DATA_SUFFIXES = (".npy", ".npz")
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".ts", ".pt2", ".onnx")   # a missing file of these is a missing model


def is_generator(spec: str) -> bool:
    """A generator of any target kind (file, builtin:, py:, URL), not images (a folder, .npy/.npz, a data set)."""
    path = Path(str(spec))
    if path.suffix.lower() in DATA_SUFFIXES:
        return False
    if path.suffix.lower() in MODEL_SUFFIXES and not path.exists():
        return True                                    # open_target says "no such file" for it
    try:
        detect_kind(spec)
    except TargetError:
        return False
    return True


def suspect_images(spec: str, n: int, seed: int = 0, api_key: str | None = None, hints=None) -> torch.Tensor:
    """n uint8 images of the suspect: samples of a generator of any kind (z from ``seed``; a served suspect is
    asked for n images with ``api_key``), or the first n of a folder or .npy/.npz file (fewer if it holds
    fewer; the caller decides whether that is enough)."""
    spec = str(spec)
    try:
        if is_generator(spec):
            target = open_target(spec, api_key=api_key, hints=hints)
            if not target.in_process:
                return target.oracle(n, seed=seed).query(n)
            return target.sample(n, seed=seed)
        return load_dataset(spec, limit=n).images[:n]
    except (CheckpointError, DataError, TargetError) as exc:
        raise VerifyError(f"suspect {exc}") from None


def reference_moment(spec: str, n: int, seed: int = 0) -> torch.Tensor:
    """The detector's moment image (C, R, R) of n images of a source: the owner's unmarked reference."""
    return moment_image(suspect_images(spec, n, seed))
