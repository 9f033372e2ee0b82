"""scripts/dcgan_target.py: a DCGAN trained on an image folder becomes a TorchScript target that faststeal
opens like any user's file, and an interrupted training resumes only with the settings it began with."""

import numpy as np
import pytest
from PIL import Image

from faststeal.targets import open_target


@pytest.fixture(scope="module")
def dcgan(load_script):
    return load_script("scripts/dcgan_target")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def test_trains_resumes_and_opens_as_a_probed_target(dcgan, folder, tmp_path, capsys):
    out = tmp_path / "g.ts"
    args = ["--data", str(folder), "--out", str(out), "--width", "4", "--nz", "8", "--batch", "8", "--threads", "1"]
    assert dcgan.main([*args, "--epochs", "1"]) == 0
    first = out.read_bytes()
    assert dcgan.main([*args, "--epochs", "2"]) == 0            # resumes after epoch 1, trains one more
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert out.read_bytes() != first
    target = open_target(str(out))
    assert (target.kind, target.resolution, target.channels, target.latent_dim) == ("torchscript", 64, 3, 8)
    images = target.sample(4, seed=0)
    assert images.shape == (4, 3, 64, 64) and images.float().std() > 0
    # The stored state belongs to these settings: another width is refused, nothing overwritten.
    assert dcgan.main([*args[:5], "8", *args[6:], "--epochs", "3"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_options_are_refused_before_any_work(dcgan, tmp_path, capsys):
    with pytest.raises(SystemExit):
        dcgan.main(["--data", "x", "--out", str(tmp_path / "g.ts"), "--epochs", "0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert dcgan.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "g.ts")]) == 2
