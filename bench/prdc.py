"""Time and peak memory of precision/recall/density/coverage (faststeal.metrics.prdc) on random features.

    python bench/prdc.py [--n 2000] [--dim 2048] [--repeats 3] [--threads 2] [--large] [--out FILE.json]

Times PRDC of n x n float32 features of size --dim (the median of --repeats calls); --large adds one call
at 10,000 x 10,000, the issue's memory case. Peak memory is the process's peak resident size (features
included) read from the kernel after each size, so run --large in its own process for a clean figure; the
targets are <= 2 s at 2,000 and <= 60 s and <= 2 GB at 10,000 on 2 cores. Run it with the CPU to itself:
the load average at the start is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402

from faststeal.metrics.prdc import prdc  # noqa: E402

LARGE = 10_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def one_size(n: int, dim: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(n)
    real = torch.rand(n, dim, generator=gen)
    fake = torch.rand(n, dim, generator=gen) * 1.1 + 0.02
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = prdc(real, fake)
        times.append(time.perf_counter() - start)
    return {"n": n, "dim": dim, "seconds_median": statistics.median(times), "seconds": times,
            "peak_rss_mb": peak_rss_mb(), "features_mb": 2 * n * dim * 4 / 2**20, "prdc": value}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="samples per side of the timed case")
    p.add_argument("--dim", type=int, default=2048, help="feature size (Inception pool3: 2048)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls at --n (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--large", action="store_true", help=f"also one call at {LARGE:,} x {LARGE:,}")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    for flag in ("n", "dim", "repeats", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1")
    if a.n < 6:
        p.error("--n must be >= 6 (density/coverage use 5 nearest neighbours)")
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    prdc(torch.rand(8, a.dim), torch.rand(8, a.dim))     # warm-up: thread pool, BLAS
    runs = [one_size(a.n, a.dim, a.repeats)]
    if a.large:
        runs.append(one_size(LARGE, a.dim, 1))
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {a.threads} threads")
    print(f"{'n':>7} {'dim':>6} {'seconds':>9} {'peak RSS MB':>12} {'features MB':>12}")
    for r in runs:
        print(f"{r['n']:>7} {r['dim']:>6} {r['seconds_median']:9.2f} {r['peak_rss_mb']:12.0f} {r['features_mb']:12.0f}")
    result = {"command": "python bench/prdc.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "threads": a.threads, "load_average_at_start": load,
              "torch": torch.__version__, "runs": runs}
    out = results_path("prdc", a.out)
    Path(out).write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
