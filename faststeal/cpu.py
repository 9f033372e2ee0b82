"""CPU thread policy: how many threads torch uses, adapted to what other processes take from the cores.

Two torch processes that each run one thread per core on the same cores fight: OpenMP threads wait for
descheduled siblings at every parallel region, and two jobs with one thread each finish sooner than two
with all threads each; the passive OpenMP wait policy does not help (measurements: docs/results/speed.md,
"Sharing the CPU"), so it is not set.

So, unless the user pins ``--threads``, a ``ThreadGovernor`` watches the cores: every few seconds it measures
how much CPU other processes used (system-wide busy time minus this process's own) and sets torch's threads
to the cores left over (at least one). Two faststeal jobs started together each settle on one thread; when
one finishes the other takes both cores back. Pinned threads are never changed (a pinned thread count is
also what makes reruns bit-exact on one machine: float reductions split by thread count).
"""
from __future__ import annotations

import os
import time

import torch
from threadpoolctl import threadpool_limits

CHECK_SECONDS = 10.0      # how often the governor looks at the cores (a check costs microseconds)
_governor: "ThreadGovernor | None" = None


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


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)          # idle + iowait
    busy = sum(ticks[:8]) - idle                                   # user..steal, without guest (counted in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_busy_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (e.g. a test's subprocesses)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ThreadGovernor:
    """Sets torch's threads to the cores other processes leave free, measured over the last interval."""

    def __init__(self, cores: int, local_procs: int = 1, interval: float = CHECK_SECONDS):
        self.cores, self.local_procs, self.interval = cores, max(1, local_procs), interval
        self._mark = self._sample()
        self.changes: list[tuple[float, int]] = []     # (monotonic time, threads) whenever the count moved

    def _sample(self):
        return time.monotonic(), _system_busy_seconds(), _own_busy_seconds()

    def others(self) -> float | None:
        """Cores used by other processes since the last call (None where /proc/stat is unavailable)."""
        now = self._sample()
        (t0, sys0, own0), (t1, sys1, own1) = self._mark, now
        self._mark = now
        if sys0 is None or sys1 is None or t1 - t0 <= 0:
            return None
        return max(0.0, ((sys1 - sys0) - (own1 - own0)) / (t1 - t0))

    def fair_threads(self, others: float) -> int:
        """Cores left to this process (shared among torchrun's local processes), at least one."""
        free = self.cores - int(others + 0.4)          # a neighbour using >= 0.6 of a core holds that core
        return max(1, free // self.local_procs)

    def due(self) -> bool:
        """Whether an interval has passed since the last look."""
        return time.monotonic() - self._mark[0] >= self.interval

    def maybe_adjust(self) -> int | None:
        """Called often from long loops; acts once per interval. Returns the new thread count if it changed."""
        if not self.due():
            return None
        others = self.others()
        if others is None:
            return None
        want = self.fair_threads(others)
        if want != torch.get_num_threads():
            set_threads(want)
            self.changes.append((time.monotonic(), want))
            return want
        return None


def adapt() -> None:
    """Let the governor (if any) re-fit the thread count; cheap enough to call every training step."""
    if _governor is not None:
        _governor.maybe_adjust()


def configure(threads: int | None = None) -> tuple[int, str | None]:
    """Set torch's intra-op threads; returns (threads, warning or None).

    ``threads`` pins the count. Without it the count starts at the cores left free by other processes
    (measured over a short look) and a ThreadGovernor keeps adapting it while the command runs.
    """
    global _governor

    cores = available_cores()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))   # torchrun's processes on this machine
    warning = None
    if threads:
        _governor = None
        chosen = threads
        other = busy_cores()
        if other >= cores - 0.5 and chosen > 1:
            warning = (f"the CPU is busy (load {other:.1f} on {cores} cores) and --threads {chosen} is pinned: "
                       f"this run and the others will slow each other; leave --threads out to adapt")
    else:
        _governor = ThreadGovernor(cores, local)
        time.sleep(0.5)                                   # a first look at what the neighbours use
        others = _governor.others()
        chosen = _governor.fair_threads(others) if others is not None else max(1, cores // local)
        if others is not None and chosen < cores // local:
            warning = (f"other processes are using {others:.1f} of {cores} cores: starting with {chosen} "
                       f"thread(s) and adapting as they come and go (--threads N pins the count)")
    set_threads(chosen)
    return chosen, warning


def set_threads(n: int) -> None:
    """Give torch and the BLAS/LAPACK libraries numpy and scipy load (OpenBLAS, MKL) the same n threads.

    Those libraries keep their own pools sized to every core, so the FID's eigenvalue problems ignored the
    thread count: eight jobs pinned to 2 threads each on 16 cores ran scipy with 16 threads each and spent
    minutes on a bootstrap that takes seconds alone (seen on a GPU machine, 2026-12-04).
    """
    torch.set_num_threads(n)
    threadpool_limits(n)
