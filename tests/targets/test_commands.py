"""Every command that takes a target, on a generator faststeal did not train, in every format (tiny sizes)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from faststeal.cli import main

FORMATS = ("python", "torchscript", "export", "onnx")
SIZES = ["--queries", "16", "--attack", "sngan", "--attack-kimg", "0.008", "--attack-width", "8", "--batch", "8",
         "--fid-n", "8"]


@pytest.fixture(scope="module")
def real64(tmp_path_factory):
    """Stand-in real data for the 64x64 RGB DCGAN (it records no training data): 32 random images."""
    path = tmp_path_factory.mktemp("real") / "real.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8))
    return str(path)


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def last_json(output: str) -> dict:
    """The JSON line a --json command prints (warnings on stderr may follow it)."""
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


@pytest.mark.parametrize("kind", FORMATS)
def test_info_sample_and_fid(dcgan_specs, kind, tmp_path, real64):
    spec = dcgan_specs[kind]
    info = json.loads(run("info", spec))
    assert info["kind"] == kind and info["resolution"] == 64 and info["channels"] == 3 and info["in_process"]
    assert info["probed"]["latent_shape"] == "(N, d, 1, 1)"
    out = run("sample", "--target", spec, "-n", 4, "--out", tmp_path / "grid.png")
    assert (tmp_path / "grid.png").exists() and "64x64" in out
    result = last_json(run("fid", f"gen:{spec}", real64, "-n", 8, "--json"))
    assert result["fid"] > 0 and result["n1"] == 8


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", FORMATS)
def test_extract_and_defend(dcgan_specs, kind, tmp_path, real64):
    spec = dcgan_specs[kind]
    run("extract", "--target", spec, *SIZES, "--curve-n", 0, "--eval-data", real64, "--out", tmp_path / "x")
    m = json.loads((tmp_path / "x" / "metrics.json").read_text())
    assert m["fidelity"] > 0 and m["accuracy"] > 0 and m["target_fid"] > 0 and m["fid_floor"] > 0
    for against in ("vs_target", "vs_real"):             # quality and coverage from the same feature rows
        assert set(m[against]) == {"precision", "recall", "density", "coverage"}
        assert 0 <= m[against]["precision"] <= 1 and 0 <= m[against]["coverage"] <= 1
    assert "recall" in (tmp_path / "x" / "report.md").read_text()
    config = json.loads((tmp_path / "x" / "config.json").read_text())
    assert config["options"]["target_info"]["kind"] == kind           # what was probed is recorded
    assert config["options"]["target_info"]["probed"]["output_range"] == "-1,1"
    run("defend", "--target", spec, "--defense", "noise:sigma=0.1", *SIZES, "--eval-data", real64,
        "--out", tmp_path / "d")
    d = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert [r["defense"] for r in d["settings"]] == ["none", "noise:sigma=0.1"]
    assert d["settings"][1]["changed_pixels"] > 0.5 and d["settings"][0]["fidelity"] > 0


@pytest.mark.parametrize("kind", FORMATS)
def test_verify_takes_a_foreign_suspect(dcgan_specs, kind):
    out = run("verify", "--suspect", dcgan_specs[kind], "--key", "owner-key", "-n", 100, "--exact-draws", 0,
              "--json")
    result = last_json(out)
    assert result["suspect"] == dcgan_specs[kind] and 0 <= result["p_value"] <= 1


def test_the_same_codes_give_the_same_served_images_in_every_format(dcgan_specs):
    from faststeal.targets import open_target

    images = [open_target(dcgan_specs[k]).oracle(12, seed=3).query(12) for k in FORMATS]
    for other in images[1:]:
        assert (other.int() - images[0].int()).abs().max() <= 1     # uint8 rounding of a <= 1e-5 difference


def test_target_errors_are_one_line_and_write_nothing(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not really onnx")
    res = CliRunner().invoke(main, ["extract", "--target", str(junk), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1
    assert not (tmp_path / "run").exists()
    res = CliRunner().invoke(main, ["transfer", "--source", str(junk), "--data", "fashion-mnist",
                                    "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "transfer fine-tunes a faststeal checkpoint" in res.output


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_128_pixel_grey_target_is_stolen_at_its_own_size(tmp_path):
    from pathlib import Path

    from faststeal.runs.extract import run_extract
    from faststeal.runs.options import ExtractOptions
    from faststeal.targets import open_target

    spec = f"py:{Path(__file__).parents[1] / 'foreign_generators.py'}:make_grey128"
    target = open_target(spec)
    assert (target.resolution, target.channels) == (128, 1)
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).integers(0, 256, (16, 128, 128), dtype=np.uint8))
    m = run_extract(ExtractOptions(target=spec, attack="sngan", queries=16, attack_kimg=0.008, attack_width=8,
                                   batch=8, fid_n=8, curve_n=0, eval_data=str(real), out=str(tmp_path / "x"),
                                   progress=False), target=target)
    assert m["fidelity"] > 0
    import torch

    assert torch.load(tmp_path / "x" / "attack.pt", weights_only=True)["config"]["resolution"] == 128


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_default_thief_of_a_64_pixel_colour_target_is_sized_for_it(dcgan_specs, tmp_path):
    out = run("extract", "--target", dcgan_specs["torchscript"], "--queries", 64, "--attack-kimg", 0.064,
              "--fid-n", 8, "--curve-n", 0, "--threads", 1, "--out", tmp_path / "x")
    assert "thief: dcgan GAN at 64x64x3, width 32, batch 64" in out      # said before the work starts
    m = json.loads((tmp_path / "x" / "metrics.json").read_text())
    assert m["attack"] == "dcgan" and (m["attack_settings"]["width"], m["attack_settings"]["batch"]) == (32, 64)
