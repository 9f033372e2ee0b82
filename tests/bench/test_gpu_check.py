"""bench/gpu_check.sh: its dry run (what CI can check without a GPU) passes and catches a wrong flag; its
run machinery records steps and writes summary.json (driven here with a stand-in nvidia-smi, the one piece of
a GPU machine the env step needs; no GPU numbers come out of this)."""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(args, script=SCRIPT, timeout=600, **env):
    full = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", **env)
    return subprocess.run(["bash", str(script), *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_checks_every_step_and_writes_nothing():
    before = sorted((ROOT / "bench" / "results").iterdir())
    res = _run(["--dry-run"])
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("env", "tests_triton", "tests_torch", "kernels", "fid", "fid_dali", "fid_torch", "train64",
                 "extract64", "extract64rgb", "latents64rgb"):
        assert f"ok      {name}:" in res.stdout
    assert sorted((ROOT / "bench" / "results").iterdir()) == before


def test_dry_run_catches_a_misspelt_flag(tmp_path):
    bad = tmp_path / "gpu_check.sh"
    text = SCRIPT.read_text()
    assert "--time-limit 80" in text
    bad.write_text(text.replace("--time-limit 80", "--time-limt 80"))
    res = _run(["--dry-run", "--only", "kernels"], script=bad, FASTSTEAL_ROOT=str(ROOT))
    assert res.returncode == 1
    assert "FAILED  kernels" in res.stdout and "--time-limt" in res.stdout


def test_bad_options_are_one_line_errors():
    for args, words in ((["--bogus"], "unknown option --bogus"), (["--only", "nope"], "no step 'nope'"),
                        (["--budget", "soon"], "--budget needs whole seconds")):
        res = _run(args)
        assert res.returncode == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.fixture
def fake_gpu_path(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("a real nvidia-smi is installed here; the stand-in is not needed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Stand-in GPU, 0.0, 0 MiB'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_run_records_steps_and_writes_summary(tmp_path, fake_gpu_path):
    out = tmp_path / "out"
    res = _run(["--only", "env", "--out", str(out)], PATH=fake_gpu_path)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gpu"] == {"name": "Stand-in GPU", "driver": "0.0", "memory": "0 MiB"}
    assert [s["name"] for s in summary["steps"]] == ["env"] and summary["steps"][0]["status"] == "passed"
    import torch
    assert summary["environment"]["torch"] == torch.__version__


def test_steps_past_the_budget_are_skipped(tmp_path, fake_gpu_path):
    out = tmp_path / "out"
    res = _run(["--only", "env,kernels", "--out", str(out), "--budget", "0"], PATH=fake_gpu_path)
    assert res.returncode == 0, res.stdout + res.stderr
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("env", "skipped"), ("kernels", "skipped")]


def test_dali_step_is_skipped_with_its_reason_when_dali_is_missing(tmp_path, fake_gpu_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "env.json").write_text(json.dumps({"dali": False}))  # as the env step writes it without DALI
    res = _run(["--only", "fid_dali", "--out", str(out)], PATH=fake_gpu_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (step,) = json.loads((out / "summary.json").read_text())["steps"]
    assert step["status"] == "skipped" and "DALI not installed" in step["command"]
