"""FID/KID under torch.distributed: two gloo ranks must give the single-process numbers.

Each rank extracts only its round-robin batches (uneven here: batch 4 of 17 leaves a partial last batch),
so a wrong split, a lost batch or a misordered gather shows up as a difference from one process. The
ranks run once per module (spawning and loading Inception dominate the cost); the tests read the results.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from multiproc import free_port, run_ranks

from faststeal.metrics import compute_features, compute_stats, kernel_inception_distance

N, BATCH = 17, 4          # batches 4, 4, 4, 4, 1: rank 0 gets three of them, rank 1 two
KID_N, KID_BATCH = 9, 4


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.contiguous().numpy().tobytes()).hexdigest()


def _moments(s, full: bool):
    """Full mu/sigma from rank 0 only (32 MB each); every rank reports digests to show they agree."""
    out = {"n": s.n, "mu_sha": _digest(s.mu), "sigma_sha": _digest(s.sigma)}
    if full:
        out.update(mu=s.mu, sigma=s.sigma)
    return out


def _on_ranks(array, target, cache):
    """What each rank computes; rank 0 also returns the full moments and features."""
    from faststeal import distributed, fileio
    from faststeal.metrics import api

    os.environ["FASTSTEAL_CACHE"] = cache
    writes, write_now = [], fileio._write_now

    def counting(path, write):
        writes.append(str(path))
        return write_now(path, write)

    fileio._write_now = counting
    main = distributed.is_main()
    out = {"array": _moments(compute_stats(array, batch=BATCH, loader="torch"), main),
           "generator": _moments(compute_stats(target, n=N, batch=BATCH, loader="torch"), main),
           "feats": [compute_features(s, n=KID_N, batch=KID_BATCH, loader="torch") for s in (array, target)]}

    def no_network(*args, **kwargs):
        raise AssertionError("cache miss: the network was asked for")

    api.get_extractor = no_network                  # a hit returns before the extractor is needed
    out["again"] = _moments(compute_stats(array, batch=BATCH, loader="torch"), main)
    out["writes"] = writes
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_target):
    folder = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    np.save(folder / "a.npy", rng.integers(0, 256, (N, 1, 16, 16), dtype=np.uint8))
    return str(folder / "a.npy"), str(tiny_target)


@pytest.fixture(scope="module")
def one_process(sources):
    """Single-process reference, run with one thread as each rank is."""
    array, target = sources
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"array": compute_stats(array, batch=BATCH, loader="torch", cache=False),
                "generator": compute_stats(target, n=N, batch=BATCH, loader="torch", cache=False),
                "feats": [compute_features(s, n=KID_N, batch=KID_BATCH, loader="torch") for s in sources]}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_ranks(sources, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ranks")
    cache = tmp / "cache"
    return cache, run_ranks(_on_ranks, *sources, str(cache), tmp_path=tmp)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("kind", ["array", "generator"])
def test_stats_on_two_ranks_match_one_process(kind, one_process, two_ranks):
    _, (r0, r1) = two_ranks
    ref, got = one_process[kind], r0[kind]
    assert got["n"] == r1[kind]["n"] == ref.n == N
    assert (got["mu_sha"], got["sigma_sha"]) == (r1[kind]["mu_sha"], r1[kind]["sigma_sha"])  # ranks agree
    assert _rel(got["mu"], ref.mu) < 1e-10 and _rel(got["sigma"], ref.sigma) < 1e-10


def test_cache_written_once_then_hit_on_every_rank(two_ranks):
    cache, (r0, r1) = two_ranks
    files = sorted(os.listdir(cache / "fid"))
    assert len(files) == 1 and files[0].endswith(".npz")           # no temp file left behind
    assert r0["writes"] == [str(cache / "fid" / files[0])] and r1["writes"] == []
    # the hit asked for no network on either rank, and both read the same file (the round trip through
    # mu and sigma moves float64 rounding only)
    assert (r0["again"]["mu_sha"], r0["again"]["sigma_sha"]) == (r1["again"]["mu_sha"], r1["again"]["sigma_sha"])
    assert r0["again"]["n"] == N and _rel(r0["again"]["sigma"], r0["array"]["sigma"]) < 1e-12


def test_kid_features_gathered_in_order(one_process, two_ranks):
    _, (r0, r1) = two_ranks
    for ref, got, other in zip(one_process["feats"], r0["feats"], r1["feats"]):
        assert got.shape == ref.shape == (KID_N, 2048) and torch.equal(got, other)
        assert torch.equal(got, ref)                      # same batches, same thread count: same bits
    assert kernel_inception_distance(*r0["feats"]) == kernel_inception_distance(*one_process["feats"])


def test_sources_split_batches_round_robin(monkeypatch, tmp_path, tiny_target):
    """Without Inception: over 3 ranks, each source's batches interleave back into the one-process ones."""
    from faststeal import distributed
    from faststeal.metrics.sources import FolderSource, GeneratorSource, TensorSource, owned_count

    images = torch.arange(10 * 4, dtype=torch.uint8).reshape(10, 1, 2, 2)
    files = [tmp_path / f"{i}.png" for i in range(10)]   # only listed (fingerprint), never decoded here
    for f in files:
        f.write_bytes(b"")
    folder = FolderSource(str(tmp_path), files)
    tensor, gen = TensorSource("t", "array", None, images), GeneratorSource(str(tiny_target))

    def split(make):
        out = []
        for r in range(3):
            with monkeypatch.context() as m:
                m.setattr(distributed, "rank", lambda r=r: r)
                m.setattr(distributed, "world", lambda: 3)
                out.append(make())
        return out

    def batches():
        return [list(tensor.uint8_batches(10, 3, "cpu")), folder._chunks(10, 3),
                list(gen.uint8_batches(10, 3, "cpu")), owned_count(10, 3)]

    whole, parts = batches(), split(batches)
    assert [p[3] for p in parts] == [4, 3, 3]                      # batches 0 and 3 (partial) on rank 0
    for kind in range(3):
        merged = [parts[k % 3][kind][k // 3] for k in range(4)]
        assert len(merged) == len(whole[kind]) == 4 and whole[3] == 10
        for got, want in zip(merged, whole[kind]):
            assert (got == want) if isinstance(got, list) else torch.equal(got, want)


def test_cli_under_torchrun_prints_the_single_process_fid(tmp_path):
    rng = np.random.default_rng(1)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, rng.integers(0, 256, (16, 1, 28, 28), dtype=np.uint8))
    np.save(b, rng.integers(0, 128, (16, 1, 28, 28), dtype=np.uint8))
    # on the CPU in both runs: two ranks on a one-GPU machine compute on the CPU, and GPU convolutions differ
    args = ["fid", str(a), str(b), "-n", "16", "--batch", "5", "--json", "--loader", "torch", "--device", "cpu"]

    def run(launcher, cache):
        env = dict(os.environ, OMP_NUM_THREADS="1", FASTSTEAL_CACHE=str(tmp_path / cache))
        cmd = [sys.executable, *launcher, "-m", "faststeal", *args]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        return [line for line in res.stdout.splitlines() if line.startswith("{")], res.stdout

    single, _ = run([], "cache1")          # separate caches: the second run must compute, not read
    # "-n", not "--n": torchrun's argparse takes "--n" for an ambiguous abbreviation of its own --nnodes,
    # --nproc_per_node, ... and stops (README, Scaling out)
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    multi, stdout = run(torchrun, "cache2")
    assert len(single) == 1 and len(multi) == 1 and stdout.count("FID ") == 1, stdout  # rank 1 is silent
    one, two = json.loads(single[0]), json.loads(multi[0])
    assert two["n1"] == two["n2"] == 16
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-9)
