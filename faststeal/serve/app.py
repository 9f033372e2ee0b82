"""The HTTP service: a target generator behind API keys, a budget ledger and the owner's defenses.

Endpoints (JSON errors ``{"error": {"code", "message"}}`` with a 4xx status for every bad request):

* ``POST /v1/images``: body ``{"n": N}`` (codes from the owner's prior), or with --accept-latents
  ``{"z": [[...], ...]}`` or ``{"seeds": [...]}``; header ``Idempotency-Key`` (the request id) makes a retry
  return the same images without a second charge. Answers uint8 (N, C, R, R) as ``.npy`` bytes, or a PNG grid
  with ``?format=png``; headers ``X-Budget-Remaining``, ``X-Request-Id``, ``X-Replayed``.
* ``GET /v1/info``: model id, resolution, channels, prior, max batch, the served defense spec (so an owner's
  ``faststeal defend --target URL`` can name it; the owner's seed stays secret), latent size only when codes
  are taken.
* ``GET /v1/usage``: the calling key's budget and use; ``GET /v1/usage/NAME`` only for the caller's own NAME.

Images come from the same code path as the in-process ``TargetOracle`` (its generator closure, prior stream
and defense hooks), so the server and the oracle serve the same bytes for the same codes and settings.
Each worker process builds its own app from the JSON settings in ``FASTSTEAL_SERVE`` (see ``serve.run``).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import uuid

import numpy as np
import torch
from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations by name

from .ledger import Ledger, LedgerError, body_digest

SETTINGS_ENV = "FASTSTEAL_SERVE"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def _reject_constant(name: str):
    raise BadRequest(422, "not_finite", f"z holds {name}; every code must be a finite number")


def seed_codes(seeds: list[int], dim: int) -> torch.Tensor:
    """One N(0, I) code per integer seed: the same seed always names the same code."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


class ServedModel:
    """What a worker serves: a TargetOracle used only for its generation path (the budget is the ledger's)."""

    def __init__(self, settings: dict):
        from faststeal.attack.oracle import TargetOracle
        from faststeal.defense import parse_pipeline
        from faststeal.targets import open_target

        pipeline = parse_pipeline(settings["defense"], seed=settings["seed"]) if settings.get("defense") else None
        hooks = pipeline.oracle_hooks() if pipeline is not None else {}
        loaded = open_target(settings["target"], hints=settings.get("hints")).loaded
        self.oracle = TargetOracle(loaded, budget=0, prior=settings.get("prior", "normal"),
                                   seed=settings["seed"], batch=settings.get("batch", 256),
                                   accept_latents=settings.get("accept_latents", False), **hooks)
        self.defense = pipeline.spec() if pipeline is not None else "none"
        self.lock = threading.Lock()       # one generation at a time per worker: torch threads are the parallelism

    def info(self, max_batch: int) -> dict:
        o = self.oracle
        out = {"model_id": o.model_id, "resolution": o.resolution, "channels": o.channels, "prior": str(o.prior),
               "accepts_latents": o.accepts_latents, "max_batch": max_batch, "defense": self.defense}
        if o.accepts_latents:
            out["latent_dim"] = o.latent_dim
        return out

    def images(self, kind: str, start: int, n: int, payload) -> torch.Tensor:
        o = self.oracle
        if kind == "prior":
            z = o._prior_codes(start, n)
        elif kind == "seeds":
            z = seed_codes(payload, o.latent_dim)
        else:
            z = payload
        with self.lock:
            return o._produce(z)


def parse_body(raw: bytes, target: ServedModel, max_batch: int) -> tuple[str, int, object]:
    """(kind, n, payload) from a request body, or BadRequest saying what is wrong."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "malformed_json", f"body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadRequest(422, "bad_body", 'body must be a JSON object such as {"n": 16}')
    given = [k for k in ("n", "z", "seeds") if k in body]
    extra = sorted(set(body) - {"n", "z", "seeds"})
    if extra:
        raise BadRequest(422, "unknown_field", f"unknown field {extra[0]!r}; send one of n, z, seeds")
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
            raise BadRequest(422, "bad_n", f"n must be an integer, got {value!r}")
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
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for r in value for x in r):
        raise BadRequest(422, "bad_z", "z must hold numbers only")
    z = np.asarray(value, dtype=np.float64)
    if not np.isfinite(z).all():
        raise BadRequest(422, "not_finite", "z holds NaN or inf; every code must be a finite number")
    return "chosen", len(value), torch.from_numpy(z.astype(np.float32))


def create_app(settings: dict | None = None):
    """The FastAPI app for one worker; settings default to the JSON in $FASTSTEAL_SERVE."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or json.loads(os.environ[SETTINGS_ENV])
    torch.set_num_threads(int(settings.get("threads", 1)))
    max_batch, max_body = int(settings["max_batch"]), int(settings["max_body"])
    ledger = Ledger(settings["db"])
    target = ServedModel(settings)
    app = FastAPI(title="faststeal serve", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, code: str, message: str, headers: dict | None = None):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc):
        return error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc):
        return error(422, "invalid_request", str(exc.errors())[:500])

    @app.exception_handler(Exception)
    async def _internal(_request, exc):
        return error(500, "internal", f"{type(exc).__name__}: {exc}")

    def key_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise LedgerError(401, "missing_key", "send 'Authorization: Bearer NAME.SECRET' with a key from "
                                                  "`faststeal keys add`")
        return ledger.authenticate(token.strip())

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
    async def info():
        return target.info(max_batch)

    @app.get("/v1/usage")
    async def usage(request: Request):
        try:
            return await run_in_threadpool(lambda: ledger.usage(key_of(request)))
        except LedgerError as exc:
            return error(exc.status, exc.code, str(exc), exc.headers)

    @app.get("/v1/usage/{name}")
    async def usage_of(name: str, request: Request):
        try:
            own = await run_in_threadpool(key_of, request)
        except LedgerError as exc:
            return error(exc.status, exc.code, str(exc), exc.headers)
        if name != own:
            return error(403, "forbidden", "a key may read only its own usage")
        return await run_in_threadpool(ledger.usage, own)

    @app.post("/v1/images")
    async def images(request: Request):
        try:
            name = await run_in_threadpool(key_of, request)
            request_id = request.headers.get("idempotency-key") or f"auto-{uuid.uuid4().hex}"
            if not REQUEST_ID.match(request_id):
                raise BadRequest(422, "bad_request_id", "Idempotency-Key must be 1-128 of A-Z a-z 0-9 . _ : -")
            fmt = request.query_params.get("format", "npy")
            if fmt not in ("npy", "png"):
                raise BadRequest(422, "bad_format", f"format must be npy or png, got {fmt!r}")
            raw = await read_body(request)
            kind, n, payload = parse_body(raw, target, max_batch)
            charge = await run_in_threadpool(ledger.charge, name, request_id, kind, n, body_digest(raw))
        except BadRequest as exc:
            return error(exc.status, exc.code, str(exc))
        except LedgerError as exc:
            return error(exc.status, exc.code, str(exc), exc.headers)
        try:
            out = await run_in_threadpool(target.images, kind, charge.start, n, payload)
        except Exception as exc:                  # charged before generating: give it back
            if not charge.replayed:
                await run_in_threadpool(ledger.refund, name, request_id, n, kind)
            return error(500, "generation_failed", f"generation failed and was not charged: "
                                                   f"{type(exc).__name__}: {exc}")
        if not charge.replayed or charge.pending:     # a replay after a crash mid-generation is the delivery
            await run_in_threadpool(ledger.served, name, request_id, n, kind)
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
    from PIL import Image

    from faststeal.grid import make_grid

    grid = make_grid(images, nrow=max(1, math.ceil(math.sqrt(images.shape[0]))))
    buf = io.BytesIO()
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(buf, format="PNG")
    return buf.getvalue()
