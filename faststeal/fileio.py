"""Atomic file writes: write to a temp file in the same folder, fsync, rename. A kill never leaves half a file.

Plain writes by whoever calls them: under torchrun the caller decides which rank writes (``faststeal.report``'s
run folder and ``distributed.on_main``), so nothing here is a collective.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from faststeal.errors import FaststealError


def atomic_write(path, write) -> Path:
    """Call ``write(binary_file)`` on a temp file, then rename it over ``path``. Into a device or a pipe
    (``/dev/null``, ``/dev/stdout``) it writes directly: renaming over one would replace the device itself."""
    return _write_now(Path(path), write)


def _write_now(path: Path, write) -> Path:
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as f:
            write(f)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    # The temp name carries the writer's pid, so a later write can tell a dead writer's leftover from a
    # live one's file in progress.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600 files; results follow the umask like any file
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


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder, name: str | None = None) -> int:
    """Delete temp files that killed writers left in ``folder`` (only ``name``'s when given); returns the count.

    A temp file is stale when the pid in its name no longer runs; files of live writers are left alone.
    """
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for tmp in folder.glob(f"{name or '*'}.*{TMP_SUFFIX}"):
        parts = tmp.name[: -len(TMP_SUFFIX)].split(".")
        pid = parts[-2] if len(parts) >= 3 else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def write_json(path, obj) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


class UnreadableFile(FaststealError, ValueError):
    """A file exists but cannot be parsed (truncated, corrupt, or another format); one line naming it."""


def read_numpy(path, keys: tuple[str, ...] | None = None):
    """An .npy array, or a dict of an .npz file's arrays (all of them, or ``keys``), never unpickling.

    Every way a damaged file fails (a truncated zip, random bytes, a pickled object array) becomes one
    ``UnreadableFile`` naming the file, instead of numpy's and zipfile's assorted exceptions.
    """
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in keys or () if k not in z.files]
                if missing:
                    raise UnreadableFile(f"{path}: lacks array(s) {', '.join(missing)} (holds {z.files})")
                return {k: z[k] for k in (keys or z.files)}
        return np.load(path, allow_pickle=False)
    except UnreadableFile:
        raise
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except ValueError as exc:
        why = ("it holds Python objects, not a plain numeric array" if "pickle" in str(exc)
               else str(exc).splitlines()[0])
        raise UnreadableFile(f"{path}: cannot read ({why}); the file is corrupt or not a numpy file") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UnreadableFile(f"{path}: cannot read ({exc.__class__.__name__}: {exc}); the file is truncated or "
                             f"corrupt") from None


def check_writable_folder(path) -> Path:
    """Create folder ``path`` (and parents) and prove a file can be written there, before any work starts.

    Permission bits alone cannot tell (root ignores them; a read-only mount does not), so this writes and
    removes a probe file. Raises OSError-free ``UnwritablePath`` with one line naming the folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnwritablePath(f"{path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UnwritablePath(f"cannot write into {path} ({exc.strerror or exc}); choose another folder") from None
    return path


class UnwritablePath(FaststealError, ValueError):
    """An output location cannot be written; one line naming it."""
