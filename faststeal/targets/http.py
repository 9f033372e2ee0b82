"""The thief's side of the process boundary: the oracle interface over HTTP (httpx).

``HttpOracle`` answers the same calls as the in-process ``TargetOracle`` (``query(n)``, ``query(z)``,
``served``, ``remaining``, ``account``, the target's shape and model id), so query sets, extract and sweep
run unchanged against a ``faststeal serve`` URL, and nothing on this side ever loads the target's weights.
Requests carry an ``Idempotency-Key``: a query retried after a dropped connection, a server restart or a
killed client is answered from the server's record of it, with no second charge. Prior draws come from the
server's stream for this key (``offset`` is the server's business and is ignored here).
"""
from __future__ import annotations

import io
import time
import uuid

import numpy as np
import torch

from faststeal.errors import FaststealError

from .oracle import BudgetExceeded, LatentPrior, LatentsRefused, checked_codes

URL_SCHEMES = ("http://", "https://")


def is_url(spec) -> bool:
    return str(spec).startswith(URL_SCHEMES)


class RemoteError(FaststealError, ValueError):
    """The server refused a request (a 4xx with its JSON message) or stayed unreachable."""


class HttpOracle:
    """Query access to a target served by ``faststeal serve``."""

    def __init__(self, url: str, api_key: str, seed: int = 0, *, timeout: float = 120.0, retry_for: float = 60.0):
        import httpx  # the [serve] extra: only a thief that talks to a server needs it

        if not is_url(url):
            raise RemoteError(f"--target must be an http:// or https:// URL here, got {url!r}")
        if not api_key:
            raise RemoteError("an HTTP target needs --api-key (from `faststeal keys add` on the server)")
        self.url = str(url).rstrip("/")
        self.seed = int(seed)              # the adversary's own seed (chosen codes, query-set identity)
        self.retry_for = float(retry_for)
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})
        info = self._send("GET", "/v1/info", patience=min(self.retry_for, 10.0)).json()   # a wrong URL fails fast
        self.model_id = info["model_id"]
        self.resolution, self.channels = int(info["resolution"]), int(info["channels"])
        self.prior = LatentPrior.parse(info["prior"])
        self.accepts_latents = bool(info["accepts_latents"])
        self.latent_dim = info.get("latent_dim")
        self.max_batch = int(info["max_batch"])
        self.defense = info.get("defense")    # the server's --defense spec ("none"); None from older servers
        self.usage()                       # a wrong or revoked key fails here, before any work

    def config(self) -> dict:
        """What the attack needs to know of the target's shape (as in a checkpoint's config)."""
        return {"resolution": self.resolution, "channels": self.channels, "latent_dim": self.latent_dim,
                "data_source": None}

    def usage(self) -> dict:
        return self._get("/v1/usage")

    @property
    def budget(self) -> int:
        return int(self.usage()["budget"])

    @property
    def served(self) -> int:
        return int(self.usage()["used"])

    @property
    def remaining(self) -> int:
        return int(self.usage()["remaining"])

    def account(self, count: int) -> None:
        """Nothing to do: the server's ledger already counts every image it served to this key."""
        if int(count) < 0:
            raise ValueError(f"count must be >= 0, got {count}")

    def __getstate__(self):
        raise TypeError("HttpOracle holds an open connection and an API key; make a new one in each process")

    def query(self, n_or_z, *, offset: int | None = None, request_id: str | None = None) -> torch.Tensor:
        """Images for n prior draws or for codes z, in requests of at most max_batch images.

        With ``request_id`` the parts are ``ID.0``, ``ID.1``...: retrying the same call costs nothing more.
        """
        if isinstance(n_or_z, torch.Tensor):
            z = checked_codes(n_or_z, self.latent_dim, self.accepts_latents)
            n = z.shape[0]
            bodies = [{"z": part.tolist()} for part in z.split(self.max_batch)]
        else:
            n = int(n_or_z)
            if n < 0:
                raise ValueError(f"n must be >= 0, got {n}")
            bodies = [{"n": min(self.max_batch, n - i)} for i in range(0, n, self.max_batch)]
        if n == 0:
            return torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        base = request_id or f"auto-{uuid.uuid4().hex}"
        return torch.cat([self._images(body, base if len(bodies) == 1 else f"{base}.{i}")
                          for i, body in enumerate(bodies)])

    def _images(self, body: dict, request_id: str) -> torch.Tensor:
        r = self._send("POST", "/v1/images", json=body, headers={"Idempotency-Key": request_id})
        images = np.load(io.BytesIO(r.content), allow_pickle=False)
        want = (len(body["z"]) if "z" in body else body["n"], self.channels, self.resolution, self.resolution)
        if images.dtype != np.uint8 or images.shape != want:
            raise RemoteError(f"server sent {images.dtype} {images.shape}, expected uint8 {want}")
        return torch.from_numpy(images)

    def _get(self, path: str) -> dict:
        return self._send("GET", path).json()

    def _send(self, method: str, path: str, patience: float | None = None, **kwargs):
        """One request, retried while the server is unreachable, restarting or rate-limiting (same id)."""
        import httpx  # the [serve] extra

        patience = self.retry_for if patience is None else patience
        deadline, wait = time.monotonic() + patience, 0.2
        while True:
            try:
                r = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise RemoteError(f"{self.url}: unreachable for {patience:.0f} s ({exc}); is "
                                      f"`faststeal serve` running?") from None
                time.sleep(wait)
                wait = min(wait * 2, 2.0)
                continue
            if r.status_code == 429 and time.monotonic() < deadline:
                time.sleep(float(r.headers.get("retry-after", "1")))
                continue
            if r.status_code >= 500 and time.monotonic() < deadline and _code(r) != "generation_failed":
                time.sleep(wait)
                continue
            if r.status_code < 400:
                return r
            code, message = _code(r), _message(r)
            if code == "budget_exceeded":
                raise BudgetExceeded(message)
            if code == "latents_refused":
                raise LatentsRefused(message)
            raise RemoteError(f"{self.url}{path}: {r.status_code} {message}")


def _code(r) -> str:
    try:
        return r.json()["error"]["code"]
    except Exception:
        return ""


def _message(r) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:200]
