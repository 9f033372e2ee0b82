import pytest
import torch

from faststeal.checkpoint import load_checkpoint
from faststeal.data import ImageSet
from faststeal.train import Trainer, TrainConfig, TrainingDiverged, downscale_reals, pggan_schedule


def tiny_data(n=64, res=8):
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 1, res, res), dtype=torch.uint8, generator=g), None, "fp", "tiny")


def config(arch, **kw):
    base = dict(arch=arch, resolution=8, channels=1, latent_dim=8, width=8, batch=4, kimg=0.032,
                phase_kimg=0.008, snapshot_kimg=1.0, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_pggan_schedule_phases():
    sched = [pggan_schedule(k, 32, 100, 10) for k in (0, 9.9, 10, 15, 20, 29, 30, 35, 40, 55, 99)]
    assert sched[0] == (0, 1.0) and sched[1] == (0, 1.0)
    assert sched[2] == (1, 0.0) and sched[3] == (1, 0.5) and sched[4] == (1, 1.0)
    assert sched[6] == (2, 0.0) and sched[7] == (2, 0.5) and sched[8] == (2, 1.0)
    assert sched[9] == (3, 0.5) and sched[10] == (3, 1.0)


def test_reals_follow_the_generator_fade():
    x = torch.randn(2, 1, 32, 32)
    assert downscale_reals(x, 3, 1.0) is x
    torch.testing.assert_close(downscale_reals(x, 1, 1.0), torch.nn.functional.avg_pool2d(x, 4))
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 8), scale_factor=2)
    torch.testing.assert_close(downscale_reals(x, 1, 0.0), low)


@pytest.mark.parametrize("arch", ["pggan", "sngan"])
def test_same_seed_same_weights_and_exact_resume(tmp_path, arch):
    a = Trainer(config(arch), tiny_data(), checkpoint_path=tmp_path / "a.pt", progress=False)
    a.run()
    b = Trainer(config(arch), tiny_data(), checkpoint_path=tmp_path / "b.pt", progress=False)
    b.run()
    for (k, p), q in zip(a.G_ema.state_dict().items(), b.G_ema.state_dict().values()):
        assert torch.equal(p, q), k
    # Stop half way, resume in a fresh trainer, and land on the same weights.
    c = Trainer(config(arch, kimg=0.016), tiny_data(), checkpoint_path=tmp_path / "c.pt", progress=False)
    c.run()
    d = Trainer(config(arch), tiny_data(), checkpoint_path=tmp_path / "c.pt", progress=False)
    d.resume(tmp_path / "c.pt")
    d.run()
    for (k, p), q in zip(a.G.state_dict().items(), d.G.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=k)
    assert load_checkpoint(tmp_path / "c.pt")["progress"]["images_seen"] == a.images_seen


def test_pggan_grows_to_full_resolution_and_writes_grids(tmp_path):
    t = Trainer(config("pggan"), tiny_data(), checkpoint_path=tmp_path / "p.pt", run_dir=tmp_path / "run",
                progress=False)
    t.run()
    assert t.level_alpha() == (1, 1.0)
    assert (tmp_path / "run" / "grid.png").exists() and list((tmp_path / "run" / "grids").glob("*.png"))


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    t = Trainer(config("sngan"), tiny_data(), checkpoint_path=tmp_path / "s.pt", progress=False)
    t.step()
    t.save()
    good = (tmp_path / "s.pt").read_bytes()
    with torch.no_grad():
        t.G.dense.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="diverged.*last good checkpoint"):
        t.run()
    assert (tmp_path / "s.pt").read_bytes() == good


def test_resume_rejects_other_settings(tmp_path):
    t = Trainer(config("sngan"), tiny_data(), checkpoint_path=tmp_path / "s.pt", progress=False)
    t.save()
    other = Trainer(config("sngan", width=16), tiny_data(), checkpoint_path=tmp_path / "o.pt", progress=False)
    with pytest.raises(ValueError, match="width=8"):
        other.resume(tmp_path / "s.pt")
