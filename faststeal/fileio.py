"""Atomic file writes: write to a temp file in the same folder, fsync, rename. A kill never leaves half a file.

Under torchrun only rank 0 writes; every rank then waits at a barrier, so a file written here is complete
before any rank reads it back (all ranks reach each write, as they run the same code).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call ``write(binary_file)`` on a temp file, then rename it over ``path`` (rank 0 only)."""
    from . import distributed

    path = Path(path)
    if distributed.active():
        if distributed.is_main():
            _write_now(path, write)
        distributed.barrier()
        return path
    return _write_now(path, write)


def _write_now(path: Path, write) -> Path:
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
