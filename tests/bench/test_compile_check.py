"""Every Triton launch the models can make compiles for sm_80, sm_86, sm_89 and sm_90 and fits each one's
shared memory per block and registers per SM. No GPU needed: triton.compile with the ptxas of the triton wheel.

Runs bench/compile_check.py in a child process, because this process imported Triton in interpreter mode
(tests/conftest.py), where kernels cannot be compiled. Skips only where ptxas (or Triton's NVIDIA backend) is
missing. About 2 minutes on a shared 2-core CPU (88 distinct compiles).
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
from faststeal.kernels import triton_conv  # noqa: E402
from faststeal.kernels.launch_settings import SHARED_MEMORY_LIMIT  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "compile_check.py"
_spec = importlib.util.spec_from_file_location("compile_check", SCRIPT)
compile_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compile_check)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compile")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OMP_NUM_THREADS="1", TRITON_CACHE_DIR=str(tmp / "triton-cache"))  # compile afresh, in this run
    out = tmp / "rows.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)],
                         env=env, capture_output=True, text=True, timeout=1200)
    if res.returncode == compile_check.EXIT_MISSING:
        pytest.skip(res.stdout.strip())
    assert res.returncode in (0, 1), res.stdout[-4000:] + res.stderr[-4000:]
    assert "TRITON_DEFAULT_FP_FUSION" not in res.stderr  # the choice is explicit, so Triton does not warn
    return json.loads(out.read_text())


def test_every_launch_fits_every_architecture(rows):
    bad = [compile_check.format_row(r) for r in rows if not r["fits"]]
    assert not bad, "\n".join(bad)
    for r in rows:
        assert r["shared_bytes"] <= SHARED_MEMORY_LIMIT[int(r["arch"][3:])]
        assert r["registers"] is not None and r["spill_store_bytes"] is not None, r  # ptxas -v was read
        assert r["enable_fp_fusion"] is triton_conv.FP_FUSION


def test_the_compiled_set_covers_every_kernel_and_variant(rows):
    assert {r["arch"] for r in rows} == {f"sm_{a}" for a in compile_check.ARCHS}
    for arch in compile_check.ARCHS:
        mine = [r for r in rows if r["arch"] == f"sm_{arch}"]
        assert {r["kernel"] for r in mine} == {"_eqlr_conv_fwd", "_pixelnorm_finish", "_bias_act_bwd",
                                               "_sn_power_multi"}
        conv = [r["constexprs"] for r in mine if r["kernel"] == "_eqlr_conv_fwd"]
        assert {c["PIXELNORM"] for c in conv} == {0, 1, 2}  # off, in registers, split
        assert {c["KS"] for c in conv} == {1, 3, 4}
        assert any(c["UP"] == 2 for c in conv) and any(c["DOWN"] == 2 for c in conv)
        keys = [(r["kernel"], json.dumps(r["constexprs"], sort_keys=True), r["num_warps"], r["num_stages"])
                for r in mine]
        assert len(keys) == len(set(keys))  # each distinct configuration compiled once


def test_enumeration_matches_what_a_model_forward_launches(monkeypatch):
    """The compile check reads layer options off the modules; a real forward must launch nothing else."""
    import torch

    from faststeal.models import build_discriminator, build_generator

    specs, _ = compile_check.layer_specs(resolutions=(8,), widths=(8,), channels=(3,), latent_dim=8)
    launched = set()
    real = triton_conv.fwd_launches

    def spy(*args):
        launched.add(args[:-1])
        return real(*args)
    monkeypatch.setattr(triton_conv, "fwd_launches", spy)
    monkeypatch.setenv("FASTSTEAL_KERNELS", "triton")
    torch.manual_seed(0)
    g, d = build_generator("pggan", 8, 3, 8, 8), build_discriminator("pggan", 8, 3, 8)
    with torch.no_grad():
        for level in range(g.levels):  # every level, mid fade-in: every module runs
            g(torch.randn(2, 8), level=level, alpha=0.5)
            d(torch.randn(2, 3, 4 * 2 ** level, 4 * 2 ** level), level=level, alpha=0.5)
    assert launched == specs
