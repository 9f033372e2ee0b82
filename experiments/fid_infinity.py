"""How much of a small-n fidelity is bias? FID at n beside FID-infinity for the copies in run folders.

For one target and the attack checkpoints of some `faststeal extract` run folders: the target's features are
computed once (n samples, the evaluation sampler's seed), then the FID floor's second sample of the target and
each copy's n samples; each pair gives FID at n and FID-infinity with its fit's standard error
(faststeal.metrics.fid_infinity). A perfect copy scores the floor at n and about 0 at infinity, so the floor's
row checks the extrapolation on real features.

    python experiments/fid_infinity.py --target builtin:pggan-fmnist32 --n 2000 runs/prdc/images-s0 ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faststeal import cpu
from faststeal.metrics import compute_features, fid_infinity
from faststeal.metrics.sources import GeneratorSource
from faststeal.sampling import FLOOR_SEED, SAMPLE_SEED


def measure(target: str, runs: list[Path], n: int, seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per comparison: the floor (a second sample of the target), then each run's attack.pt."""
    reference = compute_features(GeneratorSource(target, seed=SAMPLE_SEED), n=n, progress=progress)
    sides = [("floor (target, second sample)", GeneratorSource(target, seed=FLOOR_SEED))]
    sides += [(str(run), GeneratorSource(str(run / "attack.pt"), seed=SAMPLE_SEED)) for run in runs]
    rows = []
    for name, source in sides:
        features = compute_features(source, n=n, progress=progress)
        fit = fid_infinity(reference, features, seed=seed)
        # the fit's largest subset is the whole sample on both sides: its FID is FID at n
        rows.append({"copy": name, "n": n, "fid": fit["fid_inf_fids"][-1],
                     "fid_inf": fit["fid_inf"], "fid_inf_se": fit["fid_inf_se"], "slope": fit["fid_inf_slope"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| copy | FID at n | FID-infinity (± fit s.e.) | slope (FID x n) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['copy']} | {r['fid']:.2f} | {r['fid_inf']:.2f} ± {r['fid_inf_se']:.2f} | {r['slope']:.0f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="extract run folders, each holding attack.pt")
    parser.add_argument("--target", required=True, help="the target the runs copied (a checkpoint or builtin:NAME)")
    parser.add_argument("--n", type=int, default=2000, help="images per side (default 2000, extract's --fid-n)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets drawn for the fit")
    parser.add_argument("--threads", type=int, default=None, help="pin torch threads")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    runs = [Path(r) for r in args.runs]
    missing = [str(r) for r in runs if not (r / "attack.pt").is_file()]
    if missing:
        parser.error(f"no attack.pt in {', '.join(missing)}: give folders that `faststeal extract` finished")
    if args.n < 4:
        parser.error("--n must be >= 4 (three subset sizes of at least 2 images)")
    cpu.configure(args.threads)
    rows = measure(args.target, runs, args.n, args.seed)
    print(markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
