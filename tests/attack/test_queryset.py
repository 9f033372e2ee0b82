import json

import numpy as np
import pytest
import torch

from faststeal.attack import queryset
from faststeal.data import DataError
from faststeal.targets.oracle import TargetOracle


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
    from faststeal.targets.oracle import BudgetExceeded
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


def test_chosen_codes_are_stored_and_a_killed_collection_resumes_with_them(tiny_target, tmp_path):
    ref = TargetOracle(tiny_target, budget=300, seed=4)
    queryset.collect(ref, tmp_path / "ref", 300, chunk_size=100, target="t", progress=False, knowledge="latents")
    reference = queryset.load(tmp_path / "ref")
    assert reference.codes.shape == (300, 8) and reference.codes.dtype == torch.float32
    # the stored images are what the target makes of the stored codes
    again = TargetOracle(tiny_target, budget=300, seed=4).query(reference.codes[:50])
    assert torch.equal(again, reference.images[:50])

    first = TargetOracle(tiny_target, budget=300, seed=4)
    queryset.collect(first, tmp_path / "q", 200, chunk_size=100, target="t", progress=False, knowledge="latents")
    # killed after writing the next chunk's codes (and images) but before recording them in meta.json
    np.save(tmp_path / "q" / "codes-00002.npy", np.zeros((100, 8), np.float32))
    np.save(tmp_path / "q" / "chunk-00002.npy", np.zeros((100, 1, 8, 8), np.uint8))
    resumed = TargetOracle(tiny_target, budget=300, seed=4)
    meta = queryset.collect(resumed, tmp_path / "q", 300, chunk_size=100, target="t", progress=False,
                            knowledge="latents")
    got = queryset.load(tmp_path / "q")
    assert meta["count"] == 300 and resumed.served == 300
    assert torch.equal(got.images, reference.images) and torch.equal(got.codes, reference.codes)


def test_latent_queries_refused_by_a_target_that_takes_counts_only(tiny_target, tmp_path):
    oracle = TargetOracle(tiny_target, budget=10, accept_latents=False)
    with pytest.raises(DataError, match="does not accept latent codes") as info:
        queryset.collect(oracle, tmp_path / "q", 10, target="t", progress=False, knowledge="latents")
    assert "\n" not in str(info.value) and oracle.served == 0


def test_a_query_set_is_keyed_on_the_target_content_not_its_path(tiny_target, tmp_path):
    import shutil

    from faststeal.checkpoint import load_checkpoint, save_checkpoint
    from faststeal.models import build_generator

    path = tmp_path / "t.pt"
    shutil.copy(tiny_target, path)
    queryset.collect(TargetOracle(path, budget=10), tmp_path / "q", 10, target=str(path), progress=False)
    state = load_checkpoint(path)
    torch.manual_seed(99)
    state["G_ema"] = build_generator("pggan", 8, 1, 8, 8).state_dict()     # another model, same path
    save_checkpoint(state, path)
    with pytest.raises(DataError, match="target_sha256"):
        queryset.collect(TargetOracle(path, budget=20), tmp_path / "q", 20, target=str(path), progress=False)
