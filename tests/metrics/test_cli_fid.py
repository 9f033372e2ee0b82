"""`faststeal fid A B --json` end to end on small sources, and the torch fallback when DALI is absent."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from faststeal.cli import main
from faststeal.metrics import api, compute_stats, dali


def run(*args):
    res = CliRunner().invoke(main, ["fid", *args])
    assert res.exit_code == 0, res.output
    return res.stdout  # stdout only: warnings go to stderr, the JSON must be stdout's last line


def test_cli_json_then_stats_file_and_kid(tmp_path, fmnist_test):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, fmnist_test[:4])
    np.save(b, fmnist_test[10:14])
    out = run(str(a), str(b), "--n", "3", "--batch", "3", "--json", "--loader", "torch")
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) >= {"fid", "n1", "n2", "protocol"} and result["n1"] == result["n2"] == 3
    assert result["fid"] > 0 and result["biased"] is True
    assert f"FID {result['fid']:.4f}" in out and "n1=3" in out

    stats = compute_stats(str(a), n=3, batch=3, loader="torch")  # a cache hit, saved again as a stats file
    stats.save(tmp_path / "a_stats.npz")
    again = json.loads(run(str(tmp_path / "a_stats.npz"), str(b), "--n", "3", "--batch", "3", "--json",
                           "--loader", "torch").strip().splitlines()[-1])
    assert again["fid"] == pytest.approx(result["fid"], rel=1e-6)

    kid = json.loads(run(str(a), str(b), "--metric", "kid", "--batch", "4", "--json", "--loader", "torch")
                     .strip().splitlines()[-1])
    assert set(kid) >= {"kid", "n1", "n2", "protocol"} and kid["n1"] == 4 and np.isfinite(kid["kid"])


def test_cli_rejects_bad_sources(tmp_path):
    res = CliRunner().invoke(main, ["fid", str(tmp_path / "nope"), "fashion-mnist:test", "--n", "3"])
    assert res.exit_code != 0 and "no such file or folder" in res.output


def test_without_dali_auto_uses_torch(monkeypatch):
    monkeypatch.setattr(dali, "HAVE_DALI", False)
    assert api._loader("auto") == "torch"
    with pytest.raises(RuntimeError, match="DALI is not installed"):
        api._loader("dali")


def test_cli_too_few_images_and_damaged_arrays_are_one_line_errors(tmp_path, fmnist_test):
    (tmp_path / "one").mkdir()
    from PIL import Image

    Image.fromarray(fmnist_test[0]).save(tmp_path / "one" / "a.png")
    np.savez(tmp_path / "ok.npz", images=fmnist_test[:4])
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    for args, words in (([str(tmp_path / "one"), str(tmp_path / "ok.npz")], "needs at least 2"),
                        ([str(tmp_path / "cut.npz"), str(tmp_path / "ok.npz")], "truncated or corrupt")):
        res = CliRunner().invoke(main, ["fid", *args, "--loader", "torch"])
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
        assert words in lines[0]
