"""The budget ledger: API keys, charged requests and the audit trail, in one database.

SQLAlchemy Core over SQLite (one file in WAL mode, shared by every worker process) by default; a
``postgresql://`` URL runs the same statements for several servers behind a load balancer. Every charge
happens in one transaction that first locks the key's row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on PostgreSQL), so concurrent requests, from any worker or server, can never spend more than the
budget. Requests are recorded under the client's request id with what is needed to regenerate their images
(kind, stream position, count and a digest of the body), never the image bytes: a retried id is served
again from that record without a second charge.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
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
    select,
    update,
)
from sqlalchemy.exc import OperationalError

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
)

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class LedgerError(ValueError):
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
    """A path (SQLite file) or a full SQLAlchemy URL."""
    text = str(text)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _sqlite_setup(engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so that the first statement of a charge takes the write lock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None           # let the begin event below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Ledger:
    """Keys, budgets, idempotent charges and the audit trail."""

    def __init__(self, url: str):
        self.url = db_url(url)
        self.engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        for attempt in range(20):                   # several workers may create the tables at once
            try:
                metadata.create_all(self.engine)
                break
            except OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.1)

    # --- key management -------------------------------------------------------------------------------
    def add_key(self, name: str, budget: int, rate: float = 0.0) -> str:
        """Create a key; returns the bearer token ``NAME.SECRET`` (only its hash is stored)."""
        if not NAME.match(name or ""):
            raise LedgerError(400, "bad_name", f"key name must be 1-64 of A-Z a-z 0-9 _ -, got {name!r}")
        if budget < 0:
            raise LedgerError(400, "bad_budget", f"budget must be >= 0, got {budget}")
        if rate < 0:
            raise LedgerError(400, "bad_rate", f"rate must be >= 0 (0: unlimited), got {rate}")
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
        with self.engine.connect() as conn:
            rows = conn.execute(select(keys).order_by(keys.c.name)).mappings().all()
        return [_public(r) for r in rows]

    # --- serving --------------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> str:
        """The key name behind a bearer token; 401 for unknown, 403 for revoked."""
        name, _, secret = (token or "").partition(".")
        with self.engine.connect() as conn:
            row = conn.execute(select(keys.c.secret_sha256, keys.c.revoked).where(keys.c.name == name)).first()
        if row is None or not secret or not hmac.compare_digest(row.secret_sha256, _hash(secret)):
            raise LedgerError(401, "unknown_key", "unknown API key; send 'Authorization: Bearer NAME.SECRET' "
                                                  "with a key from `faststeal keys add`")
        if row.revoked:
            raise LedgerError(403, "revoked_key", f"API key {name!r} has been revoked")
        return name

    def usage(self, name: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(keys).where(keys.c.name == name)).mappings().first()
            count = conn.execute(select(func.count()).select_from(requests).where(requests.c.key == name)).scalar()
        return {**_public(row), "requests": int(count)}

    def charge(self, name: str, request_id: str, kind: str, n: int, digest: str) -> Charge:
        """Charge n images to the key before any is generated, or find the earlier charge of this request id.

        All or nothing: either the whole request fits the budget and is charged, or nothing changes. The rate
        limit applies to every request, replays included (they cost compute, not budget).
        """
        if n < 1:
            raise LedgerError(422, "bad_n", f"n must be >= 1, got {n}")
        now = time.time()
        with self.engine.begin() as conn:       # a refusal still commits its audit row and rate-limit state
            outcome = self._charge(conn, name, request_id, kind, n, digest, now)
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def _charge(self, conn, name, request_id, kind, n, digest, now) -> Charge | LedgerError:
        key = conn.execute(select(keys).where(keys.c.name == name).with_for_update()).mappings().first()
        if key is None or key["revoked"]:
            return LedgerError(403, "revoked_key", f"API key {name!r} has been revoked")
        remaining = key["budget"] - key["used"]
        if key["rate"] > 0:
            burst = max(1.0, key["rate"])
            tokens = min(burst, key["tokens"] + (now - key["tokens_at"]) * key["rate"])
            spend = 1.0 if tokens >= 1.0 else 0.0
            conn.execute(update(keys).where(keys.c.name == name).values(tokens=tokens - spend, tokens_at=now))
            if not spend:
                self._audit(conn, name, now, n, kind, request_id, "refused")
                wait = (1.0 - tokens) / key["rate"]
                return LedgerError(429, "rate_limited", f"rate limit of {key['rate']:g} requests/s reached; "
                                   f"retry in {wait:.2f} s", {"Retry-After": str(max(1, round(wait + 0.5)))})
        earlier = conn.execute(select(requests).where(requests.c.key == name,
                                                      requests.c.request_id == request_id)).mappings().first()
        if earlier is not None:
            if earlier["body_sha256"] != digest:
                return LedgerError(409, "request_id_reused", f"request id {request_id!r} was used for another "
                                                             f"request; use a new id")
            self._audit(conn, name, now, earlier["n"], kind, request_id, "replayed")
            return Charge(earlier["start"], True, remaining, pending=earlier["status"] == "charged")
        if n > remaining:
            self._audit(conn, name, now, n, kind, request_id, "refused")
            return LedgerError(402, "budget_exceeded", f"query for {n} images refused: {remaining} of the "
                                                       f"budget of {key['budget']} left")
        start = key["drawn"] if kind == "prior" else 0
        conn.execute(update(keys).where(keys.c.name == name).values(
            used=keys.c.used + n, drawn=keys.c.drawn + (n if kind == "prior" else 0)))
        conn.execute(insert(requests).values(key=name, request_id=request_id, kind=kind, start=start, n=n,
                                             body_sha256=digest, status="charged", created=now))
        self._audit(conn, name, now, n, kind, request_id, "charged")
        return Charge(start, False, remaining - n)

    def served(self, name: str, request_id: str, n: int, kind: str) -> None:
        """Mark a charged request served; only the first of concurrent deliveries (original, replays) counts."""
        with self.engine.begin() as conn:
            done = conn.execute(update(requests).where(requests.c.key == name, requests.c.request_id == request_id,
                                                       requests.c.status == "charged")
                                .values(status="served")).rowcount
            if done:
                self._audit(conn, name, time.time(), n, kind, request_id, "served")

    def refund(self, name: str, request_id: str, n: int, kind: str) -> None:
        """Generation failed: give the images back and forget the request id (a retry is charged anew).

        The prior stream position is not given back, so no position is ever served twice."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(requests).where(requests.c.key == name, requests.c.request_id == request_id,
                                                       requests.c.status == "charged")).rowcount
            if gone:
                conn.execute(update(keys).where(keys.c.name == name).values(used=keys.c.used - n))
                self._audit(conn, name, time.time(), n, kind, request_id, "refunded")

    @staticmethod
    def _audit(conn, name, now, n, kind, request_id, outcome) -> None:
        conn.execute(insert(audit).values(key=name, time=now, n=n, kind=kind, request_id=request_id,
                                          outcome=outcome))

    # --- reporting ------------------------------------------------------------------------------------
    def audit_rows(self, name: str | None = None) -> list[dict]:
        q = select(audit).order_by(audit.c.id)
        if name is not None:
            q = q.where(audit.c.key == name)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def dispose(self) -> None:
        self.engine.dispose()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(row) -> dict:
    return {"key": row["name"], "budget": row["budget"], "used": row["used"],
            "remaining": row["budget"] - row["used"], "rate": row["rate"], "revoked": bool(row["revoked"])}
