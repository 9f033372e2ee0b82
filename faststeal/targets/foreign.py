"""Generators from elsewhere behind faststeal's generator interface, and the probe that finds their shape.

faststeal's own generators take z of shape (N, d) and return float images in [-1, 1]. A foreign generator may
take (N, d, 1, 1) (the PyTorch DCGAN tutorial), a class label besides the code, a fixed batch size (an ONNX
or export traced at batch 1), and return [0, 1] floats or uint8. ``ForeignGenerator`` hides all of that, and
``probe`` finds what the user did not declare by calling the model on small seeded batches.

Class-conditional generators: the code faststeal draws has one extra coordinate u, and the label is
floor(Phi(u) * K), so under the normal prior labels are uniform, every query records its label inside its
code, and a chosen-latent thief chooses labels too.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import OUTPUT_RANGES, RESOLUTIONS, Hints, TargetError

COMMON_LATENT_DIMS = (512, 128, 100, 256, 64, 120, 200, 32, 16)
PROBE_BATCH = 2            # the batch the latent search calls the model with
RANGE_BATCH = 32           # samples the output range is read from
PROBE_SEED = 12345


@dataclass(frozen=True)
class Layout:
    """How codes reach the model and how its output maps to [-1, 1]."""

    latent_dim: int                # the model's own code size d (without the label coordinate)
    code_shape: str = "flat"       # "flat": (N, d); "conv": (N, d, 1, 1)
    output_range: str = "-1,1"
    num_classes: int = 0
    label_format: str = "index"    # "index": int64 (N,); "onehot": float (N, K)
    fixed_batch: int | None = None # the model only takes batches of exactly this size

    def describe(self) -> dict:
        return {"latent_shape": "(N, d)" if self.code_shape == "flat" else "(N, d, 1, 1)",
                "model_latent_dim": self.latent_dim, "output_range": self.output_range,
                "num_classes": self.num_classes, "label_format": self.label_format if self.num_classes else None,
                "fixed_batch": self.fixed_batch}


class ForeignGenerator(nn.Module):
    """z (N, latent_dim) -> float32 images in [-1, 1], (N, C, R, R), for any callable generator.

    ``call`` takes the model's own inputs (torch tensors) and returns a tensor or numpy array; ``module``, when
    the model is an nn.Module, is registered so that ``.to(device)`` moves its weights."""

    def __init__(self, call, layout: Layout, resolution: int, channels: int, module: nn.Module | None = None,
                 cpu_only: bool = False):
        super().__init__()
        self._call, self.layout, self.cpu_only = call, layout, cpu_only
        self.model = module
        self.latent_dim = layout.latent_dim + (1 if layout.num_classes else 0)
        self.resolution, self.channels = int(resolution), int(channels)

    def train(self, mode: bool = True):
        """Only this wrapper's flag: the wrapped model stays in inference mode (an export refuses train())."""
        self.training = mode
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        out = model_call(self._call, self.layout, z)
        return to_signed_unit(out, self.layout.output_range).to(z.device).clamp(-1.0, 1.0)


def model_call(call, layout: Layout, z: torch.Tensor):
    """Run the model on codes z (N, d [+1]) as its layout says; returns its raw output (tensor)."""
    z = z.float()
    codes, extra = (z[:, :-1], z[:, -1]) if layout.num_classes else (z, None)
    n = z.shape[0]
    step = layout.fixed_batch or n
    outs = []
    for lo in range(0, n, max(step, 1)):
        part = codes[lo:lo + step]
        lab = extra[lo:lo + step] if extra is not None else None
        short = step - part.shape[0] if layout.fixed_batch else 0
        if short:                     # pad the last batch to the size the model was exported with
            part = torch.cat([part, part.new_zeros(short, part.shape[1])])
            lab = torch.cat([lab, lab.new_zeros(short)]) if lab is not None else None
        args = [part.reshape(part.shape[0], -1, 1, 1) if layout.code_shape == "conv" else part]
        if lab is not None:
            args.append(labels_for(lab, layout))
        out = call(*args)
        out = torch.as_tensor(out) if not isinstance(out, torch.Tensor) else out
        outs.append(out[:out.shape[0] - short] if short else out)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def labels_for(u: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The class label encoded in a code's extra coordinate u: floor(Phi(u) * K), as index or one-hot."""
    k = layout.num_classes
    phi = 0.5 * (1 + torch.erf(u / math.sqrt(2.0)))
    idx = (phi * k).floor().long().clamp(0, k - 1)
    if layout.label_format == "onehot":
        return torch.nn.functional.one_hot(idx, k).float()
    return idx


def to_signed_unit(out: torch.Tensor, output_range: str) -> torch.Tensor:
    """Map a model's output in its own range to float32 [-1, 1]."""
    x = out.float()
    if output_range == "0,1":
        return x * 2 - 1
    if output_range == "0,255":
        return x / 127.5 - 1
    return x


def probe(call, hints: Hints, spec: str, *, input_shape=None, first_weight_shape=None) -> tuple[Layout, int, int]:
    """Find the latent layout, output range and image shape of ``call``; (layout, resolution, channels).

    input_shape: the model's declared first input shape when the format records it (ONNX, torch.export),
    with None for a free (batch) dimension. first_weight_shape: the shape of its first weight, whose fan-in is
    the likely code size. Raises TargetError naming the flag to pass when something cannot be found."""
    fixed_batch = None
    if input_shape:
        fixed_batch = input_shape[0] if isinstance(input_shape[0], int) and input_shape[0] > 0 else None
    label_formats = ("index", "onehot") if hints.num_classes else ("index",)
    last_error = None
    for d, shape in _candidates(hints, input_shape, first_weight_shape):
        for label_format in label_formats:
            layout = Layout(d, shape, "-1,1", hints.num_classes, label_format, fixed_batch)
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    out = model_call(call, layout, _codes(PROBE_BATCH, layout))
            except Exception as exc:          # a wrong guess fails inside the user's model, in any way
                last_error = exc
                continue
            res, ch = _check_images(out, PROBE_BATCH, spec)
            return _with_range(call, layout, hints, spec), res, ch
    labels = "" if hints.num_classes else " (and --num-classes K if it takes a class label)"
    if hints.latent_dim is not None or (input_shape and len(input_shape) > 1 and isinstance(input_shape[1], int)):
        raise TargetError(f"{spec}: the generator fails on a probe batch of codes ({_first_line(last_error)}); "
                          f"check --latent-dim{labels}")
    raise TargetError(f"{spec}: could not find the latent size by probing (tried (N, d) and (N, d, 1, 1) for d in "
                      f"{', '.join(str(d) for d in _dims(hints, input_shape, first_weight_shape))}); pass "
                      f"--latent-dim D{labels}")


def _codes(n: int, layout: Layout) -> torch.Tensor:
    g = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(n, layout.latent_dim + (1 if layout.num_classes else 0), generator=g)


def _dims(hints: Hints, input_shape, first_weight_shape) -> list[int]:
    if hints.latent_dim is not None:
        return [hints.latent_dim]
    if input_shape and len(input_shape) > 1 and isinstance(input_shape[1], int):
        return [input_shape[1]]
    dims = []
    if first_weight_shape is not None and len(first_weight_shape) in (2, 4):
        dims += [first_weight_shape[1]] if len(first_weight_shape) == 2 else [first_weight_shape[0],
                                                                               first_weight_shape[1]]
    return list(dict.fromkeys(dims + list(COMMON_LATENT_DIMS)))


def _candidates(hints: Hints, input_shape, first_weight_shape):
    shapes = ("flat", "conv")
    if input_shape:
        shapes = ("conv",) if len(input_shape) == 4 else ("flat",)
    for d in _dims(hints, input_shape, first_weight_shape):
        for shape in shapes:
            yield d, shape


def _check_images(out, n: int, spec: str) -> tuple[int, int]:
    if not isinstance(out, torch.Tensor):
        raise TargetError(f"{spec}: the generator returned {type(out).__name__}, not an image tensor")
    if out.dim() != 4 or out.shape[0] != n:
        raise TargetError(f"{spec}: the generator returned shape {tuple(out.shape)} for {n} codes; faststeal needs "
                          f"images (N, C, H, W)")
    _, ch, h, w = out.shape
    if ch not in (1, 3):
        raise TargetError(f"{spec}: the generator makes {ch}-channel images; faststeal measures 1 (grey) or 3 "
                          f"(RGB) channels (is the output NHWC? wrap it with py:FILE.py:FUNC to permute)")
    if h != w or h not in RESOLUTIONS:
        raise TargetError(f"{spec}: the generator makes {h}x{w} images; faststeal measures square 32, 64 or 128 "
                          f"pixel images: resize inside a py:FILE.py:FUNC wrapper")
    if not (out.dtype == torch.uint8 or out.is_floating_point()):
        raise TargetError(f"{spec}: the generator returned {out.dtype} images; expected float or uint8")
    return int(h), int(ch)


def _with_range(call, layout: Layout, hints: Hints, spec: str) -> Layout:
    """Read the output range from RANGE_BATCH samples (or check the declared one against them)."""
    with torch.no_grad():
        out = model_call(call, layout, _codes(RANGE_BATCH, layout))
    if out.is_floating_point() and not torch.isfinite(out).all():
        raise TargetError(f"{spec}: the generator produced NaN or infinite values on a probe batch")
    lo, hi = float(out.min()), float(out.max())
    # any negative value means a signed range: a [0, 1] model (sigmoid, clamp) never goes below 0, while an
    # untrained or dull tanh model may stay within a hair of 0 on both sides
    found = "0,255" if out.dtype == torch.uint8 or hi > 2.0 else "-1,1" if lo < 0 else "0,1"
    chosen = hints.output_range or found
    low, high = {"-1,1": (-2.0, 2.0), "0,1": (-1.0, 2.0), "0,255": (-64.0, 320.0)}[chosen]
    if lo < low or hi > high:
        raise TargetError(f"{spec}: outputs span {lo:.3g}..{hi:.3g}, far outside the range {chosen}"
                          f"{' declared with --output-range' if hints.output_range else ' probed'}; pass "
                          f"--output-range (one of {', '.join(OUTPUT_RANGES)}) or fix the model")
    return Layout(layout.latent_dim, layout.code_shape, chosen, layout.num_classes, layout.label_format,
                  layout.fixed_batch)


def _first_line(exc) -> str:
    if exc is None:
        return "no call succeeded"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + " ..."
