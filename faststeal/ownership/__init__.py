"""Ownership verification: a keyed mark in the served images, and the test that finds it in a copy.

``pattern`` turns an owner's key into a band-limited +-1 pattern; the ``watermark`` defense adds it to every
served image; ``detect`` measures how strongly a suspect model's samples carry it, with a p-value calibrated
over keys.
"""
from .detect import Detection, VerifyError, detect, detect_many_keys
from .pattern import Band, key_signs, pattern

__all__ = ["Band", "Detection", "VerifyError", "detect", "detect_many_keys", "key_signs", "pattern"]
