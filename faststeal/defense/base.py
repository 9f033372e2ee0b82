"""What every defense is: a named, parameterised, seeded transform of latent codes or of served images.

The owner applies defenses on the serving side (TargetOracle's hooks), so they must never change what the
caller can rely on: latent defenses map float (N, latent_dim) to the same shape; image defenses map uint8
(N, C, H, W) to uint8 of the same shape. Every defense has a ``strength`` (>= 0) and is the exact identity
at strength 0, so a sweep can start from the undefended target without a special case.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from faststeal.errors import FaststealError


class DefenseError(FaststealError, ValueError):
    """A defense specification or parameter is invalid (one-line message)."""


@dataclass(frozen=True)
class Param:
    """One documented key of a defense: its type, default, valid range and meaning."""

    name: str
    kind: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def convert(self, defense: str, text) -> object:
        """Parse and range-check one value; raises DefenseError naming the defense and key."""
        value = text
        if isinstance(text, str):
            try:
                value = self.kind(text) if self.kind is not bool else text.lower() in ("1", "true", "yes")
            except ValueError:
                raise DefenseError(f"{defense}: {self.name} must be {self.kind.__name__}, got {text!r}") from None
        if self.kind in (int, float) and not isinstance(value, bool):
            value = self.kind(value)
            if value != value:
                raise DefenseError(f"{defense}: {self.name} must be a number, got {text!r}")
            if self.low is not None and value < self.low:
                raise DefenseError(f"{defense}: {self.name} must be >= {self.low:g}, got {value:g}")
            if self.high is not None and value > self.high:
                raise DefenseError(f"{defense}: {self.name} must be <= {self.high:g}, got {value:g}")
        if self.choices and value not in self.choices:
            raise DefenseError(f"{defense}: {self.name} must be one of {', '.join(map(str, self.choices))}, "
                               f"got {value!r}")
        return value


class Defense:
    """Base class. Subclasses set ``name``, ``side`` ('latent' or 'image'), ``params`` and ``strength_key``."""

    name: str = ""
    side: str = ""
    params: tuple[Param, ...] = ()
    strength_key: str = ""          # the key a sweep usually varies (shown on the plot legend)

    def __init__(self, seed: int = 0, **values):
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DefenseError(f"{self.name}: unknown key {unknown[0]!r}; known keys: {', '.join(known) or 'none'}")
        self.seed = int(seed)
        self.values = {k: p.convert(self.name, values.get(k, p.default)) for k, p in known.items()}
        self.check()

    def check(self) -> None:
        """Cross-key validation (ranges of single keys are checked by Param)."""

    def __getattr__(self, key):
        values = self.__dict__.get("values")
        if values is not None and key in values:
            return values[key]
        raise AttributeError(key)

    @property
    def strength(self) -> float:
        """How strongly the defense changes its input; 0 means the exact identity."""
        raise NotImplementedError

    @property
    def is_identity(self) -> bool:
        return self.strength == 0

    def spec(self) -> str:
        """The canonical 'name:key=value,...' text of this setting (only keys that differ from defaults)."""
        parts = [f"{p.name}={_param_text(self.values[p.name])}" for p in self.params
                 if self.values[p.name] != p.default or p.name == self.strength_key]
        return f"{self.name}:{','.join(parts)}" if parts else self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec()} seed={self.seed}>"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._validate(x)
        if self.is_identity or x.shape[0] == 0:
            return x.clone()
        out = self.apply(x)
        if out.shape != x.shape or out.dtype != x.dtype:
            raise RuntimeError(f"{self.name} changed shape/dtype: {tuple(x.shape)} {x.dtype} -> "
                               f"{tuple(out.shape)} {out.dtype}")
        return out

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _validate(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: expected a torch tensor, got {type(x).__name__}")
        if self.side == "latent" and (x.dim() != 2 or not x.is_floating_point()):
            raise ValueError(f"{self.name}: expected float codes (N, latent_dim), got {x.dtype} {tuple(x.shape)}")
        if self.side == "image" and (x.dim() != 4 or x.dtype != torch.uint8):
            raise ValueError(f"{self.name}: expected uint8 images (N, C, H, W), got {x.dtype} {tuple(x.shape)}")


def _param_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def content_seeds(x: torch.Tensor, seed: int, salt: str) -> list[int]:
    """One 63-bit seed per row of x, from the row's bytes and the defense seed.

    Randomness keyed on content makes a defense a pure function of its input: the same image (or code)
    always gets the same noise, so an adversary cannot average it away by asking twice, and a resumed
    query collection serves exactly what an uninterrupted one would have.
    """
    rows = x.detach().cpu().contiguous()
    out = []
    for row in rows:
        h = hashlib.blake2b(row.numpy().tobytes(), digest_size=8, key=f"{salt}:{seed}".encode()[:64])
        out.append(int.from_bytes(h.digest(), "little") >> 1)
    return out


REGISTRY: dict[str, type[Defense]] = {}


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: make a defense available to the parser under ``cls.name``."""
    if not cls.name or cls.side not in ("latent", "image"):
        raise TypeError(f"{cls.__name__}: a defense needs a name and side 'latent' or 'image'")
    REGISTRY[cls.name] = cls
    return cls

