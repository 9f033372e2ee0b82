"""Scaling-out benchmark: the same faststeal command in one process and under torchrun, side by side.

    python bench/scaling.py [--procs 2] [--fid-n 400] [--kimg 3] [--out bench/scaling.json]

For each workload it runs (1) one process using all K cores (`--threads K` / OMP_NUM_THREADS=K) and
(2) `torchrun --nproc_per_node K` with one thread per process, and prints wall time, throughput, the ratio,
and whether the results agree:
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
    args = ["fid", "fashion-mnist:test", "fashion-mnist:train", "--n", str(n), "--no-cache", "--json",
            "--loader", "torch"]
    one_wall, one_out = run([sys.executable, "-m", "faststeal", *args], procs, cwd)
    many_wall, many_out = run(torchrun(procs) + args, 1, cwd)
    one, many = (json.loads(out.strip().splitlines()[-1]) for out in (one_out, many_out))
    return {"workload": f"fid, {n} images per side", "one_process_s": one_wall, "torchrun_s": many_wall,
            "one_fid": one["fid"], "torchrun_fid": many["fid"],
            "agree": abs(one["fid"] - many["fid"]) <= 1e-9 * max(1.0, abs(one["fid"]))}


def bench_train(procs: int, kimg: float, cwd: str) -> dict:
    args = ["train-target", "--data", "fashion-mnist", "--kimg", str(kimg), "--batch", "32", "--width", "64",
            "--phase-kimg", str(kimg / 7), "--snapshot-kimg", str(kimg)]
    one_wall, one_out = run([sys.executable, "-m", "faststeal", *args, "--threads", str(procs), "--out", "one.pt"],
                            procs, cwd)
    many_wall, many_out = run(torchrun(procs) + args + ["--out", "many.pt"], 1, cwd)
    rate = [float(re.search(r"\(([\d.]+) img/s\)", out).group(1)) for out in (one_out, many_out)]
    a = torch.load(os.path.join(cwd, "one.pt"), weights_only=True)["G_ema"]
    b = torch.load(os.path.join(cwd, "many.pt"), weights_only=True)["G_ema"]
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return {"workload": f"train-target pggan 32px, {kimg} kimg, batch 32", "one_process_s": one_wall,
            "torchrun_s": many_wall, "one_img_s": rate[0], "torchrun_img_s": rate[1],
            "max_weight_diff": diff, "agree": diff < 1e-3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--fid-n", type=int, default=400)
    p.add_argument("--kimg", type=float, default=3.0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "scaling.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        rows = [bench_fid(a.procs, a.fid_n, cwd), bench_train(a.procs, a.kimg, cwd)]
    print(f"{'workload':<44} {'1 proc':>8} {'torchrun':>9} {'speed-up':>9}  agree")
    for r in rows:
        print(f"{r['workload']:<44} {r['one_process_s']:7.1f}s {r['torchrun_s']:8.1f}s "
              f"{r['one_process_s'] / r['torchrun_s']:8.2f}x  {r['agree']}")
    result = {"date": datetime.date.today().isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "procs": a.procs, "rows": rows}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
