import pickle

import pytest
import torch

import faststeal
from faststeal.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, slim_checkpoint
from faststeal.models import build_discriminator, build_generator


def make_state(arch="pggan"):
    config = dict(arch=arch, resolution=32, channels=1, latent_dim=8, width=8)
    g, d = build_generator(arch, 32, 1, 8, 8), build_discriminator(arch, 32, 1, 8)
    return {"config": config, "G": g.state_dict(), "G_ema": g.state_dict(), "D": d.state_dict(),
            "progress": {"kimg": 1.5}, "data_fingerprint": "abc"}, g


@pytest.mark.parametrize("arch", ["pggan", "sngan"])
def test_round_trip_and_weights_only(tmp_path, arch):
    state, g = make_state(arch)
    path = save_checkpoint(state, tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "faststeal-checkpoint" and raw["config"]["arch"] == arch
    gen = faststeal.load_generator(path)
    assert gen.latent_dim == 8 and gen.resolution == 32 and not gen.training
    z = torch.randn(3, 8)
    g.eval()
    torch.testing.assert_close(gen(z), g(z).clamp(-1, 1))
    assert faststeal.load_discriminator(path)(gen(z)).shape == (3,)
    with pytest.raises(ValueError, match=r"z must have shape \(N, 8\)"):
        gen(torch.randn(3, 9))


def test_slim_fp16_checkpoint_still_loads(tmp_path):
    state, g = make_state("sngan")
    slim = slim_checkpoint(state)
    assert "G" not in slim and slim["G_ema"]["dense.weight"].dtype == torch.float16
    path = save_checkpoint(slim, tmp_path / "s.pt")
    g.eval()
    z = torch.randn(2, 8)
    torch.testing.assert_close(faststeal.load_generator(path)(z), g(z), atol=5e-3, rtol=5e-3)


def test_bad_files_get_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "trunc.pt"
    state, _ = make_state()
    good = save_checkpoint(state, tmp_path / "good.pt")
    truncated.write_bytes(good.read_bytes()[:2000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    for path, pattern in [(junk, "not a readable"), (truncated, "not a readable"),
                          (foreign, "not a faststeal checkpoint"), (evil, "not a readable"),
                          (tmp_path / "missing.pt", "no such checkpoint")]:
        with pytest.raises(CheckpointError, match=pattern) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="unknown built-in"):
        load_checkpoint("builtin:nope")


def test_nan_weights_and_a_broken_config_are_refused(tmp_path):
    state, _ = make_state()
    state["G_ema"] = {k: v.clone() for k, v in state["G_ema"].items()}
    next(v for v in state["G_ema"].values() if v.is_floating_point()).fill_(float("nan"))
    nan = save_checkpoint(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN or infinite") as info:
        faststeal.load_generator(nan)
    assert "\n" not in str(info.value)
    state, _ = make_state()
    state["config"] = {**state["config"], "arch": "nosuch", "width": "wide"}
    broken = save_checkpoint(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="config does not describe a network"):
        faststeal.load_generator(broken)
    state, _ = make_state()
    del state["config"]["latent_dim"]
    with pytest.raises(CheckpointError, match="config does not describe a network"):
        faststeal.load_generator(save_checkpoint(state, tmp_path / "nolatent.pt"))
