"""Every file a served run writes, searched for the secrets it was given: a watermark key (with spaces), an API
key, the ledger's database password and the serving seed. None may appear."""
import json
import pathlib
import shutil
import sqlite3
import subprocess
import tempfile

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from faststeal.cli import main

from .conftest import Server, add_key
from .test_ledger import _start_postgres

WATERMARK_SECRET = "WMSECRET owner phrase"
PASSWORD = "PWSECRET-9f2c"


@pytest.fixture
def ledger_url(tmp_path):
    """A PostgreSQL URL with a password in it (the cluster trusts local users, the URL still carries it), or an
    SQLite file where PostgreSQL cannot run here."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="faststeal-pg-"))
    started, _reason = _start_postgres(folder)
    if started is None:
        shutil.rmtree(folder, ignore_errors=True)
        yield str(tmp_path / "ledger.sqlite"), None
        return
    url, stop = started
    try:
        yield url.replace("postgres@", f"postgres:{PASSWORD}@"), PASSWORD
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _stream_secret(url) -> str:
    if url.endswith(".sqlite"):
        with sqlite3.connect(url) as conn:
            return conn.execute("SELECT value FROM serving").fetchone()[0]
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM serving")).scalar_one()
    engine.dispose()
    return value


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_no_file_a_served_run_writes_holds_a_secret(tiny_target, tmp_path, ledger_url, monkeypatch):
    url, password = ledger_url
    folder = tmp_path / "written"
    folder.mkdir()
    spec = f"watermark:key={WATERMARK_SECRET},strength=6"
    env = {"FASTSTEAL_DB": url, "FASTSTEAL_DEFENSE": spec}           # nothing secret on the command line
    server = Server(tiny_target, None, seed=None, env=env, log=folder / "server.log")
    assert url not in " ".join(server.args) and WATERMARK_SECRET not in " ".join(server.args)
    token = add_key(url, "thief", 48)
    server.start()
    try:
        monkeypatch.setenv("FASTSTEAL_API_KEY", "")
        res = CliRunner().invoke(main, ["extract", "--target", server.url, "--api-key", token, "--queries", "48",
                                        "--attack-kimg", "0.016", "--attack-width", "8", "--batch", "8", "--fid-n",
                                        "16", "--curve-n", "0", "--threads", "1", "--out", str(folder / "run")])
        assert res.exit_code == 0, res.output
        (folder / "extract.out").write_text(res.output)
    finally:
        server.stop()
    monkeypatch.setenv("FASTSTEAL_DB", url)
    for args in (["keys", "list"], ["keys", "report", "--json"]):                # the ledger's dumps
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        (folder / f"{args[1]}.out").write_text(res.output)
    # the owner sweeps watermark keys locally: metrics.json records each setting
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8))
    res = CliRunner().invoke(main, ["defend", "--target", str(tiny_target), "--defense",
                                    f"watermark:key={WATERMARK_SECRET},WMSECRET second key,strength=6",
                                    "--queries", "16", "--attack", "sngan", "--attack-kimg", "0.008",
                                    "--attack-width", "8", "--batch", "8", "--fid-n", "8", "--threads", "1",
                                    "--eval-data", str(real), "--out", str(folder / "defend")])
    assert res.exit_code == 0, res.output
    (folder / "defend.out").write_text(res.output)
    values = [r["value"] for r in json.loads((folder / "defend" / "metrics.json").read_text())["settings"]]
    assert values[1:] == ["REDACTED", "REDACTED"]

    secrets = {"watermark key": "WMSECRET", "API key": token.split(".", 1)[1], "stream seed": _stream_secret(url)}
    if password:
        secrets["database password"] = PASSWORD
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert len(written) > 10 and (folder / "server.log").stat().st_size > 0
    for path in written:
        data = path.read_bytes()
        for what, secret in secrets.items():
            assert secret.encode() not in data, f"{what} found in {path.relative_to(folder)}"
    assert "REDACTED" in (folder / "server.log").read_text()         # the startup line names them, redacted
