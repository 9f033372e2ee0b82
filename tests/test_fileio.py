import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from faststeal.fileio import (
    UnreadableFile,
    UnwritablePath,
    atomic_write,
    check_writable_folder,
    read_numpy,
    remove_stale_temps,
    write_json,
    write_text,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = write_json(tmp_path / "m.json", {"a": 1})

    def explode(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(write_json(tmp_path / "a.json", {}).stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(write_json(tmp_path / "b.json", {}).stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_temps_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"m.json.{dead.pid}.abc123.tmp"
    live = tmp_path / f"m.json.{os.getpid()}.xyz789.tmp"
    other = tmp_path / f"n.json.{dead.pid}.q1.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"half")
    write_json(tmp_path / "m.json", {"a": 1})            # a write cleans its own file's leftovers
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temps(tmp_path) == 1               # a folder sweep takes the rest of the dead
    assert not other.exists() and live.exists()


def test_damaged_numpy_files_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "good.npz", images=np.zeros((2, 4, 4), np.uint8))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.npy").write_bytes(bytes(range(256)) * 4)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert read_numpy(tmp_path / "good.npz")["images"].shape == (2, 4, 4)
    for name, why in (("cut.npz", "truncated or corrupt"), ("noise.npy", "corrupt or not a numpy file"),
                      ("objects.npy", "Python objects"), ("missing.npy", "no such file")):
        with pytest.raises(UnreadableFile, match=why) as info:
            read_numpy(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
        assert "allow_pickle" not in str(info.value)


def test_check_writable_folder(tmp_path):
    assert check_writable_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UnwritablePath, match="is a file"):
        check_writable_folder(tmp_path / "f")
    with pytest.raises(UnwritablePath, match="cannot write into"):
        check_writable_folder(tmp_path / "f" / "sub")


def test_a_device_or_pipe_is_written_into_not_replaced(tmp_path):
    """`--out /dev/null` or a pipe: a rename over it would replace the device with a regular file (as root, for
    every other program on the machine), so the bytes go straight in."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]          # no temp file left beside it
