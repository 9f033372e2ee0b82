import json

import pytest
from click.testing import CliRunner

from faststeal.cli import main


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_keys_add_list_revoke_and_report(tmp_path):
    db = str(tmp_path / "ledger.sqlite")
    added = _run("keys", "add", "alice", "--budget", "100", "--rate", "2", "--db", db)
    assert added.exit_code == 0 and added.output.startswith("alice.")
    from faststeal.serve.ledger import Ledger

    ledger = Ledger(db)
    ledger.charge("alice", "r1", "prior", 7, "d")
    ledger.dispose()
    listed = _run("keys", "list", "--db", db)
    assert listed.exit_code == 0 and "alice" in listed.output and " 93 " in listed.output
    report = _run("keys", "report", "--db", db, "--json")
    rows = json.loads(report.output)
    assert [(r["key"], r["charged"], r["requests"]) for r in rows] == [("alice", 7, 1)]
    assert _run("keys", "revoke", "alice", "--db", db).exit_code == 0
    assert "revoked" in _run("keys", "list", "--db", db).output


@pytest.mark.parametrize("args,message", [
    (["keys", "add", "bad name", "--budget", "1"], "NAME: key name"),
    (["keys", "add", "k", "--budget", "-1"], "--budget: budget must be >= 0"),
    (["keys", "revoke", "nobody"], "NAME: no key named"),
    (["keys", "report", "--every", "0"], "--every: must be > 0"),
    (["serve", "--target", "missing.pt"], "missing.pt"),
    (["serve", "--target", "builtin:pggan-fmnist32", "--max-batch", "0"], "--max-batch: must be >= 1"),
    (["serve", "--target", "builtin:pggan-fmnist32", "--defense", "foo"], "--defense: unknown defense"),
    (["serve", "--target", "builtin:pggan-fmnist32", "--prior", "cauchy"], "--prior:"),
    (["extract", "--target", "http://127.0.0.1:9"], "--api-key: an http:// target needs a key"),
    (["defend", "--target", "http://127.0.0.1:9", "--defense", "noise"],
     "--defense: defenses of an http:// target are set on the server"),
    (["defend", "--target", "http://127.0.0.1:9"], "--api-key: an http:// target needs a key"),
])
def test_bad_options_fail_in_one_line_before_any_work(tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("FASTSTEAL_API_KEY", raising=False)
    res = _run(*args, *(["--db", str(tmp_path / "l.sqlite")] if args[0] in ("keys", "serve") else []))
    assert res.exit_code != 0 and message in res.output, res.output
