"""Attack speed: the paper's PGGAN attacker against faststeal's default (fast) thief, side by side.

    python bench/attack_speed.py [--seconds 300] [--queries 10000] [--fid-n 1000] [--batch 32] [--threads 2]
                                 [--target builtin:pggan-fmnist32] [--out FILE.json]

Both contenders train on the same query set for the same training time (wall seconds of training steps, with
the CPU to themselves: run nothing else meanwhile), at the same batch size. The PGGAN attacker's growing
schedule is squeezed into the images it can see in that time (measured in a short warm-up), so it reaches full
resolution. Then each is scored once: fidelity = FID(attack EMA generator, target) on --fid-n images per side
(biased upwards below 2,048: compare the two rows, not with other n). Prints images/s and fidelity with the
ratios; writes a JSON file under bench/results/ unless --out names one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402

from faststeal.attack import queryset  # noqa: E402
from faststeal.checkpoint import load_checkpoint  # noqa: E402
from faststeal.evaluate import fid, generator_stats  # noqa: E402
from faststeal.targets.oracle import TargetOracle  # noqa: E402
from faststeal.train import TrainConfig, Trainer  # noqa: E402

CONTENDERS = ("pggan", "fast")


def warmup_speed(config: TrainConfig, data, steps: int = 6, features=None) -> float:
    """Images/s at full resolution after two untimed steps (used to size PGGAN's growing schedule);
    ``features``: the perceptual term's network, for a config with perceptual > 0."""
    t = Trainer(TrainConfig(**{**config.__dict__, "grow": False}), data, checkpoint_path=os.devnull, progress=False,
                features=features)
    t.step(), t.step()
    start, seen = time.perf_counter(), t.images_seen
    for _ in range(steps):
        t.step()
    return (t.images_seen - seen) / (time.perf_counter() - start)


def train_for(config: TrainConfig, data, seconds: float) -> Trainer:
    t = Trainer(config, data, checkpoint_path=os.devnull, progress=False)
    while t.train_seconds < seconds and t.images_seen < config.kimg * 1000:
        tick = time.perf_counter()
        t.step()
        t.train_seconds += time.perf_counter() - tick
    return t


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="builtin:pggan-fmnist32")
    p.add_argument("--seconds", type=float, default=300.0, help="training time per contender")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--fid-n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    a = p.parse_args(argv)
    for name in ("seconds", "queries", "fid_n", "batch", "width", "threads"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    torch.set_num_threads(a.threads)
    cfg = load_checkpoint(a.target)["config"]
    res, ch = cfg["resolution"], cfg["channels"]
    print(f"attack speed on {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
          f"{a.threads} threads, torch {torch.__version__}; target {a.target}, {a.queries} queries, "
          f"batch {a.batch}, {a.seconds:g} s of training each", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        oracle = TargetOracle(a.target, budget=a.queries, seed=a.seed)
        queryset.collect(oracle, Path(tmp) / "q", a.queries, target=a.target, progress=False)
        data = queryset.load(Path(tmp) / "q")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target_stats = generator_stats(a.target, a.fid_n, progress=False, cache=True)
    rows = {}
    for arch in CONTENDERS:
        base = TrainConfig(arch=arch, resolution=res, channels=ch, width=a.width, batch=a.batch, kimg=1e9,
                           seed=a.seed)
        speed = warmup_speed(base, data)
        # PGGAN grows through its levels within the images it can see in the time (full-res speed is a floor)
        kimg = speed * a.seconds / 1000 if arch == "pggan" else 1e9
        t = train_for(TrainConfig(**{**base.__dict__, "kimg": kimg}), data, a.seconds)
        with warnings.catch_warnings():      # FID below 2,048 per side is biased; both rows alike
            warnings.simplefilter("ignore")
            stats = generator_stats(t.G_ema.eval(), a.fid_n, progress=False)
            fidelity = fid(stats, target_stats)
        rows[arch] = {"images_per_s": t.images_seen / t.train_seconds, "kimg": t.kimg,
                      "train_seconds": t.train_seconds, "fidelity": fidelity, "full_res_images_per_s": speed}
        print(f"  {arch:<6} {rows[arch]['images_per_s']:8.1f} img/s (full resolution {speed:.1f})  "
              f"{t.kimg:7.1f} kimg  fidelity {rows[arch]['fidelity']:8.2f}", flush=True)
    old, new = rows["pggan"], rows["fast"]
    ratios = {"images_per_s": new["images_per_s"] / old["images_per_s"],
              "full_res_images_per_s": new["full_res_images_per_s"] / old["full_res_images_per_s"],
              "fidelity": new["fidelity"] / old["fidelity"]}
    print(f"fast / pggan: {ratios['images_per_s']:.2f}x images/s overall, {ratios['full_res_images_per_s']:.2f}x "
          f"at full resolution; fidelity {new['fidelity']:.2f} vs {old['fidelity']:.2f} "
          f"({ratios['fidelity']:.2f}x) after {a.seconds:g} s (FID on {a.fid_n} per side)")
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__, "threads": a.threads, "args": vars(a), "rows": rows, "ratios": ratios}
    out = results_path("attack_speed", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
