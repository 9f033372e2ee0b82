"""The HTTP service: a target generator behind API keys, a budget ledger and the owner's defenses.

Endpoints (JSON errors ``{"error": {"code", "message"}}`` with a 4xx status for every bad request):

* ``POST /v1/images``: body ``{"n": N}`` (codes from the owner's prior), or with --accept-latents
  ``{"z": [[...], ...]}`` or ``{"seeds": [...]}``; header ``Idempotency-Key`` (the request id) makes a retry
  return the same images without a second charge. Answers uint8 (N, C, R, R) as ``.npy`` bytes, or a PNG grid
  with ``?format=png``; headers ``X-Budget-Remaining``, ``X-Request-Id``, ``X-Replayed``.
* ``GET /v1/info`` (with a key): model id, resolution, channels, prior, max batch, latent size only when codes
  are taken, and the served defense only when the owner publishes it (``--publish-defense``: its spec with
  every secret redacted; ``"unpublished"`` otherwise).
* ``GET /v1/usage``: the calling key's budget and use; ``GET /v1/usage/NAME`` only for the caller's own NAME.

Images come from the same code path as the in-process ``TargetOracle`` (its generator closure and defense
hooks). The prior stream is secret by default: its seed is made on the first start and kept in the ledger,
and every key reads its own stream (block b of key K from HMAC(secret, K/b)), so one key's images say nothing
about another's codes. With an explicit ``seed`` (reproducible experiments) every key reads
``TargetOracle(seed=seed)``'s public stream, byte for byte. Each worker process builds its own app from the
JSON settings in ``FASTSTEAL_SERVE`` (see ``commands.serve``).

Every refusal is a 4xx ``{"error": {"code", "message"}}`` without exception text; a locked ledger is 503
``ledger_busy`` with ``Retry-After``; anything unforeseen is logged here with a request id and answered 500
``internal`` naming only that id.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import threading
import traceback
import uuid

import numpy as np
import torch
from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations by name
from PIL import Image

from faststeal.cpu import set_threads
from faststeal.defense import parse_pipeline
from faststeal.grid import make_grid
from faststeal.report import redact
from faststeal.targets import open_target
from faststeal.targets.oracle import TargetOracle

from .ledger import BUSY_S, Ledger, LedgerError, body_digest, settings_digest

SETTINGS_ENV = "FASTSTEAL_SERVE"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
STREAM_SECRET = "stream_seed"          # the ledger's name for the secret serving seed
UNPUBLISHED = "unpublished"            # /v1/info's defense without --publish-defense
MAX_DEPTH = 4                          # JSON nesting a body may have: {"z": [[...]]} is 3
MAX_DIGITS = 20                        # digits an integer in a body may have (seeds are < 2**63)
FLOAT32_MAX = float(np.finfo(np.float32).max)
UNKNOWN_KEY_RATE = "20/second"         # requests with an unknown key, per client address (limits notation)
log = logging.getLogger("faststeal.serve")


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


class _Unfit:
    """A JSON number a field cannot take (NaN, an infinity, an integer of too many digits), kept as a marker
    so that the field's own check says what is wrong with it."""

    def __init__(self, text: str, finite: bool):
        self.text, self.finite = text if len(text) <= 24 else f"a {len(text)}-character number", finite

    def __repr__(self) -> str:
        return self.text


def _constant(text: str):
    return _Unfit(text, finite=False)


def _integer(text: str):
    return _Unfit(text, finite=True) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def _float(text: str):
    x = float(text)
    return x if math.isfinite(x) else _Unfit(text, finite=False)


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> None:
    """BadRequest if the JSON text nests deeper than ``limit`` (checked before parsing: no recursion)."""
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        depth += 1 if m.group() in (b"[", b"{") else -1
        if depth > limit:
            raise BadRequest(422, "too_deep", f"the body nests deeper than {limit} levels; send {{\"n\": N}}, "
                                              f"{{\"z\": [[...], ...]}} or {{\"seeds\": [...]}}")


def seed_codes(seeds: list[int], dim: int) -> torch.Tensor:
    """One N(0, I) code per integer seed: the same seed always names the same code."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


class ServedModel:
    """What a worker serves: a TargetOracle used only for its generation path (the budget is the ledger's)."""

    def __init__(self, settings: dict, ledger: Ledger):
        seed = settings.get("seed")
        self.secret = None if seed is not None else bytes.fromhex(ledger.secret(STREAM_SECRET))
        # The latent defenses' secret directions: from the secret too, unless the stream is public anyway.
        defense_seed = int(seed) if seed is not None else int.from_bytes(self._mac(b"defense")[:5], "little")
        spec = settings.get("defense")
        pipeline = parse_pipeline(spec, seed=defense_seed) if spec else None
        hooks = pipeline.oracle_hooks() if pipeline is not None else {}
        loaded = open_target(settings["target"], hints=settings.get("hints")).loaded
        self.oracle = TargetOracle(loaded, budget=0, prior=settings.get("prior", "normal"),
                                   seed=int(seed) if seed is not None else 0, batch=settings.get("batch", 256),
                                   accept_latents=settings.get("accept_latents", False), **hooks)
        self.defense = redact(pipeline.spec()) if pipeline is not None else "none"
        self.published = self.defense if settings.get("publish_defense") else UNPUBLISHED
        # What a request's record is bound to: a replay under other settings is refused, never served anew.
        self.settings_digest = settings_digest({
            "model_id": self.oracle.model_id, "defense": spec or "none", "prior": str(self.oracle.prior),
            "knowledge": "latents" if self.oracle.accepts_latents else "prior",
            "seed": seed if seed is not None else self._mac(b"stream-id").hex()})
        self.lock = threading.Lock()       # one generation at a time per worker: torch threads are the parallelism

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def info(self, max_batch: int) -> dict:
        o = self.oracle
        out = {"model_id": o.model_id, "resolution": o.resolution, "channels": o.channels, "prior": str(o.prior),
               "accepts_latents": o.accepts_latents, "max_batch": max_batch, "defense": self.published}
        if o.accepts_latents:
            out["latent_dim"] = o.latent_dim
        return out

    def prior_codes(self, key: str, start: int, n: int, block: int = 1000) -> torch.Tensor:
        """Codes start..start+n of ``key``'s prior stream: the public TargetOracle stream under an explicit seed,
        else blocks seeded from HMAC(secret, key/block) (64 bits each, one key's blocks unrelated to another's)."""
        o = self.oracle
        if self.secret is None:
            return o._prior_codes(start, n, block)
        out, pos = [], start
        while pos < start + n:
            b = pos // block
            g = torch.Generator().manual_seed(int.from_bytes(self._mac(f"{key}/{b}".encode())[:8], "little"))
            codes = o.prior.sample(block, o.latent_dim, g)
            lo, hi = pos - b * block, min(block, start + n - b * block)
            out.append(codes[lo:hi])
            pos = b * block + hi
        return torch.cat(out)

    def images(self, key: str, kind: str, start: int, n: int, payload) -> torch.Tensor:
        o = self.oracle
        if kind == "prior":
            z = self.prior_codes(key, start, n)
        elif kind == "seeds":
            z = seed_codes(payload, o.latent_dim)
        else:
            z = payload
        with self.lock:
            return o._produce(z)


def parse_body(raw: bytes, target: ServedModel, max_batch: int) -> tuple[str, int, object]:
    """(kind, n, payload) from a request body, or BadRequest saying what is wrong (nesting and number sizes are
    bounded before and while parsing, so no body can exhaust the parser)."""
    check_depth(raw)
    try:
        body = json.loads(raw, parse_constant=_constant, parse_int=_integer, parse_float=_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(400, "malformed_json", "body is not valid JSON; send e.g. {\"n\": 16}") from None
    if not isinstance(body, dict):
        raise BadRequest(422, "bad_body", 'body must be a JSON object such as {"n": 16}')
    given = [k for k in ("n", "z", "seeds") if k in body]
    extra = sorted(set(body) - {"n", "z", "seeds"})
    if extra:
        raise BadRequest(422, "unknown_field", f"unknown field {extra[0][:64]!r}; send one of n, z, seeds")
    if len(given) != 1:
        raise BadRequest(422, "bad_body", f"send exactly one of n, z, seeds; got {given or 'none'}")
    kind = given[0]
    o = target.oracle
    if kind != "n" and not o.accepts_latents:
        raise BadRequest(403, "latents_refused", "this server serves images for a count only and does not "
                                                 "accept latent codes or seeds; send {\"n\": N}")
    value = body[kind]

    def check_n(n):
        if n < 1 or n > max_batch:
            raise BadRequest(422, "bad_n", f"a request must ask for 1..{max_batch} images (--max-batch), got {n}")

    if kind == "n":
        if isinstance(value, bool) or not isinstance(value, int):
            shown = value if isinstance(value, (_Unfit, int, float)) else type(value).__name__
            raise BadRequest(422, "bad_n", f"n must be an integer in 1..{max_batch}, got {shown!r}")
        check_n(value)
        return "prior", value, None
    if kind == "seeds":
        if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                  and 0 <= s < 2 ** 63 for s in value):
            raise BadRequest(422, "bad_seeds", "seeds must be a list of integers in 0..2**63-1")
        check_n(len(value))
        return "seeds", len(value), value
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise BadRequest(422, "bad_z", f"z must be a list of rows of {o.latent_dim} numbers")
    check_n(len(value))
    if any(len(r) != o.latent_dim for r in value):
        bad = next(len(r) for r in value if len(r) != o.latent_dim)
        raise BadRequest(422, "bad_z_shape", f"z must have shape (N, {o.latent_dim}); a row has {bad} numbers")
    unfit = next((x for r in value for x in r if isinstance(x, _Unfit)), None)
    if unfit is not None:
        raise BadRequest(422, "not_finite", f"z holds {unfit!r}; every code must be a finite float32 number "
                                            f"(|x| <= {FLOAT32_MAX:.4g})")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for r in value for x in r):
        raise BadRequest(422, "bad_z", "z must hold numbers only")
    z = np.asarray(value, dtype=np.float64)
    if not (np.abs(z) <= FLOAT32_MAX).all():
        raise BadRequest(422, "not_finite", f"z holds a number outside the float32 range; every code must be a "
                                            f"finite float32 number (|x| <= {FLOAT32_MAX:.4g})")
    return "chosen", len(value), torch.from_numpy(z.astype(np.float32))


def create_app(settings: dict | None = None):
    """The FastAPI app for one worker; settings default to the JSON in $FASTSTEAL_SERVE."""
    # the [serve] extra; imported by the worker that serves, not by every CLI command
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from limits import parse as parse_limit
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or json.loads(os.environ[SETTINGS_ENV])
    set_threads(int(settings.get("threads", 1)))
    max_batch, max_body = int(settings["max_batch"]), int(settings["max_body"])
    ledger = Ledger(settings["db"], busy_s=float(settings.get("busy_s", BUSY_S)))
    target = ServedModel(settings, ledger)
    digest = target.settings_digest
    hidden = [settings.get("seed") if settings.get("seed") is not None else None]     # never in a log line
    strangers = MovingWindowRateLimiter(MemoryStorage())           # unknown keys, per client address
    stranger_rate = parse_limit(settings.get("unknown_key_rate", UNKNOWN_KEY_RATE))
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        ledger.dispose()                  # writes the refusals counted since the last write

    app = FastAPI(title="faststeal serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ledger, app.state.target = ledger, target

    def error(status: int, code: str, message: str, headers: dict | None = None):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    def ledger_error(exc: LedgerError):
        return error(exc.status, exc.code, str(exc), exc.headers)

    def internal(exc: BaseException, code: str = "internal", what: str = "the server failed"):
        incident = uuid.uuid4().hex[:12]
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error("request %s: %s", incident, redact(text, hidden))
        return error(500, code, f"{what}; report incident {incident} to the owner")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc):
        if exc.status_code == 404:
            return error(404, "not_found", "no such endpoint; see GET /v1/info, GET /v1/usage, POST /v1/images")
        if exc.status_code == 405:
            return error(405, "method_not_allowed", "method not allowed on this endpoint")
        return error(exc.status_code, "http_error", "request refused")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, _exc):
        return error(422, "invalid_request", "the request does not match the endpoint")

    @app.exception_handler(Exception)
    async def _internal(_request, exc):
        return internal(exc)

    def bearer(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise LedgerError(401, "missing_key", "send 'Authorization: Bearer NAME.SECRET' with a key from "
                                                  "`faststeal keys add`")
        return token.strip()

    def key_of(request: Request, rate_check: bool = False) -> str:
        """The caller's key name (reads only); unknown keys are limited per client address before any read."""
        address = request.client.host if request.client else "-"
        if not strangers.test(stranger_rate, address):
            raise LedgerError(429, "rate_limited", "too many requests with unknown keys from this address; "
                                                   "retry in a second", {"Retry-After": "1"})
        try:
            return ledger.admit(bearer(request), rate_check=rate_check)
        except LedgerError as exc:
            if exc.status == 401:
                strangers.hit(stranger_rate, address)
            raise

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise BadRequest(413, "body_too_large", f"body of {declared} bytes is over the limit of {max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise BadRequest(413, "body_too_large", f"body is over the limit of {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/v1/info")
    async def info(request: Request):
        try:
            await run_in_threadpool(key_of, request)
        except LedgerError as exc:
            return ledger_error(exc)
        return target.info(max_batch)

    @app.get("/v1/usage")
    async def usage(request: Request):
        try:
            return await run_in_threadpool(lambda: ledger.usage(key_of(request)))
        except LedgerError as exc:
            return ledger_error(exc)

    @app.get("/v1/usage/{name}")
    async def usage_of(name: str, request: Request):
        try:
            own = await run_in_threadpool(key_of, request)
            if name != own:
                return error(403, "forbidden", "a key may read only its own usage")
            return await run_in_threadpool(ledger.usage, own)
        except LedgerError as exc:
            return ledger_error(exc)

    @app.post("/v1/images")
    async def images(request: Request):
        try:                                  # key and rate first: nothing of the body is read before
            name = await run_in_threadpool(key_of, request, True)
            request_id = request.headers.get("idempotency-key") or f"auto-{uuid.uuid4().hex}"
            if not REQUEST_ID.match(request_id):
                raise BadRequest(422, "bad_request_id", "Idempotency-Key must be 1-128 of A-Z a-z 0-9 . _ : -")
            fmt = request.query_params.get("format", "npy")
            if fmt not in ("npy", "png"):
                raise BadRequest(422, "bad_format", "format must be npy or png")
            raw = await read_body(request)
            kind, n, payload = parse_body(raw, target, max_batch)
            charge = await run_in_threadpool(ledger.charge, name, request_id, kind, n, body_digest(raw), digest)
        except BadRequest as exc:
            return error(exc.status, exc.code, str(exc))
        except LedgerError as exc:
            return ledger_error(exc)
        try:
            out = await run_in_threadpool(target.images, name, kind, charge.start, n, payload)
        except Exception as exc:                  # charged before generating: give it back
            if not charge.replayed:
                try:
                    await run_in_threadpool(ledger.refund, name, request_id, n, kind)
                except LedgerError:
                    pass                          # still charged, not served: a retry of the id delivers it
            return internal(exc, "generation_failed", "generation failed and was not charged")
        try:
            if not charge.replayed or charge.pending:     # a replay after a crash mid-generation is the delivery
                await run_in_threadpool(ledger.served, name, request_id, n, kind)
        except LedgerError as exc:                # charged, not yet delivered: a retry of the id delivers it
            return ledger_error(exc)
        headers = {"X-Budget-Remaining": str(charge.remaining), "X-Request-Id": request_id,
                   "X-Replayed": "1" if charge.replayed else "0", "X-Model-Id": target.oracle.model_id}
        if fmt == "png":
            return Response(_png(out), media_type="image/png", headers=headers)
        return Response(_npy(out), media_type="application/x-npy", headers=headers)

    return app


def _npy(images: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, images.numpy(), allow_pickle=False)
    return buf.getvalue()


def _png(images: torch.Tensor) -> bytes:
    grid = make_grid(images, nrow=max(1, math.ceil(math.sqrt(images.shape[0]))))
    buf = io.BytesIO()
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(buf, format="PNG")
    return buf.getvalue()
