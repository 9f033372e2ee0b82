"""CPU thread policy: how many threads torch uses, and how they wait.

OpenMP threads that finish early spin-wait for the others by default. With the CPU to itself that wins a
little; beside another job it is ruinous: the spinners steal the cores the other job's threads need (seen
here: training at ~100 img/s fell to ~5 img/s beside a second torch process, 88% of samples inside
libgomp). faststeal therefore asks for the passive wait policy before torch loads OpenMP (``import
faststeal`` does it first thing; a value the user set wins), uses as many threads as cores this process
may run on, and warns when the machine is already busy.
"""
from __future__ import annotations

import os

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def prefer_passive_waits() -> None:
    """Set the passive OpenMP wait policy unless the user chose one; effective only before torch loads."""
    for key, value in PASSIVE.items():
        os.environ.setdefault(key, value)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Runnable work on the machine over the last minute (load average), excluding nothing."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def configure(threads: int | None = None) -> tuple[int, str | None]:
    """Set torch's intra-op threads (default: the available cores, shared among torchrun's local processes);
    returns (threads, warning or None).

    The warning says when other work already occupies the cores, so that the user can pass --threads 1 to
    each of several jobs instead of letting them fight over the same cores.
    """
    import torch

    cores = available_cores()
    # torchrun starts LOCAL_WORLD_SIZE processes on this machine: they share the cores.
    chosen = threads or max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    torch.set_num_threads(chosen)
    other = busy_cores()
    warning = None
    if other >= cores - 0.5 and chosen > 1:
        warning = (f"the CPU is busy (load {other:.1f} on {cores} cores): this run will be slow and slow the "
                   f"others; give each parallel job --threads 1, or wait")
    return chosen, warning
