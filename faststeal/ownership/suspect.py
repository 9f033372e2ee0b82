"""What a suspect is: a generator checkpoint we can sample, or the images it produced (folder or array)."""
from __future__ import annotations

from pathlib import Path

import torch

from faststeal.checkpoint import CheckpointError
from faststeal.data import DataError

from .detect import VerifyError, moment_image


def is_checkpoint(spec: str) -> bool:
    return str(spec).startswith("builtin:") or Path(str(spec)).suffix == ".pt"


def suspect_images(spec: str, n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 images of the suspect: samples of a checkpoint (z from ``seed``), or the first n of a folder or
    .npy/.npz file (fewer if it holds fewer; the caller decides whether that is enough)."""
    spec = str(spec)
    try:
        if is_checkpoint(spec):
            from faststeal.checkpoint import load_generator
            from faststeal.sampling import generate

            return generate(load_generator(spec), n, seed=seed)
        from faststeal.data import load_dataset

        return load_dataset(spec, limit=n).images[:n]
    except (CheckpointError, DataError) as exc:
        raise VerifyError(f"suspect {exc}") from None


def reference_moment(spec: str, n: int, seed: int = 0) -> torch.Tensor:
    """The detector's moment image (C, R, R) of n images of a source: the owner's unmarked reference."""
    return moment_image(suspect_images(spec, n, seed))
