"""CPU thread policy: how many threads torch uses, and a warning when the cores are already taken.

Two torch processes that each run one thread per core on the same cores fight: OpenMP threads wait for
descheduled siblings at every parallel region. Measured on the 2-core CPU (README, "Sharing the CPU"): two
trainings with 2 threads each ran at 4-40 img/s where one alone ran at 113-141 img/s, while the passive
OpenMP wait policy did not prevent it and cost 0-15% alone, so it is not set. What holds up is one thread
per job, which the warning below asks for.
"""
from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Runnable work on the machine over the last minute (load average; lags by up to a minute)."""
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
