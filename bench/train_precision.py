"""Training speed of one attack GAN in float32 and under bf16 autocast, side by side in one process.

    python bench/train_precision.py [--arch fast] [--resolution 64] [--channels 3] [--width 64] [--batch 16]
                                    [--steps 40] [--rounds 2] [--threads 2] [--out FILE.json]

Each contender runs the same training steps (adversarial steps, then distillation-only steps, which train G
alone on paired codes) on the same seeded random images, after two untimed warm-up steps; the order
alternates over --rounds so drift in the machine's speed falls on both alike. Pixel content does not change
the cost of a step, so random images stand in for a query set. Prints images/s per contender and phase, the
bf16/float32 ratios, and the CPU features that decide whether bf16 is native (AMX or AVX-512 BF16 on x86).
Writes a JSON file under bench/results/ unless --out names one. Whether bf16 changes fidelity is measured by
extraction runs, not here.
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
from faststeal.train import PRECISIONS, TrainConfig, native_bf16  # noqa: E402

PHASES = ("adversarial", "distill-only")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="fast", choices=("fast", "dcgan"))
    add_thief_options(p, steps=40, steps_help="timed steps per contender, phase and round")
    a = parse_thief_options(p, argv)
    torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    print(f"training precision on {os.cpu_count()}-core CPU ({caps.get('cpu_name') or platform.machine()}; "
          f"amx_bf16 {caps.get('amx_bf16')}, avx512_bf16 {caps.get('avx512_bf16')}), {a.threads} threads, "
          f"torch {torch.__version__}; {a.arch} at {a.channels}x{a.resolution}x{a.resolution}, width {a.width}, "
          f"batch {a.batch}; bf16 native here: {native_bf16(device)}", flush=True)
    gen = torch.Generator().manual_seed(0)
    n = max(4 * a.batch, 256)
    images = torch.randint(0, 256, (n, a.channels, a.resolution, a.resolution), dtype=torch.uint8, generator=gen)
    codes = torch.randn(n, 128, generator=gen)
    data = ImageSet(images, None, "random", "random", codes=codes)
    phase_config = {"adversarial": {}, "distill-only": {"distill": 10.0, "distill_only_kimg": 1e9}}
    speeds = {(prec, phase): [] for prec in PRECISIONS for phase in PHASES}
    for r in range(a.rounds):
        order = PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]
        for prec in order:
            for phase in PHASES:
                cfg = TrainConfig(arch=a.arch, resolution=a.resolution, channels=a.channels, width=a.width,
                                  batch=a.batch, kimg=1e9, grow=False, precision=prec, **phase_config[phase])
                speeds[prec, phase].append(warmup_speed(cfg, data, a.steps))
                print(f"  round {r + 1} {prec:<8} {phase:<13} {speeds[prec, phase][-1]:8.1f} img/s", flush=True)
    rows = {f"{prec}/{phase}": sum(v) / len(v) for (prec, phase), v in speeds.items()}
    ratios = {phase: rows[f"bf16/{phase}"] / rows[f"float32/{phase}"] for phase in PHASES}
    for phase in PHASES:
        print(f"{phase}: bf16 {rows[f'bf16/{phase}']:.1f} img/s vs float32 {rows[f'float32/{phase}']:.1f} "
              f"-> {ratios[phase]:.2f}x (mean of {a.rounds} rounds)")
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__, "cpu": dict(caps), "args": vars(a), "images_per_s": rows,
              "runs": {f"{k[0]}/{k[1]}": v for k, v in speeds.items()}, "ratios": ratios}
    out = results_path("train_precision", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
