"""`faststeal verify` end to end on the tiny target: verdict line, JSON, wrong-key null, one-line errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from faststeal.cli import main
from faststeal.defense import parse_pipeline
from faststeal.targets.oracle import TargetOracle


@pytest.fixture
def marked_npy(tiny_target, tmp_path):
    """600 images served with the mark, saved as the suspect's images (uint8 .npy)."""
    served = TargetOracle(tiny_target, budget=600, **parse_pipeline("watermark:key=k1,strength=8").oracle_hooks())
    path = tmp_path / "suspect.npy"
    np.save(path, served.query(600).numpy())
    return path


def run(*args):
    return CliRunner().invoke(main, ["verify", "--threads", "1", *map(str, args)])


def test_verify_finds_the_mark_with_the_right_key_only(marked_npy, tiny_target):
    right = run("--suspect", marked_npy, "--key", "k1", "--reference", tiny_target, "-n", 600, "--json")
    assert right.exit_code == 0, right.output
    got = json.loads(right.output.strip().splitlines()[-1])
    assert got["verdict"].startswith("MARKED") and got["p_value"] < 1e-3 and got["n"] == 600
    wrong = run("--suspect", marked_npy, "--key", "k2", "--reference", tiny_target, "-n", 600, "--json")
    assert wrong.exit_code == 0 and json.loads(wrong.output.strip().splitlines()[-1])["p_value"] > 1e-3


def test_verify_samples_a_checkpoint_and_checks_the_null(tiny_target):
    result = run("--suspect", tiny_target, "--key", "k1", "-n", 400, "--null-keys", 300, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output.strip().splitlines()[-1])
    assert got["null"]["keys"] == 300 and 0 <= got["null"]["ks_p"] <= 1
    assert got["verdict"].startswith(("not marked", "inconclusive"))


@pytest.mark.parametrize("args, message", [
    (["--suspect", "SUSPECT"], "--key: give the owner's key"),
    (["--suspect", "/nonexistent/model.pt", "--key", "k"], "model.pt: no such file"),
    (["--suspect", "/nonexistent/folder", "--key", "k"], "no such file or folder"),
    (["--suspect", "SUSPECT", "--key", "k", "-n", "10"], "--n: must be >= 100"),
    (["--suspect", "SMALL", "--key", "k"], "too few for a decision"),
    (["--suspect", "SUSPECT", "--key", "k", "--low", "5", "--high", "2"], "--low"),
    (["--suspect", "SUSPECT", "--key", "k", "--exact-draws", "-1"], "--exact-draws: must be >= 0"),
])
def test_bad_input_is_one_line(args, message, marked_npy, tmp_path):
    small = tmp_path / "small.npy"
    np.save(small, np.load(marked_npy)[:20])
    args = [str(marked_npy) if a == "SUSPECT" else str(small) if a == "SMALL" else a for a in args]
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning: the CPU is busy")]
    assert len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize("args, message", [
    ([], "--key: give the owner's key"),
    (["--key", "k", "--strength", "0"], "--strength: must be > 0"),
    (["--key", "k", "--limit", "0"], "--limit: must be >= 1"),
    (["--key", "k", "--verify-n", "10"], "--verify-n: must be >= 100"),
    (["--key", "k", "--member", "no-such-model"], "--member: no member named no-such-model; see --list-members"),
])
def test_verify_eval_rejects_bad_options_in_one_line(args, message, tmp_path):
    result = CliRunner().invoke(main, ["verify-eval", "--out", str(tmp_path / "e"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()


def test_verify_eval_lists_its_members(tmp_path):
    result = CliRunner().invoke(main, ["verify-eval", "--list-members", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0 and "fast-images-10k-seed-0" in result.output
    assert not (tmp_path / "e").exists()
