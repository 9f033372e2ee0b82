"""Every benchmark script runs to the end at its smallest setting on a plain install, and writes its JSON
where --out says (never over the committed results). Numbers are not checked here: speed claims come from
the scripts' own side-by-side ratios, not from timed tests."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

SMALLEST = {
    "fid_throughput.py": ["--n", "4", "--batch", "2", "--dim", "64", "--threads", "1"],
    "kernels.py": ["--batch", "2", "--width", "8", "--rounds", "1", "--step-rounds", "1", "--compile-budget", "0",
                   "--time-limit", "30"],
    "scaling.py": ["--procs", "2", "--fid-n", "4", "--kimg", "0.05"],
    "serve.py": ["--clients", "1,2", "--batches", "8", "--images", "16", "--rounds", "1", "--threads", "1"],
    "target_formats.py": ["--n", "4", "--batch", "2", "--repeats", "1", "--ngf", "4", "--threads", "1"],
    "allocator.py": ["--resolution", "16", "--width", "8", "--batch", "4", "--steps", "1", "--rounds", "1",
                     "--threads", "1"],
    "attack_speed.py": ["--seconds", "1", "--queries", "64", "--fid-n", "8", "--batch", "8", "--width", "8",
                        "--threads", "1"],
    "perceptual_cost.py": ["--resolution", "32", "--width", "8", "--batch", "4", "--images", "2", "--steps", "1",
                           "--rounds", "1", "--threads", "1"],
    "distill_regression.py": ["--widths", "8", "--lrs", "2e-3,1e-3", "--batch", "4", "--queries", "16", "--held-out",
                              "8", "--seconds", "0.5", "--slice", "0.5", "--threads", "1"],
    "prdc.py": ["--n", "8", "--dim", "4", "--repeats", "1", "--threads", "1"],
    "train_precision.py": ["--resolution", "16", "--width", "8", "--batch", "4", "--steps", "1", "--rounds", "1",
                           "--threads", "1"],
}


WHOLE = {"compile_check.py"}     # run in full by tests/bench/test_compile_check.py


def test_every_bench_script_has_a_smallest_setting():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - WHOLE == set(SMALLEST)


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_bench_script_runs_to_the_end(script, tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTSTEAL_CACHE=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, str(BENCH / script), *SMALLEST[script], "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert json.loads(out.read_text())
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("flag, values", [("--widths", "8,16,8"), ("--lrs", "2e-3,2e-3")])
def test_distill_regression_refuses_a_contender_named_twice(flag, values, tmp_path):
    res = subprocess.run([sys.executable, str(BENCH / "distill_regression.py"), flag, values,
                          "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "twice" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "r.json").exists()
