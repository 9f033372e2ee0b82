import json

import numpy as np
import pytest
import torch

from faststeal.attack import queryset
from faststeal.attack.oracle import TargetOracle
from faststeal.data import DataError


def test_collect_and_load(tiny_target, tmp_path):
    oracle = TargetOracle(tiny_target, budget=250, seed=2)
    meta = queryset.collect(oracle, tmp_path / "q", 250, chunk_size=100, target="t", progress=False)
    assert meta["count"] == 250 and len(meta["chunks"]) == 3
    data = queryset.load(tmp_path / "q")
    assert data.images.shape == (250, 1, 8, 8) and data.images.dtype == torch.uint8
    assert queryset.load(tmp_path / "q", limit=120).images.shape[0] == 120


def test_resume_after_interrupted_write_loses_and_duplicates_nothing(tiny_target, tmp_path):
    full = TargetOracle(tiny_target, budget=300, seed=3)
    queryset.collect(full, tmp_path / "ref", 300, chunk_size=100, target="t", progress=False)
    reference = queryset.load(tmp_path / "ref").images

    first = TargetOracle(tiny_target, budget=300, seed=3)
    queryset.collect(first, tmp_path / "q", 200, chunk_size=100, target="t", progress=False)
    # A kill after writing a chunk but before recording it in meta.json leaves a stray file,
    # and a half-written temp file.
    np.save(tmp_path / "q" / "chunk-00002.npy", np.zeros((100, 1, 8, 8), np.uint8))
    (tmp_path / "q" / "chunk-00003.npy.abc.tmp").write_bytes(b"half")
    resumed = TargetOracle(tiny_target, budget=300, seed=3)
    meta = queryset.collect(resumed, tmp_path / "q", 300, chunk_size=100, target="t", progress=False)
    assert meta["count"] == 300 and resumed.served == 300
    assert torch.equal(queryset.load(tmp_path / "q").images, reference)


def test_resume_counts_against_the_budget(tiny_target, tmp_path):
    queryset.collect(TargetOracle(tiny_target, budget=100, seed=0), tmp_path / "q", 100, target="t",
                     progress=False)
    from faststeal.attack.oracle import BudgetExceeded
    with pytest.raises(BudgetExceeded):
        queryset.collect(TargetOracle(tiny_target, budget=150, seed=0), tmp_path / "q", 200, target="t",
                         progress=False)


def test_refuses_a_folder_of_other_queries(tiny_target, tmp_path):
    queryset.collect(TargetOracle(tiny_target, budget=10, seed=0), tmp_path / "q", 10, target="t",
                     progress=False)
    with pytest.raises(DataError, match="seed=0"):
        queryset.collect(TargetOracle(tiny_target, budget=10, seed=1), tmp_path / "q", 10, target="t",
                         progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        queryset.load(tmp_path / "bad")
    assert json.loads((tmp_path / "q" / "meta.json").read_text())["count"] == 10
