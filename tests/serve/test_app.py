"""A real server on a loopback port: what it serves, what it refuses, and that it keeps serving."""
import io
import threading

import httpx
import numpy as np
import pytest
import torch

from faststeal.defense import parse_pipeline
from faststeal.serve.app import seed_codes
from faststeal.targets.http import HttpOracle, RemoteError
from faststeal.targets.oracle import BudgetExceeded, TargetOracle

from .conftest import DEFENSE, add_key


def _in_process(target, budget=10_000):
    return TargetOracle(target, budget=budget, seed=0, **parse_pipeline(DEFENSE, seed=0).oracle_hooks())


def _post(server, token, body=None, *, content=None, headers=None, params=None):
    h = {"Authorization": f"Bearer {token}", **(headers or {})}
    return httpx.post(f"{server.url}/v1/images", json=body, content=content, headers=h, params=params, timeout=30)


def _npy(r) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(r.content), allow_pickle=False))


def test_served_images_equal_the_in_process_oracle_with_defenses(served, tiny_target):
    token = add_key(served.db, "equal", 1000)
    local = _in_process(tiny_target)
    first = _post(served, token, {"n": 20})
    assert first.status_code == 200 and first.headers["X-Budget-Remaining"] == "980"
    assert torch.equal(_npy(first), local.query(20, offset=0))
    second = _post(served, token, {"n": 7})                    # the key's prior stream goes on
    assert torch.equal(_npy(second), local.query(7, offset=20))
    z = torch.randn(5, 8)
    assert torch.equal(_npy(_post(served, token, {"z": z.tolist()})), local.query(z))
    seeds = [3, 1, 2 ** 40]
    assert torch.equal(_npy(_post(served, token, {"seeds": seeds})), local.query(seed_codes(seeds, 8)))
    png = _post(served, token, {"n": 4}, params={"format": "png"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_retried_request_id_returns_the_same_images_without_a_second_charge(served):
    token = add_key(served.db, "retry", 100)
    a = _post(served, token, {"n": 9}, headers={"Idempotency-Key": "chunk-0"})
    b = _post(served, token, {"n": 9}, headers={"Idempotency-Key": "chunk-0"})
    assert a.headers["X-Replayed"] == "0" and b.headers["X-Replayed"] == "1"
    assert a.content == b.content
    other = _post(served, token, {"n": 3}, headers={"Idempotency-Key": "chunk-0"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "request_id_reused"
    assert HttpOracle(served.url, token).served == 9


BAD = [  # (what, request kwargs, status, error code)
    ("malformed JSON", {"content": b'{"n": 3'}, 400, "malformed_json"),
    ("not an object", {"body": [1, 2]}, 422, "bad_body"),
    ("two kinds", {"body": {"n": 1, "seeds": [1]}}, 422, "bad_body"),
    ("unknown field", {"body": {"n": 1, "x": 2}}, 422, "unknown_field"),
    ("n = 0", {"body": {"n": 0}}, 422, "bad_n"),
    ("n < 0", {"body": {"n": -5}}, 422, "bad_n"),
    ("n above max batch", {"body": {"n": 257}}, 422, "bad_n"),
    ("n not an integer", {"body": {"n": 2.5}}, 422, "bad_n"),
    ("n a boolean", {"body": {"n": True}}, 422, "bad_n"),
    ("wrong z shape", {"body": {"z": [[0.0] * 7]}}, 422, "bad_z_shape"),
    ("ragged z", {"body": {"z": [[0.0] * 8, [0.0] * 9]}}, 422, "bad_z_shape"),
    ("z not numbers", {"body": {"z": [["a"] * 8]}}, 422, "bad_z"),
    ("z empty", {"body": {"z": []}}, 422, "bad_z"),
    ("NaN in z", {"content": b'{"z": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}'}, 422, "not_finite"),
    ("inf in z", {"content": b'{"z": [[1e999, 0, 0, 0, 0, 0, 0, 0]]}'}, 422, "not_finite"),
    ("-Infinity in z", {"content": b'{"z": [[-Infinity, 0, 0, 0, 0, 0, 0, 0]]}'}, 422, "not_finite"),
    ("bad seeds", {"body": {"seeds": [-1]}}, 422, "bad_seeds"),
    ("too large a body", {"content": b'{"z": [' + b"0," * 40000 + b"0]}"}, 413, "body_too_large"),
    ("bad request id", {"body": {"n": 1}, "headers": {"Idempotency-Key": "a b/c"}}, 422, "bad_request_id"),
    ("bad format", {"body": {"n": 1}, "params": {"format": "gif"}}, 422, "bad_format"),
]


@pytest.mark.parametrize("what,kwargs,status,code", BAD, ids=[b[0] for b in BAD])
def test_every_bad_request_gets_its_4xx_and_the_next_good_one_succeeds(served, what, kwargs, status, code):
    token = add_key(served.db, f"bad-{BAD.index(next(b for b in BAD if b[0] == what))}", 50)
    r = _post(served, token, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    ok = _post(served, token, {"n": 2})
    assert ok.status_code == 200 and _npy(ok).shape == (2, 1, 8, 8)
    assert HttpOracle(served.url, token).served == 2                 # the bad request cost nothing


def test_keys_unknown_revoked_over_budget_and_rate_limited(served):
    from faststeal.serve.ledger import Ledger

    token = add_key(served.db, "short", 5)
    assert _post(served, "nobody.secret", {"n": 1}).status_code == 401
    assert httpx.post(f"{served.url}/v1/images", json={"n": 1}).status_code == 401       # no header at all
    refused = _post(served, token, {"n": 6})
    assert refused.status_code == 402 and "5 of the budget of 5 left" in refused.json()["error"]["message"]
    assert _post(served, token, {"n": 5}).status_code == 200
    with pytest.raises(BudgetExceeded):
        HttpOracle(served.url, token).query(1)
    ledger = Ledger(served.db)
    ledger.revoke("short")
    r = _post(served, token, {"n": 1})
    assert r.status_code == 403 and r.json()["error"]["code"] == "revoked_key"
    with pytest.raises(RemoteError, match="revoked"):
        HttpOracle(served.url, token)
    slow = add_key(served.db, "slow", 100, rate=0.5)
    assert _post(served, slow, {"n": 1}).status_code == 200
    limited = _post(served, slow, {"n": 1})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    ledger.dispose()


def test_one_key_cannot_read_another_keys_usage(served):
    a, b = add_key(served.db, "usage-a", 10), add_key(served.db, "usage-b", 20)
    _post(served, a, {"n": 3})
    own = httpx.get(f"{served.url}/v1/usage", headers={"Authorization": f"Bearer {a}"}).json()
    assert (own["key"], own["used"], own["budget"]) == ("usage-a", 3, 10)
    assert httpx.get(f"{served.url}/v1/usage/usage-a", headers={"Authorization": f"Bearer {a}"}).status_code == 200
    other = httpx.get(f"{served.url}/v1/usage/usage-b", headers={"Authorization": f"Bearer {a}"})
    assert other.status_code == 403 and "budget" not in other.text and "20" not in other.text
    theirs = httpx.get(f"{served.url}/v1/usage", headers={"Authorization": f"Bearer {b}"}).json()
    assert (theirs["key"], theirs["used"]) == ("usage-b", 0)          # a's images were charged to a only
    assert httpx.get(f"{served.url}/v1/usage").status_code == 401


def test_info_tells_the_shape_and_latent_size_only_when_codes_are_taken(served, tiny_target, tmp_path):
    token = add_key(served.db, "info", 0)                   # /v1/info answers a key only
    info = httpx.get(f"{served.url}/v1/info", headers={"Authorization": f"Bearer {token}"}).json()
    assert (info["resolution"], info["channels"], info["latent_dim"], info["max_batch"]) == (8, 1, 8, 256)
    assert info["model_id"] == TargetOracle(tiny_target, budget=0).model_id
    assert info["defense"] == parse_pipeline(DEFENSE).spec()    # published (--publish-defense): the owner's
    assert httpx.get(f"{served.url}/v1/info").status_code == 401  # report can name it; no key, no answer


def test_32_concurrent_clients_on_one_key_get_exactly_the_budget_across_two_workers(served):
    token = add_key(served.db, "crowd", 1000)
    received, refused, errors = [], [], []

    def client():
        oracle = HttpOracle(served.url, token)
        while True:
            try:
                received.append(oracle.query(5).shape[0])
            except BudgetExceeded:
                refused.append(1)
                return
            except Exception as exc:            # anything else fails the test below
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=client) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sum(received) == 1000 and len(refused) == 32
    usage = HttpOracle(served.url, token).usage()
    assert usage["used"] == 1000 and usage["remaining"] == 0 and usage["requests"] == 200
