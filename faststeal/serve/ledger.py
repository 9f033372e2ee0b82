"""The budget ledger: API keys, charged requests and the audit trail, in one database.

SQLAlchemy Core over SQLite (one file in WAL mode, shared by every worker process) by default; a
``postgresql://`` URL runs the same statements for several servers behind a load balancer. Every charge
happens in one transaction that first locks the key's row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on PostgreSQL), so concurrent requests, from any worker or server, can never spend more than the
budget. Requests are recorded under the client's request id with what is needed to regenerate their images
(kind, stream position, count, a digest of the body and a digest of the serving settings), never the image
bytes: a retried id is served again from that record without a second charge, and only under the settings it
was first served under (another seed, defense, target or prior would hand out new images for free).

Reads (authentication, usage, refusals) never take the write lock: on SQLite only a charge, a delivery or a
refund begins ``BEGIN IMMEDIATE``. A ledger that stays locked past ``busy_s`` answers 503 ``ledger_busy``
with nothing charged. Refused requests are counted in memory and written as one audit row per key, minute
and reason, with the next write (or at the latest a minute later).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from faststeal.errors import FaststealError

metadata = MetaData()

keys = Table(
    "keys", metadata,
    Column("name", String(64), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("budget", Integer, nullable=False),
    Column("used", Integer, nullable=False, default=0),     # images charged (refunds subtract)
    Column("drawn", Integer, nullable=False, default=0),    # next position in the owner's prior stream
    Column("rate", Float, nullable=False, default=0.0),     # requests per second; 0 = unlimited
    Column("tokens", Float, nullable=False, default=0.0),   # token bucket for the rate limit
    Column("tokens_at", Float, nullable=False, default=0.0),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
)

requests = Table(
    "requests", metadata,
    Column("key", String(64), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),             # prior | chosen | seeds
    Column("start", Integer, nullable=False),               # prior stream position (0 for chosen codes)
    Column("n", Integer, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("settings_sha256", String(64), nullable=True),   # what served it (settings_digest); NULL: older
    Column("status", String(16), nullable=False),           # charged (generating) | served
    Column("created", Float, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, index=True),
    Column("time", Float, nullable=False),
    Column("n", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),          # charged | served | replayed | refunded | refused
    Column("requests", Integer, nullable=True),             # refused rows: requests in that key's minute
)

serving = Table(                                            # the owner's serving secrets (the stream seed)
    "serving", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BUDGET = 2 ** 62            # budgets and counts fit a 64-bit column on every database
MAX_RATE = 1e6                  # requests per second
AUDITED = ("budget_exceeded", "rate_limited")   # refusals kept in the audit (aggregated per key and minute)
BUSY_S = 5.0                    # how long a request waits for a locked ledger before 503


class LedgerError(FaststealError, ValueError):
    """A ledger operation refused for a reason the caller should see (one line)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


@dataclass(frozen=True)
class Charge:
    """What a request may serve: the stream position to draw from, and whether it is a replay (no charge).

    ``pending``: a replay of a request whose images were never generated to the end (the server died while
    generating it), so the replay is the first delivery and must be recorded as served."""

    start: int
    replayed: bool
    remaining: int
    pending: bool = False


def db_url(text: str) -> str:
    """A path (SQLite file) or a full SQLAlchemy URL; a plain postgresql:// URL gets the psycopg (3) driver,
    the one the [postgres] extra installs (SQLAlchemy would otherwise look for psycopg2)."""
    text = str(text)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _sqlite_setup(engine, busy_s: float) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE for writes only (the first statement of a charge takes the
    write lock; a read, e.g. authentication, begins a plain deferred transaction and never waits for one)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None           # let the begin event below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write", True) else "BEGIN")


def settings_digest(settings: dict) -> str:
    """The digest a request's record keeps of what served it: a replay under other settings is refused."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def check_count(what: str, value, low: int = 0, high: int = MAX_BUDGET) -> int:
    """An integer in low..high (not a bool, not a float), or a one-line LedgerError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = "2**62" if high == MAX_BUDGET else high
        raise LedgerError(400, f"bad_{what}", f"{what} must be >= {low} and <= {shown} (an integer), got {value!r}")
    return value


def check_rate(value) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(value, bool) or not math.isfinite(rate) or not 0 <= rate <= MAX_RATE:
        raise LedgerError(400, "bad_rate", f"rate must be >= 0 and <= {MAX_RATE:g} requests per second, a finite "
                                           f"number (0: unlimited), got {value!r}")
    return rate


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _busy(exc: Exception) -> LedgerError:
    return LedgerError(503, "ledger_busy", "the ledger is busy or unreachable; nothing was charged, retry later",
                       {"Retry-After": "1"})


class Ledger:
    """Keys, budgets, idempotent charges and the audit trail."""

    def __init__(self, url: str, busy_s: float = BUSY_S):
        self.url = db_url(url)
        self.engine = create_engine(self.url, future=True, pool_timeout=max(1.0, busy_s))
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine, busy_s)
        self.reader = self.engine.execution_options(write=False)     # reads: no write lock on SQLite
        self._refused: dict[tuple, list[int]] = {}                   # (key, minute, kind) -> [requests, images]
        self._refused_lock = threading.Lock()
        for attempt in range(20):                   # several workers may create the tables at once
            try:
                metadata.create_all(self.engine)
                self._upgrade()
                break
            except OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.1)

    def _upgrade(self) -> None:
        """Columns added since a ledger file was made (NULL in its old rows)."""
        have = {t: {c["name"] for c in inspect(self.engine).get_columns(t)} for t in ("requests", "audit")}
        with self.engine.begin() as conn:
            for table, column in (("requests", "settings_sha256 VARCHAR(64)"), ("audit", "requests INTEGER")):
                if column.split()[0] not in have[table]:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))

    def secret(self, name: str) -> str:
        """The serving secret ``name`` (e.g. the stream seed): made on first use, then the same on every start."""
        with self.reader.connect() as conn:
            row = conn.execute(select(serving.c.value).where(serving.c.name == name)).first()
        if row is not None:
            return row.value
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(serving).values(name=name, value=secrets.token_hex(32)))
        except IntegrityError:                      # another process made it first: use theirs
            pass
        with self.reader.connect() as conn:
            return conn.execute(select(serving.c.value).where(serving.c.name == name)).scalar_one()

    # --- key management -------------------------------------------------------------------------------
    def add_key(self, name: str, budget: int, rate: float = 0.0) -> str:
        """Create a key; returns the bearer token ``NAME.SECRET`` (only its hash is stored)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise LedgerError(400, "bad_name", f"key name must be 1-64 of A-Z a-z 0-9 _ -, got {name!r}")
        budget, rate = check_count("budget", budget), check_rate(rate)
        secret = secrets.token_urlsafe(24)
        with self.engine.begin() as conn:
            if conn.execute(select(keys.c.name).where(keys.c.name == name)).first():
                raise LedgerError(409, "key_exists", f"key {name!r} exists; pick another name or revoke it")
            now = time.time()
            conn.execute(insert(keys).values(name=name, secret_sha256=_hash(secret), budget=int(budget), used=0,
                                             drawn=0, rate=float(rate), tokens=max(1.0, rate), tokens_at=now,
                                             revoked=False, created=now))
        return f"{name}.{secret}"

    def revoke(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(update(keys).where(keys.c.name == name).values(revoked=True)).rowcount != 1:
                raise LedgerError(404, "unknown_key", f"no key named {name!r}")

    def list_keys(self) -> list[dict]:
        with self.reader.connect() as conn:
            rows = conn.execute(select(keys).order_by(keys.c.name)).mappings().all()
        return [_public(r) for r in rows]

    # --- serving --------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> str:
        """The key name behind a bearer token; 401 for unknown, 403 for revoked."""
        return self.admit(token, rate_check=False)

    def admit(self, token: str | None, rate_check: bool = True) -> str:
        """authenticate(), then (``rate_check``) refuse a key over its rate limit: reads only, no write lock."""
        name, _, secret = (token or "").partition(".")
        try:
            with self.reader.connect() as conn:
                row = conn.execute(select(keys).where(keys.c.name == name)).mappings().first()
        except (OperationalError, PoolTimeout) as exc:
            raise _busy(exc) from None
        if row is None or not secret or not hmac.compare_digest(row["secret_sha256"], _hash(secret)):
            raise LedgerError(401, "unknown_key", "unknown API key; send 'Authorization: Bearer NAME.SECRET' "
                                                  "with a key from `faststeal keys add`")
        if row["revoked"]:
            raise LedgerError(403, "revoked_key", f"API key {name!r} has been revoked")
        if rate_check:
            refused = self._rate_refusal(row, time.time())
            if refused is not None:
                self._refuse(name, 0, refused.code)
                raise refused
        return name

    @staticmethod
    def _tokens(key, now: float) -> float:
        return min(max(1.0, key["rate"]), key["tokens"] + max(0.0, now - key["tokens_at"]) * key["rate"])

    def _rate_refusal(self, key, now: float) -> LedgerError | None:
        if key["rate"] <= 0:
            return None
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return None
        wait = (1.0 - tokens) / key["rate"]
        return LedgerError(429, "rate_limited", f"rate limit of {key['rate']:g} requests/s reached; retry in "
                                                f"{wait:.2f} s", {"Retry-After": str(max(1, round(wait + 0.5)))})

    def usage(self, name: str) -> dict:
        with self.reader.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.name == name)).mappings().first()
            count = conn.execute(select(func.count()).select_from(requests).where(requests.c.key == name)).scalar()
        return {**_public(row), "requests": int(count)}

    def charge(self, name: str, request_id: str, kind: str, n: int, digest: str, settings: str = "") -> Charge:
        """Charge n images to the key before any is generated, or find the earlier charge of this request id.

        All or nothing: either the whole request fits the budget and is charged, or nothing changes. The rate
        limit applies to every request, replays included (they cost compute, not budget). ``settings``: the
        serving settings' digest (settings_digest); a replay recorded under other settings is refused (409).
        A refusal is decided on a read (no write lock) where it can be, and counted in memory.
        """
        if n < 1:
            raise LedgerError(422, "bad_n", f"n must be >= 1, got {n}")
        now = time.time()
        try:
            with self.reader.connect() as conn:
                outcome = self._check(conn, name, request_id, kind, n, digest, settings, now)
            if not isinstance(outcome, LedgerError):            # a charge or a replay: under the key's lock
                with self.engine.begin() as conn:
                    self._flush(conn)
                    outcome = self._check(conn, name, request_id, kind, n, digest, settings, now, lock=True)
                    if outcome is None or isinstance(outcome, Charge):
                        outcome = self._commit(conn, name, request_id, kind, n, digest, settings, now, outcome)
        except (OperationalError, PoolTimeout) as exc:
            raise _busy(exc) from None
        if isinstance(outcome, LedgerError):
            if outcome.code in AUDITED:
                self._refuse(name, n, outcome.code)
            raise outcome
        return outcome

    def _check(self, conn, name, request_id, kind, n, digest, settings, now, lock=False):
        """A refusal (LedgerError), the earlier Charge of this id (a replay), or None: charge it."""
        q = select(keys).where(keys.c.name == name)
        key = conn.execute(q.with_for_update() if lock else q).mappings().first()
        if key is None or key["revoked"]:
            return LedgerError(403, "revoked_key", f"API key {name!r} has been revoked")
        refused = self._rate_refusal(key, now)
        if refused is not None:
            return refused
        remaining = key["budget"] - key["used"]
        earlier = conn.execute(select(requests).where(requests.c.key == name,
                                                      requests.c.request_id == request_id)).mappings().first()
        if earlier is not None:
            if earlier["body_sha256"] != digest:
                return LedgerError(409, "request_id_reused", f"request id {request_id!r} was used for another "
                                                             f"request; use a new id")
            if earlier["settings_sha256"] != settings:
                return LedgerError(409, "settings_changed", f"request id {request_id!r} was served under other "
                                                            f"serving settings and is not served again; use a new id")
            return Charge(earlier["start"], True, remaining, pending=earlier["status"] == "charged")
        if n > remaining:
            return LedgerError(402, "budget_exceeded", f"query for {n} images refused: {remaining} of the "
                                                       f"budget of {key['budget']} left")
        return None

    def _commit(self, conn, name, request_id, kind, n, digest, settings, now, earlier: Charge | None) -> Charge:
        """Under the key's lock: spend a rate token, then record the replay or charge the request."""
        key = conn.execute(select(keys).where(keys.c.name == name)).mappings().first()
        if key["rate"] > 0:
            conn.execute(update(keys).where(keys.c.name == name).values(tokens=self._tokens(key, now) - 1.0,
                                                                        tokens_at=now))
        if earlier is not None:
            self._audit(conn, name, now, n, kind, request_id, "replayed")
            return earlier
        start = key["drawn"] if kind == "prior" else 0
        conn.execute(update(keys).where(keys.c.name == name).values(
            used=keys.c.used + n, drawn=keys.c.drawn + (n if kind == "prior" else 0)))
        conn.execute(insert(requests).values(key=name, request_id=request_id, kind=kind, start=start, n=n,
                                             body_sha256=digest, settings_sha256=settings, status="charged",
                                             created=now))
        self._audit(conn, name, now, n, kind, request_id, "charged")
        return Charge(start, False, key["budget"] - key["used"] - n)

    # --- refusals: counted in memory, one audit row per key, minute and reason -----------------------------
    def _refuse(self, name: str, n: int, kind: str) -> None:
        """Count a refusal (``kind``: its error code) without touching the database until a minute ends."""
        minute = int(time.time() // 60)
        with self._refused_lock:
            counts = self._refused.setdefault((name, minute, kind), [0, 0])
            counts[0] += 1
            counts[1] += n
            stale = min(m for _, m, _ in self._refused) < minute
        if stale:                                   # a minute has ended: write it now, if the ledger is free
            try:
                with self.engine.begin() as conn:
                    self._flush(conn)
            except (OperationalError, PoolTimeout):
                pass                                # kept in memory; the next write takes it along

    def _flush(self, conn) -> None:
        with self._refused_lock:
            pending, self._refused = self._refused, {}
        try:
            for (name, minute, kind), (count, n) in sorted(pending.items()):
                tag = f"refused@{minute * 60}"
                row = conn.execute(select(audit.c.id).where(audit.c.key == name, audit.c.request_id == tag,
                                                            audit.c.kind == kind)).first()
                if row is None:
                    conn.execute(insert(audit).values(key=name, time=minute * 60.0, n=n, kind=kind, request_id=tag,
                                                      outcome="refused", requests=count))
                else:
                    conn.execute(update(audit).where(audit.c.id == row.id).values(
                        n=audit.c.n + n, requests=func.coalesce(audit.c.requests, 1) + count))
        except Exception:
            with self._refused_lock:                # not written: keep the counts for the next write
                for k, (count, n) in pending.items():
                    c = self._refused.setdefault(k, [0, 0])
                    c[0] += count
                    c[1] += n
            raise

    def served(self, name: str, request_id: str, n: int, kind: str) -> None:
        """Mark a charged request served; only the first of concurrent deliveries (original, replays) counts."""
        with self._writing() as conn:
            done = conn.execute(update(requests).where(requests.c.key == name, requests.c.request_id == request_id,
                                                       requests.c.status == "charged")
                                .values(status="served")).rowcount
            if done:
                self._audit(conn, name, time.time(), n, kind, request_id, "served")

    def refund(self, name: str, request_id: str, n: int, kind: str) -> None:
        """Generation failed: give the images back and forget the request id (a retry is charged anew).

        The prior stream position is not given back, so no position is ever served twice."""
        with self._writing() as conn:
            gone = conn.execute(delete(requests).where(requests.c.key == name, requests.c.request_id == request_id,
                                                       requests.c.status == "charged")).rowcount
            if gone:
                conn.execute(update(keys).where(keys.c.name == name).values(used=keys.c.used - n))
                self._audit(conn, name, time.time(), n, kind, request_id, "refunded")

    def _writing(self):
        """A write transaction that also writes the refusals counted so far; 503 ledger_busy if locked."""
        @contextlib.contextmanager
        def txn():
            try:
                with self.engine.begin() as conn:
                    self._flush(conn)
                    yield conn
            except (OperationalError, PoolTimeout) as exc:
                raise _busy(exc) from None

        return txn()

    @staticmethod
    def _audit(conn, name, now, n, kind, request_id, outcome) -> None:
        conn.execute(insert(audit).values(key=name, time=now, n=n, kind=kind, request_id=request_id,
                                          outcome=outcome))

    # --- reporting ------------------------------------------------------------------------------------
    def audit_rows(self, name: str | None = None) -> list[dict]:
        """Every audit row (refused rows: one per key, minute and kind, ``requests`` counting them)."""
        if self._refused:
            with self._writing():
                pass
        q = select(audit).order_by(audit.c.id)
        if name is not None:
            q = q.where(audit.c.key == name)
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def dispose(self) -> None:
        if self._refused:
            try:
                with self._writing():
                    pass
            except LedgerError:
                pass
        self.engine.dispose()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(row) -> dict:
    return {"key": row["name"], "budget": row["budget"], "used": row["used"],
            "remaining": row["budget"] - row["used"], "rate": row["rate"], "revoked": bool(row["revoked"])}
