"""A real `faststeal serve` on a loopback port, started as a subprocess (no mocks), and its ledger."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

DEFENSE = "truncate:psi=0.7+noise:sigma=0.05"     # one latent and one image defense, served unchanged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `faststeal serve` process group; kill9() and start() again simulate a crash and a restart."""

    def __init__(self, target, db, *, workers=1, defense=None, latents=True, max_batch=256, max_body=65536,
                 log=None, seed=0, publish=False, env=None, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "faststeal", "serve", "--target", str(target),
                     *(["--db", str(db)] if db is not None else []), "--port", str(self.port),
                     "--workers", str(workers), "--max-batch", str(max_batch),
                     "--max-body", str(max_body), "--threads", "1", *extra]
        if seed is not None:              # a public stream, so that tests can compare with TargetOracle(seed=0)
            self.args += ["--seed", str(seed)]
        if publish:
            self.args.append("--publish-defense")
        if defense:
            self.args += ["--defense", defense]
        if latents:
            self.args.append("--accept-latents")
        self.log, self.proc, self.env = log, None, dict(env or {})

    def start(self, timeout=90):
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, env=dict(os.environ, OMP_NUM_THREADS="1", **self.env), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/v1/info", timeout=2).status_code == 401:     # up: asks for a key
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer within {timeout} s")

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture(scope="session")
def served(tiny_target, tmp_path_factory):
    """One 2-worker server with latents accepted and DEFENSE applied, shared by the tests (one key each)."""
    folder = tmp_path_factory.mktemp("served")
    server = Server(tiny_target, folder / "ledger.sqlite", workers=2, defense=DEFENSE, log=folder / "server.log",
                    publish=True)
    server.db = folder / "ledger.sqlite"
    server.start()
    yield server
    server.stop()


def add_key(db, name, budget, rate=0.0) -> str:
    from faststeal.serve.ledger import Ledger

    ledger = Ledger(db)
    try:
        return ledger.add_key(name, budget, rate)
    finally:
        ledger.dispose()


def same_query_set(a, b):
    """Every chunk and code file byte for byte, and the metadata but for the target's name."""
    ma, mb = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if k != "target"} == {k: v for k, v in mb.items() if k != "target"}
    names = sorted(p.name for p in a.glob("*.npy"))
    assert names == sorted(p.name for p in b.glob("*.npy")) and names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
