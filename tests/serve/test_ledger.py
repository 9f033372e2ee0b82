import os
import shutil
import subprocess
import threading
import time

import pytest

pytest.importorskip("sqlalchemy")

from faststeal.serve.ledger import Ledger, LedgerError, db_url  # noqa: E402
from faststeal.serve.report import usage_over_time  # noqa: E402


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    yield led
    led.dispose()


def test_sqlite_ledger_is_in_wal_mode(ledger):
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_keys_store_only_a_hash_and_authenticate(ledger):
    token = ledger.add_key("alice", 10)
    name, secret = token.split(".", 1)
    assert name == "alice" and ledger.authenticate(token) == "alice"
    with ledger.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_sha256 FROM keys").scalar()
    assert secret not in stored
    for bad in ("alice.wrong", "bob." + secret, "", "alice"):
        with pytest.raises(LedgerError) as err:
            ledger.authenticate(bad)
        assert err.value.status == 401
    with pytest.raises(LedgerError, match="exists"):
        ledger.add_key("alice", 5)
    ledger.revoke("alice")
    with pytest.raises(LedgerError) as err:
        ledger.authenticate(token)
    assert err.value.status == 403


def test_charges_are_all_or_nothing_and_idempotent(ledger):
    ledger.add_key("k", 10)
    first = ledger.charge("k", "r1", "prior", 6, "d1")
    assert (first.start, first.replayed, first.remaining) == (0, False, 4)
    again = ledger.charge("k", "r1", "prior", 6, "d1")         # a retry: same start, no charge
    assert (again.start, again.replayed) == (0, True) and ledger.usage("k")["used"] == 6
    with pytest.raises(LedgerError) as err:
        ledger.charge("k", "r2", "prior", 5, "d2")             # 5 > 4 left: nothing charged
    assert err.value.status == 402 and ledger.usage("k")["used"] == 6
    with pytest.raises(LedgerError) as err:
        ledger.charge("k", "r1", "prior", 2, "other body")     # an id reused for another request
    assert err.value.status == 409
    second = ledger.charge("k", "r3", "prior", 4, "d3")
    assert second.start == 6 and second.remaining == 0
    with pytest.raises(LedgerError):
        ledger.charge("k", "r4", "prior", 0, "d4")
    outcomes = [r["outcome"] for r in ledger.audit_rows("k")]
    assert outcomes == ["charged", "replayed", "refused", "charged"]


def test_a_replay_of_a_request_never_served_is_its_delivery_and_is_recorded_once(ledger):
    """A server killed mid-generation leaves the request charged but not served: the retry delivers it."""
    ledger.add_key("k", 10)
    first = ledger.charge("k", "r1", "prior", 4, "d")
    again = ledger.charge("k", "r1", "prior", 4, "d")
    assert not first.replayed and again.replayed and again.pending and again.start == first.start
    ledger.served("k", "r1", 4, "prior")
    ledger.served("k", "r1", 4, "prior")                    # a concurrent second delivery counts once
    late = ledger.charge("k", "r1", "prior", 4, "d")
    assert late.replayed and not late.pending and ledger.usage("k")["used"] == 4
    assert [r["outcome"] for r in ledger.audit_rows("k")] == ["charged", "replayed", "served", "replayed"]


def test_refund_gives_back_the_images_but_not_the_stream_positions(ledger):
    ledger.add_key("k", 10)
    ledger.charge("k", "r1", "prior", 4, "d")
    ledger.refund("k", "r1", 4, "prior")
    assert ledger.usage("k")["used"] == 0
    retry = ledger.charge("k", "r1", "prior", 4, "d")          # charged anew, at fresh positions
    assert not retry.replayed and retry.start == 4
    ledger.served("k", "r1", 4, "prior")
    ledger.refund("k", "r1", 4, "prior")                       # a served request is never refunded
    assert ledger.usage("k")["used"] == 4


def test_rate_limit_refuses_with_retry_after(ledger):
    ledger.add_key("slow", 100, rate=1.0)
    ledger.charge("slow", "a", "prior", 1, "a")
    with pytest.raises(LedgerError) as err:
        ledger.charge("slow", "b", "prior", 1, "b")
    assert err.value.status == 429 and int(err.value.headers["Retry-After"]) >= 1
    time.sleep(1.05)
    ledger.charge("slow", "b", "prior", 1, "b")
    assert ledger.usage("slow")["used"] == 2


def test_concurrent_charges_from_two_ledgers_never_exceed_the_budget(tmp_path):
    """Two engines on one file stand for two worker processes; 16 threads race for a budget of 100."""
    a, b = Ledger(tmp_path / "l.sqlite"), Ledger(tmp_path / "l.sqlite")
    a.add_key("k", 100)
    got = []

    def worker(led, t):
        for i in range(10):
            try:
                led.charge("k", f"{t}-{i}", "prior", 3, f"{t}-{i}")
                got.append(3)
            except LedgerError as exc:
                assert exc.status == 402

    threads = [threading.Thread(target=worker, args=(a if t % 2 else b, t)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == a.usage("k")["used"] == 99
    starts = sorted(r["start"] for r in _requests(a))
    assert starts == list(range(0, 99, 3))                      # every prior position handed out once
    a.dispose(), b.dispose()


def _requests(ledger):
    from sqlalchemy import select

    from faststeal.serve.ledger import requests
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(requests)).mappings()]


def test_usage_report_buckets_by_key_and_time():
    rows = [{"key": "a", "time": 10.0, "n": 5, "outcome": "charged"},
            {"key": "a", "time": 11.0, "n": 5, "outcome": "served"},
            {"key": "a", "time": 70.0, "n": 5, "outcome": "replayed"},
            {"key": "b", "time": 12.0, "n": 9, "outcome": "refused"}]
    out = usage_over_time(rows, 60)
    assert [(r["key"], r["requests"], r["charged"], r["served"], r["replayed"], r["refused"]) for r in out] == [
        ("a", 1, 5, 5, 0, 0), ("a", 1, 0, 0, 5, 0), ("b", 1, 0, 0, 0, 9)]


def _start_postgres(folder):
    """A throwaway PostgreSQL cluster in folder, or a reason why not."""
    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    pg_ctl = shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl"
    if not os.path.exists(initdb):
        return None, "PostgreSQL is not installed (Debian package postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install 'faststeal[postgres]')"
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = folder / "pg"
    data.mkdir()
    if run_as:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    port = __import__("socket").socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                       capture_output=True, timeout=60)
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", f"-p {number} -k {folder} -h 127.0.0.1",
                        "-l", str(folder / "pg.log"), "-w", "start"], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"PostgreSQL did not start here: {exc}"
    stop = [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
    return (f"postgresql+psycopg://postgres@127.0.0.1:{number}/postgres", stop), None


def test_the_same_ledger_code_runs_on_postgresql():
    import pathlib
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp(prefix="faststeal-pg-"))   # not under pytest's 0700 root folder
    started, reason = _start_postgres(folder)
    if started is None:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(reason)
    url, stop = started
    try:
        a, b = Ledger(url), Ledger(url)
        a.add_key("k", 50)
        got = []

        def worker(led, t):
            for i in range(6):
                try:
                    led.charge("k", f"{t}-{i}", "prior", 4, f"{t}-{i}")
                    got.append(f"{t}-{i}")
                except LedgerError as exc:
                    assert exc.status == 402

        threads = [threading.Thread(target=worker, args=(a if t % 2 else b, t)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 4 * len(got) == a.usage("k")["used"] == 48
        assert a.charge("k", got[0], "prior", 4, got[0]).replayed     # any charged id: which ones won is a race
        a.dispose(), b.dispose()
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_database_url_names_the_driver_the_postgres_extra_installs(tmp_path):
    assert db_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert db_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert db_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"    # an explicit driver is kept
    assert db_url(tmp_path / "l.sqlite") == f"sqlite:///{(tmp_path / 'l.sqlite').resolve()}"
