"""torch.distributed in one place: who this process is, how many there are, and the few collectives we use.

Launched by ``torchrun`` (WORLD_SIZE, RANK, LOCAL_RANK in the environment) ``setup()`` joins the process
group: NCCL when CUDA is available, gloo otherwise; the code path is the same. Without torchrun every function
here behaves as for a world of one process, so library code calls them unconditionally.

Conventions the rest of the package follows:
- every rank runs the same code and makes the same collective calls in the same order;
- work is split by ``shard_range`` (contiguous query positions) or by batch index (FID batches);
- decisions and file writes happen on rank 0 inside ``on_main``, which hands every rank the result;
  only rank 0 prints;
- a multi-node run needs its run folder on a file system every node sees.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """True when the environment says this process is one of several (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def gpu_per_rank() -> bool:
    """Whether every local rank gets a GPU of its own (NCCL refuses two ranks on one GPU).

    With more local ranks than GPUs (e.g. the two-rank tests on a one-GPU machine) every rank runs on the CPU
    over gloo instead, so all ranks compute alike."""
    if not torch.cuda.is_available():
        return False
    local = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or "1"   # one node: the world
    return int(local) <= torch.cuda.device_count()


def backend() -> str:
    return "nccl" if gpu_per_rank() else "gloo"


def setup() -> bool:
    """Join the process group torchrun describes (idempotent); returns whether this run is distributed."""
    if active():
        return True
    if not launched() or not dist.is_available():
        return False
    if gpu_per_rank():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend())
    return True


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device() -> torch.device:
    """This rank's compute device: its own GPU under torchrun, the first GPU alone, else the CPU."""
    if not torch.cuda.is_available() or (active() and not gpu_per_rank()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if active() else 0)


def comm_device() -> torch.device:
    """Where tensors must live for a collective: CUDA for NCCL, the CPU for gloo."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (on the communication device) and return it."""
    if active():
        buf = t.to(comm_device())
        dist.all_reduce(buf)
        if buf is not t:
            t.copy_(buf)
    return t


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks that gradients flow through: each rank's input affects every rank's output, so its
    gradient is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, t):
        return all_sum(t.clone())

    @staticmethod
    def backward(ctx, grad):
        return all_sum(grad.clone())


def differentiable_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks, differentiable (used for batch-norm statistics of the global batch)."""
    return _AllReduceSum.apply(t) if active() else t


def all_mean_(tensors) -> None:
    """Average a list of same-dtype tensors over ranks in place, in one flattened all-reduce."""
    tensors = list(tensors)
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors]).to(comm_device())
    dist.all_reduce(flat)
    flat /= world()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(obj) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0 (None elsewhere): for data only rank 0 writes out."""
    if not active():
        return [obj]
    out = [None] * world() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def on_main(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 only and give every rank its result, or raise its exception on every rank.

    The one way a decision or a file write happens under torchrun: does this file exist, is this result
    cached, write this checkpoint. Every rank must call it at the same point; it returns on all ranks only
    after rank 0 has finished, so a file written inside is complete before any rank reads it. In one
    process it is a plain call.
    """
    if not active():
        return fn(*args, **kwargs)
    box = [None]
    if is_main():
        try:
            box = [("ok", fn(*args, **kwargs))]
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank, rank 0 included
            box = [("error", exc)]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """The module gradients flow through during training: DDP-wrapped under torchrun, else itself.

    find_unused_parameters: a growing PGGAN leaves the other levels' layers unused. Buffers are not
    broadcast: spectral-norm vectors and synced batch-norm statistics evolve identically on every rank.
    """
    if world() == 1:
        return module
    on = device()
    return DistributedDataParallel(module, device_ids=[on.index] if on.type == "cuda" else None,
                                   find_unused_parameters=True, forward_sync_buffers=False)


def shard_range(n: int, rank_: int | None = None, world_: int | None = None) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of n items; shares differ by at most one and cover n exactly."""
    r = rank() if rank_ is None else rank_
    w = world() if world_ is None else world_
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def owns_batch(index: int, rank_: int | None = None, world_: int | None = None) -> bool:
    """Round-robin ownership of batch ``index``: batch boundaries, hence every batch's numbers, stay as in
    a single process, so the per-rank results merge into exactly the single-process sums."""
    r = rank() if rank_ is None else rank_
    w = world() if world_ is None else world_
    return index % w == r


def rank_positions(batch: int, rank: int, world: int, group: int) -> torch.Tensor:
    """Which positions of the global batch a rank trains on.

    PGGAN's minibatch-stddev layer puts sample i in group i % (batch / group). Viewing the batch as
    (group, batch / group) and giving each rank a block of columns keeps every group whole on one rank,
    in the same order, so D computes on each slice what it computes on the whole batch in one process.
    """
    if batch % world:
        raise ValueError(f"--batch {batch} must be divisible by the number of processes ({world})")
    columns = batch // group if batch % group == 0 else batch
    rows = batch // columns
    per_rank = columns // world if columns % world == 0 else None
    if per_rank is None:
        start, stop = shard_range(batch, rank, world)
        return torch.arange(start, stop)
    grid = torch.arange(batch).view(rows, columns)
    return grid[:, rank * per_rank:(rank + 1) * per_rank].reshape(-1)
