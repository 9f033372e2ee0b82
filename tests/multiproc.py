"""Run a function in several fresh processes joined by torch.distributed (gloo), as torchrun would.

Each child gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment and joins
through ``faststeal.distributed.setup()`` (the production path). ``fn(*args)`` must be a module-level
function; its return value comes back through a file, so anything torch.save can write works.
"""
from __future__ import annotations

import os
import socket
import traceback

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank, world, port, out_dir, fn, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from faststeal import distributed

    try:
        assert distributed.setup() and distributed.world() == world
        result = fn(*args)
        torch.save({"ok": result}, os.path.join(out_dir, f"rank{rank}.pt"))
    except BaseException:
        torch.save({"error": traceback.format_exc()}, os.path.join(out_dir, f"rank{rank}.pt"))
        raise
    finally:
        distributed.teardown()


def run_ranks(fn, *args, world: int = 2, tmp_path) -> list:
    """fn(*args) on ``world`` gloo ranks; returns the per-rank results in rank order."""
    out_dir = str(tmp_path / "ranks")
    os.makedirs(out_dir, exist_ok=True)
    try:
        mp.spawn(_child, args=(world, free_port(), out_dir, fn, args), nprocs=world, join=True)
    except Exception:
        pass  # the per-rank file holds the child's traceback; reported below
    results = []
    for r in range(world):
        path = os.path.join(out_dir, f"rank{r}.pt")
        if not os.path.exists(path):
            raise AssertionError(f"rank {r} died without a result")
        got = torch.load(path, weights_only=False)
        if "error" in got:
            raise AssertionError(f"rank {r} failed:\n{got['error']}")
        results.append(got["ok"])
    return results
