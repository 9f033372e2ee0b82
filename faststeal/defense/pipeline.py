"""Composing defenses and reading them from the command line.

Syntax of one ``--defense`` value (one family of settings)::

    NAME[:KEY=VALUE[,KEY=VALUE...]][+NAME[:...]...]

``+`` chains defenses into one setting (applied left to right within each side; latent ones act on the
codes, image ones on the generated images). A key followed by several comma-separated values is a sweep:
``noise:sigma=0.05,0.1,0.2`` is three settings. One key per family may be swept.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import REGISTRY, Defense, DefenseError


class DefensePipeline:
    """An ordered list of defenses, split into the oracle's latent_transform and image_transform hooks."""

    def __init__(self, defenses: list[Defense] | tuple = ()):
        for d in defenses:
            if not isinstance(d, Defense):
                raise TypeError(f"DefensePipeline takes Defense objects, got {type(d).__name__}")
        self.defenses = list(defenses)

    @property
    def latent(self) -> list[Defense]:
        return [d for d in self.defenses if d.side == "latent"]

    @property
    def image(self) -> list[Defense]:
        return [d for d in self.defenses if d.side == "image"]

    @property
    def is_identity(self) -> bool:
        return all(d.is_identity for d in self.defenses)

    @staticmethod
    def _chain(defenses):
        if not defenses:
            return None

        def transform(x: torch.Tensor) -> torch.Tensor:
            for d in defenses:
                x = d(x)
            return x

        return transform

    @property
    def latent_transform(self):
        """Callable z -> z for TargetOracle, or None when no latent defense is present."""
        return self._chain(self.latent)

    @property
    def image_transform(self):
        """Callable uint8 images -> uint8 images for TargetOracle, or None when no image defense is present."""
        return self._chain(self.image)

    def oracle_hooks(self) -> dict:
        return {"latent_transform": self.latent_transform, "image_transform": self.image_transform}

    def spec(self) -> str:
        return "+".join(d.spec() for d in self.defenses) or "none"

    def __repr__(self) -> str:
        return f"<DefensePipeline {self.spec()}>"


def build(name: str, seed: int = 0, **values) -> Defense:
    """One defense by registry name; unknown names get the list of known ones."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise DefenseError(f"unknown defense {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return cls(seed=seed, **values)


def _split_part(part: str) -> tuple[str, dict[str, list[str]]]:
    """'noise:sigma=0.1,0.2,seed=3' -> ('noise', {'sigma': ['0.1', '0.2'], 'seed': ['3']})."""
    name, colon, rest = part.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise DefenseError(f"missing defense name in {part!r}; expected NAME[:KEY=VALUE,...]")
    if colon and not rest.strip():
        raise DefenseError(f"{name}: nothing after ':' in {part!r}; expected KEY=VALUE")
    values: dict[str, list[str]] = {}
    key = None
    for token in (rest.split(",") if rest.strip() else []):
        token = token.strip()
        if "=" in token:
            key, _, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if not key:
                raise DefenseError(f"{name}: empty key in {part!r}")
            if key in values:
                raise DefenseError(f"{name}: key {key!r} given twice in {part!r}")
            values[key] = []
        elif key is None:
            raise DefenseError(f"{name}: expected KEY=VALUE, got {token!r} in {part!r}")
        else:
            value = token
        if not value:
            raise DefenseError(f"{name}: empty value for {key!r} in {part!r}")
        values[key].append(value)
    return name, values


@dataclass
class Family:
    """One ``--defense`` value: its settings in sweep order and what varies between them."""

    text: str
    label: str                       # e.g. 'noise:sigma' for a sweep, the spec itself otherwise
    swept: str | None                # 'noise.sigma' when a key is swept
    values: list[str]
    settings: list[DefensePipeline]


def parse_family(text: str, seed: int = 0) -> Family:
    """Parse one ``--defense`` value into its settings (see the module docstring for the syntax)."""
    if not isinstance(text, str) or not text.strip():
        raise DefenseError("empty --defense value; expected NAME[:KEY=VALUE,...], e.g. noise:sigma=0.05")
    parts = [_split_part(p) for p in text.split("+")]
    sweeps = [(i, k, v) for i, (_, vals) in enumerate(parts) for k, v in vals.items() if len(v) > 1]
    if len(sweeps) > 1:
        keys = ", ".join(f"{parts[i][0]}.{k}" for i, k, _ in sweeps)
        raise DefenseError(f"only one key per --defense may take several values, got {keys} in {text!r}")
    n = len(sweeps[0][2]) if sweeps else 1
    settings = []
    for s in range(n):
        defenses = []
        for i, (name, vals) in enumerate(parts):
            chosen = {k: (v[s] if len(v) > 1 else v[0]) for k, v in vals.items()}
            defenses.append(build(name, seed=seed + i, **chosen))
        settings.append(DefensePipeline(defenses))
    if sweeps:
        i, key, values = sweeps[0]
        swept, label = f"{parts[i][0]}.{key}", "+".join(
            f"{name}:{key}" if j == i else settings[0].defenses[j].spec() for j, (name, _) in enumerate(parts))
    else:
        swept, values, label = None, [], settings[0].spec()
    return Family(text=text, label=label, swept=swept, values=values, settings=settings)


def parse_pipeline(text: str, seed: int = 0) -> DefensePipeline:
    """Exactly one setting (no sweep), e.g. 'truncate:psi=0.8+jpeg:quality=60'."""
    family = parse_family(text, seed)
    if len(family.settings) != 1:
        raise DefenseError(f"{text!r} is a sweep ({family.swept}); give one value per key here")
    return family.settings[0]


def describe_defenses() -> str:
    """Every registered defense with its keys, defaults and meanings: the table `faststeal defend --help` shows."""
    lines = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        for i, p in enumerate(cls.params):
            head = f"{name:<10}{cls.side:<7}" if i == 0 else " " * 17
            lines.append(f"{head}{p.name}={p.default!s}: {p.help}")
    return "\n".join(lines)
