"""`faststeal serve` a generator faststeal did not train, and steal it over HTTP, in every format."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from faststeal.cli import main

from .conftest import Server, add_key

FORMATS = ("python", "torchscript", "export", "onnx")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", FORMATS)
def test_serve_then_extract_over_http(dcgan_specs, kind, tmp_path):
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8))
    server = Server(dcgan_specs[kind], tmp_path / "ledger.sqlite", log=tmp_path / "server.log").start()
    try:
        token = add_key(tmp_path / "ledger.sqlite", "thief", 16)
        info = json.loads(CliRunner().invoke(main, ["info", server.url, "--api-key", token]).output)
        assert info["kind"] == "http" and info["resolution"] == 64 and not info["in_process"]
        res = CliRunner().invoke(main, [
            "extract", "--target", server.url, "--api-key", token, "--queries", "16", "--attack", "sngan",
            "--attack-kimg", "0.008", "--attack-width", "8", "--batch", "8", "--fid-n", "8", "--threads", "1",
            "--eval-data", str(real), "--out", str(tmp_path / "x")])
        assert res.exit_code == 0, res.output
        m = json.loads((tmp_path / "x" / "metrics.json").read_text())
        assert m["fidelity"] > 0 and m["accuracy"] > 0
        assert token not in (tmp_path / "x" / "config.json").read_text()
    finally:
        server.stop()
