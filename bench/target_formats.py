"""Sampling throughput of one generator in every target format, side by side in one run.

    python bench/target_formats.py [--n 512] [--batch 128] [--repeats 5] [--ngf 64] [--threads 2]
                                   [--device cpu] [--out FILE.json]

The generator is the PyTorch DCGAN tutorial's (codes (N, 100, 1, 1), 64x64 RGB; the test suite's copy at
width --ngf, random weights). It is saved as TorchScript, torch.export (.pt2) and ONNX, and each is opened as
a faststeal target and sampled through the one sampler every measurement uses (uint8 images from seeded
codes). Rounds are interleaved (every format once per round) so that a change in machine load hits all
alike; the median of --repeats rounds is reported, with each format's ratio to the eager module (the py:
target). Also prints the largest pixel difference from the eager module's images. Run it with the CPU to
itself.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _results import results_path  # noqa: E402
from foreign_export import export_all  # noqa: E402
from foreign_generators import DCGAN  # noqa: E402

from faststeal.targets import open_target  # noqa: E402

ORDER = ("python", "torchscript", "export", "onnx")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="images per timed call")
    p.add_argument("--batch", type=int, default=128, help="sampler batch size")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median reported)")
    p.add_argument("--ngf", type=int, default=64, help="generator width (the tutorial's is 64)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (ONNX always runs on the CPU provider)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    for flag in ("n", "batch", "repeats", "ngf", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1")
    torch.set_num_threads(a.threads)
    from faststeal.sampling import generate

    torch.manual_seed(0)
    model = DCGAN(nz=100, ngf=a.ngf).eval()
    with tempfile.TemporaryDirectory() as tmp:
        specs = export_all(Path(tmp), model=model, nz=100)
        specs["python"] = model            # the eager module itself, behind the same sampler
        targets = {k: open_target(specs[k]) for k in ORDER}
        gens = {k: t.generator.to(a.device) if k != "onnx" else t.generator for k, t in targets.items()}
        reference = generate(gens["python"], 64, seed=1, batch=a.batch)
        diff = {k: int((generate(g, 64, seed=1, batch=a.batch).int() - reference.int()).abs().max())
                for k, g in gens.items()}
        for g in gens.values():            # warm-up: first calls compile, allocate, load kernels
            generate(g, a.batch, seed=2, batch=a.batch)
        times = {k: [] for k in ORDER}
        for _ in range(a.repeats):
            for k in ORDER:
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                generate(gens[k], a.n, seed=3, batch=a.batch)
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - start)
    rate = {k: a.n / statistics.median(v) for k, v in times.items()}
    rows = {k: {"images_per_s": rate[k], "ratio_to_eager": rate[k] / rate["python"],
                "max_pixel_diff_vs_eager": diff[k]} for k in ORDER}
    print(f"{'format':<12} {'img/s':>9} {'x eager':>8} {'max |diff|':>10}")
    for k, r in rows.items():
        print(f"{k:<12} {r['images_per_s']:9.1f} {r['ratio_to_eager']:8.2f} {r['max_pixel_diff_vs_eager']:10d}")
    result = {"command": "python bench/target_formats.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.processor() or platform.machine(),
              "device": a.device, "threads": a.threads, "torch": torch.__version__, "n": a.n, "batch": a.batch,
              "repeats": a.repeats, "ngf": a.ngf, "formats": rows}
    out = results_path("target_formats", a.out)
    Path(out).write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
