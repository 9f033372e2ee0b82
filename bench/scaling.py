"""Scaling-out benchmark: the same faststeal command in one process and under torchrun, side by side.

    python bench/scaling.py [--procs 2] [--fid-n 400] [--kimg 3] [--out bench/scaling.json]

For each workload it runs (1) one process with one thread, (2) one process using all K cores (K threads) and
(3) `torchrun --nproc_per_node K` with one thread per process, and prints wall times, the speed-up of (3)
over (1) and over (2), and how far (3)'s result is from (1)'s (same thread count per process, so FID must
agree to float64 rounding; thread counts change float32 summation order, so (2) may differ slightly):
  fid           `faststeal fid fashion-mnist:test fashion-mnist:train --n N --no-cache --json` (FID values must match)
  train-target  PGGAN 32x32 on Fashion-MNIST for --kimg (its growing schedule squeezed into that length); img/s
                from the command's own summary, and the largest weight difference between the two checkpoints
On a GPU machine K processes use K GPUs (NCCL); on a CPU they share the cores (gloo).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import results_path  # noqa: E402


def run(cmd: list[str], threads: int, cwd: str) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), FASTSTEAL_CACHE=os.path.join(cwd, "cache"))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def torchrun(procs: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
            str(29400 + os.getpid() % 500), "-m", "faststeal"]


def bench_fid(procs: int, n: int, cwd: str) -> dict:
    args = ["fid", "fashion-mnist:test", "fashion-mnist:train", "-n", str(n), "--no-cache", "--json",
            "--loader", "torch"]
    runs = {"one_thread": run([sys.executable, "-m", "faststeal", *args], 1, cwd),
            "all_threads": run([sys.executable, "-m", "faststeal", *args], procs, cwd),
            "torchrun": run(torchrun(procs) + args, 1, cwd)}
    fids = {k: json.loads(out.strip().splitlines()[-1])["fid"] for k, (_, out) in runs.items()}
    return {"workload": f"fid, {n} images per side", **{f"{k}_s": wall for k, (wall, _) in runs.items()},
            "fid": fids, "difference": abs(fids["torchrun"] - fids["one_thread"]) / abs(fids["one_thread"])}


def bench_train(procs: int, kimg: float, cwd: str) -> dict:
    args = ["train-target", "--data", "fashion-mnist", "--kimg", str(kimg), "--batch", "32", "--width", "64",
            "--phase-kimg", str(kimg / 7), "--snapshot-kimg", str(kimg)]
    runs = {"one_thread": run([sys.executable, "-m", "faststeal", *args, "--threads", "1", "--out", "a.pt"], 1, cwd),
            "all_threads": run([sys.executable, "-m", "faststeal", *args, "--threads", str(procs), "--out", "b.pt"],
                               procs, cwd),
            "torchrun": run(torchrun(procs) + args + ["--out", "c.pt"], 1, cwd)}
    a = torch.load(os.path.join(cwd, "a.pt"), weights_only=True)["G_ema"]
    c = torch.load(os.path.join(cwd, "c.pt"), weights_only=True)["G_ema"]
    return {"workload": f"train-target pggan 32px, {kimg} kimg, batch 32",
            **{f"{k}_s": wall for k, (wall, _) in runs.items()},
            "img_s": {k: float(re.search(r"\(([\d.]+) img/s\)", out).group(1)) for k, (_, out) in runs.items()},
            "difference": max(float((a[k].float() - c[k].float()).abs().max()) for k in a)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--fid-n", type=int, default=400)
    p.add_argument("--kimg", type=float, default=3.0)
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        rows = [bench_fid(a.procs, a.fid_n, cwd), bench_train(a.procs, a.kimg, cwd)]
    print(f"{'workload':<44} {'1x1':>7} {f'1x{a.procs}':>7} {f'{a.procs}x1':>7} {'vs 1x1':>7} "
          f"{f'vs 1x{a.procs}':>7}  difference from 1x1")
    for r in rows:
        t1, tk, tr = r["one_thread_s"], r["all_threads_s"], r["torchrun_s"]
        what = "relative FID" if "fid" in r else "max |weight|"
        print(f"{r['workload']:<44} {t1:6.1f}s {tk:6.1f}s {tr:6.1f}s {t1 / tr:6.2f}x {tk / tr:6.2f}x  "
              f"{r['difference']:.1e} ({what})")
    result = {"date": datetime.date.today().isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "procs": a.procs, "rows": rows}
    a.out = results_path("scaling", a.out)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
