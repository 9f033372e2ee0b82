"""Training speed and page faults with glibc's default malloc thresholds and with freed memory kept.

    python bench/allocator.py [--resolution 64] [--channels 3] [--width 64] [--batch 16] [--precision bf16]
                              [--steps 60] [--rounds 2] [--threads 2] [--out FILE.json]

The setting (faststeal.allocator.keep_freed_memory) is process-wide and cannot be undone, so each contender
runs in a fresh child process: the fast thief's adversarial training steps on seeded random images, timed
after five untimed steps, with the minor page faults counted over the timed steps. The order turns over each
round so drift in the machine's speed falls on both alike. Prints images/s, faults per step and the ratio of
the two speeds. Writes a JSON file under bench/results/ unless --out names one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402
from _thief_options import add_thief_options, parse_thief_options  # noqa: E402

from faststeal import allocator  # noqa: E402
from faststeal.data import ImageSet  # noqa: E402
from faststeal.train import PRECISIONS, TrainConfig, Trainer  # noqa: E402

CONTENDERS = ("default", "kept")


def child(a) -> dict:
    """One contender in this process: {"images_per_s", "faults_per_step", "in_force"}."""
    torch.set_num_threads(a.threads)
    in_force = allocator.keep_freed_memory() if a.child == "kept" else False
    gen = torch.Generator().manual_seed(0)
    n = max(4 * a.batch, 256)
    images = torch.randint(0, 256, (n, a.channels, a.resolution, a.resolution), dtype=torch.uint8, generator=gen)
    cfg = TrainConfig(arch="fast", resolution=a.resolution, channels=a.channels, width=a.width, batch=a.batch,
                      kimg=1e9, grow=False, precision=a.precision)
    t = Trainer(cfg, ImageSet(images, None, "random", "random"), checkpoint_path=os.devnull, progress=False)
    for _ in range(5):
        t.step()
    before, start, seen = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter(), t.images_seen
    for _ in range(a.steps):
        t.step()
    took = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {"images_per_s": (t.images_seen - seen) / took, "faults_per_step": faults / a.steps, "in_force": in_force}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_thief_options(p, steps=60, steps_help="timed steps per contender and round")
    p.add_argument("--precision", default="bf16", choices=PRECISIONS)
    p.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)     # internal: one contender
    a = parse_thief_options(p, argv)
    if a.child:
        print(json.dumps(child(a)))
        return {}
    print(f"allocator on {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), {a.threads} "
          f"threads, torch {torch.__version__}; fast thief at {a.channels}x{a.resolution}x{a.resolution}, width "
          f"{a.width}, batch {a.batch}, {a.precision}", flush=True)
    args = [f"--{k}={v}" for k, v in vars(a).items() if k not in ("out", "child", "rounds")]
    runs = {name: [] for name in CONTENDERS}
    for r in range(a.rounds):
        for name in (CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]):
            done = subprocess.run([sys.executable, __file__, *args, f"--child={name}"], capture_output=True,
                                  text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            got = runs[name][-1]
            print(f"  round {r + 1} {name:<8} {got['images_per_s']:8.1f} img/s {got['faults_per_step']:8.0f} "
                  f"page faults/step", flush=True)
    rows = {name: {key: sum(run[key] for run in v) / len(v) for key in ("images_per_s", "faults_per_step")}
            for name, v in runs.items()}
    ratio = rows["kept"]["images_per_s"] / rows["default"]["images_per_s"]
    for name, row in rows.items():
        print(f"{name:<8} {row['images_per_s']:8.1f} img/s {row['faults_per_step']:8.0f} page faults/step")
    print(f"kept/default: {ratio:.2f}x the images per second (mean of {a.rounds} rounds); in force: "
          f"{all(run['in_force'] for run in runs['kept'])}")
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__, "args": vars(a), "rows": rows, "runs": runs, "ratio": ratio}
    out = results_path("allocator", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
