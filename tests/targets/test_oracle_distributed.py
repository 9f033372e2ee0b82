"""Sharded querying on two gloo ranks: the global budget stays exact and the query set on disk is the one a
single process would have bought, with and without defenses, also across a resume."""
import numpy as np
import pytest
import torch
from multiproc import run_ranks

from faststeal import distributed
from faststeal.attack import queryset
from faststeal.defense import parse_pipeline
from faststeal.targets.oracle import BudgetExceeded, TargetOracle

BUDGET, CHUNK, SEED = 1003, 300, 5
DEFENSE = "truncate:psi=0.8+anchors:mix=0.5+noise:sigma=0.1"


def _oracle(target, budget=BUDGET, defense=None):
    hooks = parse_pipeline(defense, seed=SEED).oracle_hooks() if defense else {}
    return TargetOracle(target, budget=budget, seed=SEED, **hooks)


def _single_process(target, folder, defense=None):
    queryset.collect(_oracle(target, defense=defense), folder, BUDGET, chunk_size=CHUNK, target="t",
                     progress=False)
    return queryset.load(folder).images


def _refuses(call) -> bool:
    try:
        call()
    except BudgetExceeded:
        return True
    return False


def _collect_on_ranks(target, folder, defense):
    oracle = _oracle(target, defense=defense)
    meta = queryset.collect(oracle, folder, BUDGET, chunk_size=CHUNK, target="t", progress=False)
    out = {"served": oracle.served, "count": meta["count"], "spans": [(e["start"], e["n"]) for e in oracle.log],
           "refused_shard": _refuses(lambda: oracle.query_shard(1)), "refused_local": _refuses(lambda: oracle.query(1)),
           "images": queryset.load(folder).images}
    # Oracles that drifted apart (rank 1 asked on its own) must refuse to count a sharded request.
    drift = _oracle(target, budget=10)
    if distributed.rank() == 1:
        drift.query(1)
    try:
        drift.query_shard(2)
        out["drift"] = None
    except RuntimeError as exc:
        out["drift"] = str(exc)
    return out


def _check_exact(results, reference):
    covered = sorted(p for r in results for start, n in r["spans"] for p in range(start, start + n))
    assert covered == list(range(BUDGET))                      # every position served once, by one rank
    for r in results:
        assert r["served"] == r["count"] == BUDGET             # the global count, on every rank
        assert r["refused_shard"] and r["refused_local"]
        assert "disagree" in r["drift"]
        assert torch.equal(r["images"], reference)             # rank 1 read rank 0's files after the write


@pytest.mark.parametrize("defense", [None, DEFENSE], ids=["plain", "defended"])
def test_sharded_collect_spends_exactly_the_budget(tiny_target, tmp_path, defense):
    reference = _single_process(tiny_target, tmp_path / "ref", defense)
    results = run_ranks(_collect_on_ranks, tiny_target, str(tmp_path / "q"), defense, tmp_path=tmp_path)
    _check_exact(results, reference)
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())


def _interrupted_then_resumed(target, folder):
    first = _oracle(target)
    queryset.collect(first, folder, 600, chunk_size=CHUNK, target="t", progress=False)
    if distributed.is_main():       # a kill between writing a chunk and recording it leaves these behind
        np.save(f"{folder}/chunk-00002.npy", np.zeros((CHUNK, 1, 8, 8), np.uint8))
        open(f"{folder}/chunk-00003.npy.x.tmp", "wb").write(b"half")
    distributed.barrier()
    resumed = _oracle(target)
    meta = queryset.collect(resumed, folder, BUDGET, chunk_size=250, target="t", progress=False)
    return {"served": resumed.served, "count": meta["count"], "spans": [(e["start"], e["n"]) for e in resumed.log],
            "first_spans": [(e["start"], e["n"]) for e in first.log], "images": queryset.load(folder).images}


def test_interrupted_collection_resumes_on_two_ranks(tiny_target, tmp_path):
    reference = _single_process(tiny_target, tmp_path / "ref")
    results = run_ranks(_interrupted_then_resumed, tiny_target, str(tmp_path / "q"), tmp_path=tmp_path)
    covered = sorted(p for r in results for key in ("first_spans", "spans") for start, n in r[key]
                     for p in range(start, start + n))
    assert covered == list(range(BUDGET))
    for r in results:
        assert r["served"] == r["count"] == BUDGET
        assert torch.equal(r["images"], reference)


def test_query_shard_in_one_process_is_query(tiny_target):
    a, b = _oracle(tiny_target, budget=20), _oracle(tiny_target, budget=20)
    assert torch.equal(a.query_shard(7), b.query(7)) and a.served == b.served == 7
    with pytest.raises(BudgetExceeded):
        a.query_shard(14)
    assert a.served == 7
