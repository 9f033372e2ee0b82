"""Targets: any generator faststeal can steal, defend, serve or verify, opened once (see base.py)."""
from __future__ import annotations

from .base import OUTPUT_RANGES, Hints, Target, TargetError
from .formats import KINDS, detect_kind
from .open import open_target

__all__ = ["KINDS", "OUTPUT_RANGES", "Hints", "Target", "TargetError", "detect_kind", "open_target"]
