"""faststeal.distributed: sharding arithmetic, and the collectives on two real gloo processes."""
import pytest
import torch
from multiproc import run_ranks

from faststeal import distributed
from faststeal.distributed import rank_positions
from faststeal.fileio import write_text
from faststeal.models.layers import MinibatchStddev


def test_single_process_is_a_world_of_one():
    assert not distributed.active()
    assert (distributed.rank(), distributed.world(), distributed.is_main()) == (0, 1, True)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert distributed.on_main(lambda x: x + 1, 1) == 2


def test_shard_range_covers_exactly_once():
    for n in (0, 1, 7, 10, 1001):
        for w in (1, 2, 3, 8):
            parts = [distributed.shard_range(n, r, w) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1


def test_owns_batch_round_robin():
    owners = [[b for b in range(7) if distributed.owns_batch(b, r, 3)] for r in range(3)]
    assert owners == [[0, 3, 6], [1, 4], [2, 5]]


def _collectives(folder):
    r = distributed.rank()
    s = distributed.all_sum(torch.tensor([float(r + 1)], dtype=torch.float64))
    ts = [torch.full((3,), float(r)), torch.full((2, 2), float(10 * r))]
    distributed.all_mean_(ts)
    written = distributed.on_main(write_text, f"{folder}/shared.txt", f"written by rank {r}")
    return {"sum": s.item(), "means": [t.tolist() for t in ts], "decided": distributed.on_main(lambda: r),
            "objects": distributed.all_gather_objects(r * 2), "file": written.read_text()}


def test_collectives_on_two_gloo_ranks(tmp_path):
    a, b = run_ranks(_collectives, str(tmp_path), tmp_path=tmp_path)
    assert a == b                                   # every rank sees the same results
    assert a["sum"] == 3.0 and a["means"] == [[0.5] * 3, [[5.0, 5.0], [5.0, 5.0]]]
    assert a["decided"] == 0 and a["objects"] == [0, 2]
    assert a["file"] == "written by rank 0"         # rank 0 wrote; rank 1 read it once rank 0 had


def _on_main():
    mine = distributed.on_main(lambda: f"rank {distributed.rank()}")
    try:
        distributed.on_main(_fail_on_main)
    except ValueError as exc:
        return mine, str(exc)
    return mine, None


def _fail_on_main():
    raise ValueError(f"refused by rank {distributed.rank()}")


def test_on_main_gives_every_rank_rank0s_result_or_its_error(tmp_path):
    assert run_ranks(_on_main, tmp_path=tmp_path) == [("rank 0", "refused by rank 0")] * 2


def _gather_to_main():
    return distributed.gather_to_main(distributed.rank() * 10)


def test_gather_to_main_delivers_only_to_rank0(tmp_path):
    assert distributed.gather_to_main("x") == ["x"]
    assert run_ranks(_gather_to_main, tmp_path=tmp_path) == [[0, 10], None]


def test_more_local_ranks_than_gpus_fall_back_to_gloo_on_the_cpu(monkeypatch):
    # NCCL refuses two ranks on one GPU: two ranks on a one-GPU machine both compute on the CPU over gloo
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert not distributed.gpu_per_rank() and distributed.backend() == "gloo"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert distributed.gpu_per_rank() and distributed.backend() == "nccl"
    monkeypatch.delenv("LOCAL_WORLD_SIZE")                 # launched without torchrun: the world is one node
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.gpu_per_rank()


def test_rank_positions_keep_minibatch_stddev_groups_whole():
    x = torch.randn(16, 3, 4, 4)
    whole = MinibatchStddev(4)(x)
    parts = [rank_positions(16, r, 2, 4) for r in range(2)]
    assert sorted(torch.cat(parts).tolist()) == list(range(16))
    for p in parts:
        assert torch.equal(MinibatchStddev(4)(x[p]), whole[p])
    assert rank_positions(8, 1, 2, 1).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        rank_positions(9, 0, 2, 4)
