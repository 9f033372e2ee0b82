"""Keyed watermark: add the owner's band-limited pattern to every served image (see faststeal.ownership).

The pattern is modulated by the image itself, x + strength * P * x / 255: bright pixels carry it in full,
black ones not at all: an additive pattern spread over a black background is visible where the same energy
on the garment is not (its utility cost is measured in docs/results/ownership.md).

Not meant to hurt the thief: meant to survive in the thief's copy, so that ``faststeal verify`` can later
show the copy learned from these images. The key never leaves the owner: the served images are plain uint8
arrays and the setting's printed spec shows only a 32-bit digest of the key.
"""
from __future__ import annotations

import hashlib

import torch

from faststeal.ownership.pattern import Band, pattern

from .base import DefenseError, Param, register
from .image import ImageDefense


@register
class Watermark(ImageDefense):
    name = "watermark"
    strength_key = "strength"
    params = (Param("key", str, "", "the owner's secret (any string without , + = :); required"),
              Param("strength", float, 4.0, "root-mean-square of the pattern on white pixels, in levels of 0..255; "
                                            "0 = off",
                    low=0.0, high=64.0),
              Param("low", float, 1.0, "lowest DCT frequency radius of the pattern's band", low=0.0, high=1024.0),
              Param("high", float, 8.0, "band edge (exclusive) of the pattern's frequency radius", low=0.0,
                    high=1024.0))

    def check(self) -> None:
        if not self.key:
            raise DefenseError("watermark: give the owner's key, e.g. watermark:key=SECRET")
        try:
            self.band.check()
        except ValueError as exc:
            raise DefenseError(f"watermark: {exc}") from None
        self._patterns = {}

    @property
    def band(self) -> Band:
        return Band(self.low, self.high)

    @property
    def strength(self) -> float:
        return self.strength_value

    @property
    def strength_value(self) -> float:
        return self.values["strength"]

    def spec(self) -> str:
        digest = hashlib.blake2b(self.key.encode(), digest_size=4, person=b"fs-spec").hexdigest()
        return super().spec().replace(f"key={self.key}", f"key=#{digest}")

    def pattern_for(self, channels: int, resolution: int) -> torch.Tensor:
        shape = (channels, resolution)
        if shape not in self._patterns:
            try:
                self._patterns[shape] = pattern(self.key, channels, resolution, self.band).float()
            except ValueError as exc:
                raise DefenseError(f"watermark: {exc}") from None
        return self._patterns[shape]

    def apply(self, x):
        p = self.pattern_for(x.shape[1], x.shape[-1])
        x = x.float()
        return (x + self.strength_value * p * (x / 255.0)).round_().clamp_(0, 255).to(torch.uint8)
