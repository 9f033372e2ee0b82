"""Atomic file writes: write to a temp file in the same folder, fsync, rename. A kill never leaves half a file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call ``write(binary_file)`` on a temp file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path, obj) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))
