"""What the perceptual term costs a distilling thief, on the whole batch and on part of it, side by side.

    python bench/perceptual_cost.py [--resolution 64] [--channels 3] [--width 64] [--batch 16]
                                    [--images 4,8] [--precision bf16] [--steps 40] [--rounds 2] [--threads 2]
                                    [--out FILE.json]

Times distillation-only steps (G regressed onto served images, no D: the phase where the perceptual term
doubles the step) of the fast thief for: L1 alone, L1 plus the perceptual distance on every image of the
batch, and L1 plus the distance on each --images count. Every contender runs the same steps on the same
seeded random pairs after two untimed warm-up steps; the order turns over each round so drift in the
machine's speed falls on all alike. Prints images/s and each contender's cost relative to L1 alone. Writes
a JSON file under bench/results/ unless --out names one. Whether the cheaper estimate copies as well is
measured by extraction runs, not here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402
from _thief_options import add_thief_options, parse_thief_options  # noqa: E402
from attack_speed import warmup_speed  # noqa: E402  (images/s after two untimed steps)

from faststeal.data import ImageSet  # noqa: E402
from faststeal.metrics.perceptual import StemFeatures  # noqa: E402
from faststeal.train import PRECISIONS, TrainConfig  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_thief_options(p, steps=40, steps_help="timed steps per contender and round")
    p.add_argument("--images", default="4,8", help="comma-separated counts of images the distance is taken on")
    p.add_argument("--precision", default="bf16", choices=PRECISIONS)
    a = parse_thief_options(p, argv)
    if a.resolution < 32:
        p.error("--resolution must be at least 32 (the perceptual term's smallest images)")
    try:
        counts = [int(v) for v in a.images.split(",") if v.strip()]
    except ValueError:
        p.error(f"--images takes comma-separated whole numbers, got {a.images!r}")
    if not counts or any(not 0 < k <= a.batch for k in counts):
        p.error(f"--images: each count must be between 1 and the batch ({a.batch}), got {a.images!r}")
    torch.set_num_threads(a.threads)
    print(f"perceptual cost on {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
          f"{a.threads} threads, torch {torch.__version__}; fast thief at {a.channels}x{a.resolution}x"
          f"{a.resolution}, width {a.width}, batch {a.batch}, {a.precision}", flush=True)
    gen = torch.Generator().manual_seed(0)
    n = max(4 * a.batch, 256)
    images = torch.randint(0, 256, (n, a.channels, a.resolution, a.resolution), dtype=torch.uint8, generator=gen)
    data = ImageSet(images, None, "random", "random", codes=torch.randn(n, 128, generator=gen))
    features = StemFeatures()
    contenders = {"L1 alone": (0.0, 0), f"perceptual on {a.batch}": (1.0, 0)}
    contenders |= {f"perceptual on {k}": (1.0, k) for k in counts if k != a.batch}
    speeds = {name: [] for name in contenders}
    for r in range(a.rounds):
        order = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
        for name in order:
            weight, k = contenders[name]
            cfg = TrainConfig(arch="fast", resolution=a.resolution, channels=a.channels, width=a.width,
                              batch=a.batch, kimg=1e9, grow=False, precision=a.precision, distill=10.0,
                              distill_only_kimg=1e9, perceptual=weight, perceptual_images=k)
            speeds[name].append(warmup_speed(cfg, data, a.steps, features=features if weight else None))
            print(f"  round {r + 1} {name:<20} {speeds[name][-1]:8.1f} img/s", flush=True)
    rows = {name: sum(v) / len(v) for name, v in speeds.items()}
    cost = {name: rows["L1 alone"] / rows[name] for name in rows}       # time per image relative to L1 alone
    for name in rows:
        print(f"{name:<20} {rows[name]:8.1f} img/s   {cost[name]:.2f}x the time of L1 alone "
              f"(mean of {a.rounds} rounds)")
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__, "args": vars(a), "images_per_s": rows, "runs": speeds,
              "time_vs_l1": cost}
    out = results_path("perceptual_cost", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
