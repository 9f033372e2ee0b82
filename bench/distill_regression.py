"""How fast the chosen-latent thief's regression learns a real target, at several widths: the L1 on fresh codes
against seconds of training, the contenders side by side.

    python bench/distill_regression.py [--target experiments/targets/icons64-pggan.pt] [--widths 48,64,96]
                                       [--lrs 2e-3] [--batch 16] [--queries 10000] [--held-out 1000]
                                       [--seconds 600] [--slice 60] [--seeds 0] [--threads 2] [--out FILE.json]

With chosen latents the thief first trains its generator alone on the bought (code, image) pairs (L1, no
discriminator; 75% of the budget by default), so which thief learns that regression fastest per second decides how
far a time budget gets. A wider thief learns more per image and trains fewer images per second; --lrs compares
learning rates (--attack-lr) the same way. Each contender (a width, a learning rate and a seed) trains in turns of
--slice seconds, round robin, in one process with the same threads, so a drift in the machine's speed falls on all
alike. After each turn the L1 of its weight-averaged (EMA) generator is taken on --held-out codes the thief never
bought (how close the copy is where it will be sampled) and on as many bought ones (the gap between the two is what
it memorised). Prints the held-out L1 of every contender at each turn and, at the end, its mean over seeds with the
spread; writes a JSON file under bench/results/ unless --out names one. Whether a lower regression L1 ends in a
closer copy after the adversarial phase is for extraction runs to show, not this script.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402

from faststeal.attack.queryset import chosen_codes  # noqa: E402
from faststeal.data import ImageSet, to_float  # noqa: E402
from faststeal.losses import paired_l1  # noqa: E402
from faststeal.targets import open_target  # noqa: E402
from faststeal.train import ARCH_DEFAULTS, PRECISIONS, TrainConfig, Trainer, native_bf16  # noqa: E402

DEFAULT_TARGET = Path(__file__).resolve().parents[1] / "experiments" / "targets" / "icons64-pggan.pt"
HELD_OUT_SEED = 1_000_003        # another stream than any thief seed's bought codes


def numbers(text: str, flag: str, parser: argparse.ArgumentParser, kind=int) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag} takes comma-separated {'whole ' if kind is int else ''}numbers, got {text!r}")
    if not values:
        parser.error(f"{flag} is empty")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:        # a repeat would train the same contender twice and count it as another seed
        parser.error(f"{flag} names {repeated[0]:g} twice; give each value once")
    return values


def name(width: int, lr: float, lrs: list[float]) -> str:
    """A contender's label: its width, and its learning rate where several are compared."""
    return f"w{width}" + (f"/lr{lr:g}" if len(lrs) > 1 else "")


def copy_l1(generator, codes: torch.Tensor, images: torch.Tensor, batch: int = 250) -> float:
    """The training loss (losses.paired_l1) between the copy and the served images, over a whole set in batches."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(codes), batch):
            served = to_float(images[i:i + batch])
            total += float(paired_l1(generator(codes[i:i + batch]), served)) * served.numel()
    return total / images.numel()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=str(DEFAULT_TARGET), help="a target that accepts latent codes")
    p.add_argument("--widths", default="48,64,96", help="comma-separated thief widths (--attack-width)")
    p.add_argument("--lrs", default=str(ARCH_DEFAULTS["fast"]["lr"]),
                   help="comma-separated learning rates (--attack-lr); default: the fast thief's")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--queries", type=int, default=10000, help="bought (code, image) pairs")
    p.add_argument("--held-out", type=int, default=1000, help="fresh codes the L1 is measured on")
    p.add_argument("--seconds", type=float, default=600.0, help="seconds of training per contender")
    p.add_argument("--slice", type=float, default=60.0, help="seconds per turn (and between measurements)")
    p.add_argument("--seeds", default="0", help="comma-separated thief seeds (each buys its own codes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="default: bf16 where it is native (as the 64x64 default thief trains), else float32")
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    a = p.parse_args(argv)
    widths, seeds = numbers(a.widths, "--widths", p), numbers(a.seeds, "--seeds", p)
    lrs = numbers(a.lrs, "--lrs", p, float)
    if min(lrs) <= 0:
        p.error("--lrs must be > 0")
    for flag, value in (("--batch", a.batch), ("--queries", a.queries), ("--held-out", a.held_out),
                        ("--seconds", a.seconds), ("--slice", a.slice), ("--threads", a.threads)):
        if value <= 0:
            p.error(f"{flag} must be > 0")
    if min(widths) < 1 or min(seeds) < 0:
        p.error("--widths must be >= 1 and --seeds >= 0")
    if HELD_OUT_SEED in seeds:
        p.error(f"--seeds: {HELD_OUT_SEED} draws the held-out codes; choose another seed")
    precision = a.precision or ("bf16" if native_bf16(torch.device("cpu")) else "float32")
    target = open_target(a.target)          # refuses a missing or unreadable file with a one-line error
    if not target.in_process:
        p.error(f"{a.target}: the script queries the generator in process; give a file, not a URL")
    torch.set_num_threads(a.threads)
    oracle = target.oracle(a.queries * len(seeds) + a.held_out)
    if not oracle.accepts_latents:
        p.error(f"{a.target}: this target does not accept latent codes, so there is no regression to time")
    dim, res, ch = target.latent_dim, target.resolution, target.channels
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    print(f"distillation regression on {a.target} ({ch}x{res}x{res}), {os.cpu_count()}-core CPU "
          f"({caps.get('cpu_name') or platform.machine()}), {a.threads} threads, torch {torch.__version__}; "
          f"widths {widths}, learning rates {lrs}, seeds {seeds}, batch {a.batch}, {precision}, {a.queries} pairs, "
          f"{a.seconds:g} s each",
          flush=True)
    held_codes = chosen_codes(HELD_OUT_SEED, 0, a.held_out, dim)
    held_images = oracle.query(held_codes)
    contenders = []
    scratch = tempfile.TemporaryDirectory()       # the trainers' checkpoint paths: nothing is saved there
    for seed in seeds:
        codes = chosen_codes(seed, 0, a.queries, dim)
        data = ImageSet(oracle.query(codes), None, "queries", a.target, codes=codes)
        for width in widths:
            for lr in lrs:
                cfg = TrainConfig(arch="fast", resolution=res, channels=ch, latent_dim=dim, width=width, lr=lr,
                                  batch=a.batch, kimg=1e9, grow=False, distill=10.0, distill_only_kimg=1e9, seed=seed,
                                  precision=precision)
                trainer = Trainer(cfg, data, checkpoint_path=Path(scratch.name) / f"w{width}-lr{lr:g}-s{seed}.pt",
                                  progress=False)
                contenders.append({"width": width, "lr": lr, "seed": seed, "label": name(width, lr, lrs),
                                   "trainer": trainer, "seconds": 0.0, "curve": []})
    bought = min(a.held_out, a.queries)

    def measure(c):
        t = c["trainer"]
        c["curve"].append({"seconds": round(c["seconds"], 1), "kimg": round(t.kimg, 2),
                           "held_out_l1": copy_l1(t.G_ema, held_codes, held_images),
                           "bought_l1": copy_l1(t.G_ema, t.data.codes[:bought], t.data.images[:bought])})

    for c in contenders:
        measure(c)
    turns = max(1, round(a.seconds / a.slice))
    for turn in range(turns):
        for c in contenders:
            stop = a.seconds * (turn + 1) / turns
            while c["seconds"] < stop:
                start = time.perf_counter()
                c["trainer"].step()
                c["seconds"] += time.perf_counter() - start
            measure(c)
        print(f"  after {a.seconds * (turn + 1) / turns:6.0f} s: " + "  ".join(
            f"{c['label']}/s{c['seed']} {c['curve'][-1]['held_out_l1']:.4f} ({c['curve'][-1]['kimg']:.1f} kimg)"
            for c in contenders), flush=True)
    final, first = {}, name(widths[0], lrs[0], lrs)      # every contender is compared with the first
    for width in widths:
        for lr in lrs:
            ends = [c["curve"][-1]["held_out_l1"] for c in contenders if (c["width"], c["lr"]) == (width, lr)]
            spread = statistics.stdev(ends) if len(ends) > 1 else None
            label = name(width, lr, lrs)
            final[label] = {"width": width, "lr": lr, "held_out_l1": statistics.mean(ends), "spread": spread,
                            "runs": ends}
            print(f"{label}: held-out L1 {final[label]['held_out_l1']:.4f}"
                  + (f" ± {spread:.4f} over {len(ends)} seeds" if spread is not None else " (one seed: no spread)")
                  + f", {final[label]['held_out_l1'] / final[first]['held_out_l1']:.3f}x {first}'s")
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "torch": torch.__version__, "cpu": dict(caps), "precision": precision,
              "args": vars(a), "final": final,
              "runs": [{k: c[k] for k in ("width", "lr", "seed", "curve")} for c in contenders]}
    scratch.cleanup()
    out = results_path("distill_regression", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
