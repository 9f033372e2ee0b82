"""``open_target``: the one place a target spec becomes a Target."""
from __future__ import annotations

from . import formats
from .base import Hints, Target

_OPENERS = {"faststeal": formats.open_faststeal, "torchscript": formats.open_torchscript,
            "export": formats.open_export, "onnx": formats.open_onnx, "python": formats.open_python}


def open_target(spec, *, api_key: str | None = None, hints: Hints | dict | None = None) -> Target:
    """Resolve ``spec`` once: a file (faststeal checkpoint, TorchScript, .pt2, .onnx), builtin:NAME,
    py:FILE.py:FACTORY / py:package.module:FACTORY, or the URL of `faststeal serve` (with ``api_key``).

    A Target passes through unchanged; an nn.Module or other callable (codes -> images) in this process is
    opened as a py: target would be. ``hints`` declares what a foreign generator's probe cannot find."""
    if isinstance(spec, Target):
        return spec
    hints = hints if isinstance(hints, Hints) else Hints.from_dict(hints)
    if callable(spec):
        return formats.from_object(spec, hints)
    kind = formats.detect_kind(spec)
    if kind == "http":
        return formats.open_http(str(spec), hints, api_key)
    return _OPENERS[kind](str(spec), hints)
