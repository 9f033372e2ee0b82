import pytest
import torch

from faststeal.checkpoint import load_checkpoint
from faststeal.data import ImageSet
from faststeal.train import TrainConfig, Trainer, TrainingDiverged, downscale_reals, lr_scale, pggan_schedule


def tiny_data(n=64, res=8):
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 1, res, res), dtype=torch.uint8, generator=g), None, "fp", "tiny")


def config(arch, **kw):
    base = dict(arch=arch, resolution=8, channels=1, latent_dim=8, width=8, batch=4, kimg=0.032,
                phase_kimg=0.008, snapshot_kimg=1.0, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_pggan_schedule_phases():
    sched = [pggan_schedule(k, 4, 100, 10) for k in (0, 9.9, 10, 15, 20, 29, 30, 35, 40, 55, 99)]
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


@pytest.mark.parametrize("arch", ["pggan", "sngan", "fast", "dcgan"])
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


@pytest.mark.parametrize("change", [dict(lr=5e-4), dict(batch=8), dict(seed=4), dict(augment="none")])
def test_resume_rejects_any_training_setting_but_length(tmp_path, change):
    t = Trainer(config("fast"), tiny_data(), checkpoint_path=tmp_path / "f.pt", progress=False)
    t.save()
    key = next(iter(change))
    other = Trainer(config("fast", **change), tiny_data(), checkpoint_path=tmp_path / "o.pt", progress=False)
    with pytest.raises(ValueError, match=f"trained with {key}=.*use the same options"):
        other.resume(tmp_path / "f.pt")
    longer = Trainer(config("fast", kimg=0.064, snapshot_kimg=2.0), tiny_data(), checkpoint_path=tmp_path / "l.pt",
                     progress=False)
    longer.resume(tmp_path / "f.pt")                 # length and snapshots may change


def test_the_adaptive_augmentation_resumes_exactly_and_is_part_of_the_settings(tmp_path):
    def probe(generator):
        return {"fidelity_fid": 1.0, "fidelity_kid": 0.0}

    probe.n = 4
    ada = dict(augment="translation,color,cutout", ada_target=0.6)
    a = Trainer(config("fast", kimg=0.064, **ada), tiny_data(), checkpoint_path=tmp_path / "a.pt", progress=False)
    a.ada.ramp_kimg, a.ada.p = 0.32, 0.5    # start half way, each update moves p by 0.05 (either way)
    a.run(probe=probe, probe_kimg=0.032)
    assert 0.29 < a.ada.p < 0.71 and a.ada.p != 0.5 and a.curve[-1]["augment_p"] == round(a.ada.p, 4)
    assert -1 <= a.curve[-1]["d_real_sign"] <= 1
    c = Trainer(config("fast", kimg=0.032, **ada), tiny_data(), checkpoint_path=tmp_path / "c.pt", progress=False)
    c.ada.ramp_kimg, c.ada.p = 0.32, 0.5
    c.run()
    d = Trainer(config("fast", kimg=0.064, **ada), tiny_data(), checkpoint_path=tmp_path / "c.pt", progress=False)
    d.ada.ramp_kimg = 0.32
    d.resume(tmp_path / "c.pt")
    d.run()
    assert d.ada.p == a.ada.p
    for (k, p), q in zip(a.G.state_dict().items(), d.G.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=k)
    plain = Trainer(config("fast", augment="translation,color,cutout"), tiny_data(), checkpoint_path=tmp_path / "o.pt",
                    progress=False)
    with pytest.raises(ValueError, match="trained with ada_target=0.6"):
        plain.resume(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="needs an augment policy"):
        Trainer(config("fast", augment="none", ada_target=0.6), tiny_data(), checkpoint_path=tmp_path / "n.pt",
                progress=False)


def test_resume_with_a_longer_run_keeps_pggan_growth_phases(tmp_path):
    t = Trainer(config("pggan", phase_kimg=None), tiny_data(), checkpoint_path=tmp_path / "p.pt", progress=False)
    t.save()                                          # two levels: phases of kimg / 4 = 0.008
    longer = Trainer(config("pggan", phase_kimg=None, kimg=0.064), tiny_data(), checkpoint_path=tmp_path / "q.pt",
                     progress=False)
    with pytest.raises(ValueError, match="pass --phase-kimg 0.008"):
        longer.resume(tmp_path / "p.pt")
    fixed = Trainer(config("pggan", phase_kimg=0.008, kimg=0.064), tiny_data(), checkpoint_path=tmp_path / "r.pt",
                    progress=False)
    fixed.resume(tmp_path / "p.pt")


def test_fast_recipe_uses_full_resolution_logistic_loss_and_lazy_r1(tmp_path, monkeypatch):
    from faststeal import losses

    calls = []
    real_r1 = losses.r1_penalty
    monkeypatch.setattr(losses, "r1_penalty", lambda *a, **k: calls.append(1) or real_r1(*a, **k))
    t = Trainer(config("fast"), tiny_data(), checkpoint_path=tmp_path / "f.pt", progress=False)
    assert t.level_alpha() == (None, 1.0) and t.settings["loss"] == "logistic-r1"
    for _ in range(17):
        t.step()
    assert len(calls) == 2                      # critic steps 0 and 16: every R1_EVERY-th
    assert t.sample_grid().shape[-1] == 8


def _pairs(n=64, res=8, latent=8):
    """Images made by a fixed random PGGAN from known codes: a stand-in for a target queried with chosen codes."""
    from faststeal.data import to_uint8
    from faststeal.models import build_generator

    torch.manual_seed(11)
    teacher = build_generator("pggan", res, 1, latent, 8).eval()
    codes = torch.randn(n, latent, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        images = to_uint8(teacher(codes))
    return ImageSet(images, None, "pairs", "pairs", codes=codes)


def test_distillation_lowers_the_paired_loss():
    data = _pairs()
    t = Trainer(config("fast", distill=10.0, kimg=10, batch=16), data, checkpoint_path="unused.pt", progress=False)
    first = []
    for _ in range(3):
        t.step()
        first.append(float(t.last_paired))
    for _ in range(60):
        t.step()
    last = []
    for _ in range(3):
        t.step()
        last.append(float(t.last_paired))
    assert sum(last) / 3 < 0.6 * sum(first) / 3, (first, last)


def test_the_perceptual_term_sees_only_the_images_it_is_given():
    from faststeal.metrics.perceptual import StemFeatures

    class Recorded(StemFeatures):
        """The real feature network, noting how many images each distance was taken on."""
        def __init__(self):
            super().__init__()
            self.sizes = []

        def distance(self, student, teacher):
            self.sizes.append((student.shape[0], teacher.shape[0]))
            return super().distance(student, teacher)

    data = _pairs(n=16, res=32)
    for k, want in ((0, 8), (3, 3)):
        features = Recorded()
        cfg = config("fast", resolution=32, distill=1.0, perceptual=1.0, perceptual_images=k, batch=8,
                     distill_only_kimg=0.008)
        t = Trainer(cfg, data, checkpoint_path="unused.pt", progress=False, features=features)
        t.step()        # a regression step
        t.step()        # an adversarial step with the paired loss
        assert features.sizes == [(want, want)] * 2
        assert t.settings["perceptual_images"] == k
    with pytest.raises(ValueError, match="perceptual_images"):
        Trainer(config("fast", resolution=32, distill=1.0, perceptual=1.0, perceptual_images=9, batch=8), data,
                checkpoint_path="unused.pt", progress=False, features=Recorded())


def test_fresh_fakes_show_the_discriminator_codes_beyond_the_bought_ones():
    data = _pairs()
    bought = {tuple(c.tolist()) for c in data.codes}

    def codes_seen(fresh_fakes):
        t = Trainer(config("fast", distill=1.0, distill_only_kimg=0.004, fresh_fakes=fresh_fakes), data,
                    checkpoint_path="unused.pt", progress=False)
        seen = []
        t.G.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        t.step()        # one regression step (4 images): the bought codes only
        t.step()        # one adversarial step: D's fakes, then G's pass
        return [[tuple(c.tolist()) in bought for c in codes] for codes in seen]

    assert codes_seen(False) == [[True] * 4] * 3
    regression, critic, generator = codes_seen(True)
    assert regression == [True] * 4 and critic == [False] * 4
    assert generator == [True] * 4 + [False] * 4      # the paired L1 on bought codes, D's verdict on fresh ones


def test_lr_scale_falls_along_a_half_cosine():
    assert lr_scale(0.0, 0.9) == 1.0
    assert lr_scale(1.0, 0.9) == pytest.approx(0.1)
    assert lr_scale(0.5, 0.9) == pytest.approx(0.55)
    assert lr_scale(2.0, 0.5) == pytest.approx(0.5) and lr_scale(-1.0, 0.5) == 1.0     # clamped
    falling = [lr_scale(p / 10, 1.0) for p in range(11)]
    assert falling == sorted(falling, reverse=True)
    assert all(lr_scale(p / 10, 0.0) == 1.0 for p in range(11))


def _rates(trainer, steps):
    """The learning rate each step trained with (G's and D's must agree)."""
    seen = []
    for _ in range(steps):
        trainer.step()
        g, d = trainer.opt_G.param_groups[0]["lr"], trainer.opt_D.param_groups[0]["lr"]
        assert g == d
        seen.append(g)
    return seen


def test_lr_decay_falls_over_each_distillation_phase_and_over_a_plain_run():
    # 8 steps of 4 images: 4 regression steps, then 4 adversarial ones, each phase falling from lr on its own
    cfg = config("fast", distill=1.0, distill_only_kimg=0.016, kimg=0.032, lr=0.01, lr_decay=0.9)
    rates = _rates(Trainer(cfg, _pairs(), checkpoint_path="unused.pt", progress=False), 8)
    want = [0.01 * lr_scale(i / 4, 0.9) for i in range(4)] * 2
    assert rates == pytest.approx(want)
    plain = _rates(Trainer(config("fast", lr=0.01, lr_decay=0.5), tiny_data(), checkpoint_path="unused.pt",
                           progress=False), 8)
    assert plain == pytest.approx([0.01 * lr_scale(i / 8, 0.5) for i in range(8)])
    flat = _rates(Trainer(config("fast", lr=0.01), tiny_data(), checkpoint_path="unused.pt", progress=False), 3)
    assert flat == [0.01] * 3


def test_distillation_s_paired_phase_takes_its_own_rate_and_the_adversarial_phase_keeps_lr():
    # 4 regression steps at distill_lr, then 4 adversarial ones at lr; with a fall, each from its own rate
    cfg = config("fast", distill=1.0, distill_only_kimg=0.016, kimg=0.032, lr=0.01, distill_lr=0.03)
    assert _rates(Trainer(cfg, _pairs(), checkpoint_path="unused.pt", progress=False), 8) == [0.03] * 4 + [0.01] * 4
    cfg = config("fast", distill=1.0, distill_only_kimg=0.016, kimg=0.032, lr=0.01, distill_lr=0.03, lr_decay=0.5)
    rates = _rates(Trainer(cfg, _pairs(), checkpoint_path="unused.pt", progress=False), 8)
    assert rates == pytest.approx([r * lr_scale(i / 4, 0.5) for r in (0.03, 0.01) for i in range(4)])
    for bad in (0.0, -1e-3):
        with pytest.raises(ValueError, match="distill_lr"):
            Trainer(config("fast", distill=1.0, distill_only_kimg=0.016, kimg=0.032, distill_lr=bad), _pairs(),
                    checkpoint_path="unused.pt", progress=False)


def test_under_a_time_budget_the_phases_follow_the_clock():
    cfg = config("fast", distill=1.0, distill_only_kimg=0.75 * 100, kimg=100, minutes=10, lr_decay=0.9)
    t = Trainer(cfg, _pairs(), checkpoint_path="unused.pt", progress=False)
    t.train_seconds = 0.5 * 600           # half the budget gone, few images seen: the clock decides
    assert t.run_progress() == pytest.approx(0.5)
    assert t.in_paired_phase() and t.phase_progress() == pytest.approx(0.5 / 0.75)
    t.train_seconds = 0.875 * 600         # halfway through the adversarial quarter
    assert not t.in_paired_phase() and t.phase_progress() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lr_decay"):
        Trainer(config("fast", lr_decay=1.5), tiny_data(), checkpoint_path="unused.pt", progress=False)


def test_distillation_needs_codes():
    with pytest.raises(ValueError, match="latent codes"):
        Trainer(config("fast", distill=1.0), tiny_data(), checkpoint_path="unused.pt", progress=False)


def test_probe_points_are_monotone_in_images_seen_and_survive_a_resume(tmp_path):
    def probe(generator):
        return {"fidelity_fid": 1.0, "fidelity_kid": 0.0}

    probe.n = 4
    t = Trainer(config("fast", kimg=0.064, snapshot_kimg=0.032), tiny_data(), checkpoint_path=tmp_path / "p.pt",
                progress=False)
    t.run(probe=probe, probe_kimg=0.016)
    seen = [p["images_seen"] for p in t.curve]
    assert seen == sorted(seen) and len(set(seen)) == len(seen) and seen[0] == 0 and seen[-1] == 64
    assert all(a["train_seconds"] <= b["train_seconds"] for a, b in zip(t.curve, t.curve[1:]))
    longer = Trainer(config("fast", kimg=0.096, snapshot_kimg=0.032), tiny_data(), checkpoint_path=tmp_path / "p.pt",
                     progress=False)
    longer.resume(tmp_path / "p.pt")
    longer.run(probe=probe, probe_kimg=0.016)
    assert longer.curve[:len(t.curve)] == t.curve and longer.curve[-1]["images_seen"] == 96


def test_under_a_time_budget_probes_and_snapshots_are_spaced_in_minutes(tmp_path, monkeypatch):
    # each step "takes" 3 s on a fake clock; a 2-minute budget is 40 steps (160 images), far below the kimg cap,
    # so marks spaced in images alone would never come: they come every quarter (probes) and half (snapshots)
    import types

    import faststeal.train as train_module

    clock = iter(range(0, 10_000, 3))
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))

    def probe(generator):
        return {"fidelity_fid": 1.0, "fidelity_kid": 0.0}

    probe.n = 4
    t = Trainer(config("fast", kimg=100.0, snapshot_kimg=50.0, minutes=2.0), tiny_data(),
                checkpoint_path=tmp_path / "m.pt", progress=False)
    saved = []
    monkeypatch.setattr(t, "snapshot", lambda: saved.append(t.train_seconds))
    result = t.run(probe=probe, probe_kimg=25.0)
    assert result["stopped"] == "minutes" and t.images_seen == 160
    assert [p["train_seconds"] for p in t.curve] == [0, 30, 60, 90, 120]
    assert saved == [60, 120]             # half way, then the end


# ----- data parallel (torchrun) -----------------------------------------------------------------------
def _steps_then_resume(arch, folder, first, then):
    """``first`` steps, a checkpoint, a fresh Trainer resumed from it, ``then`` more steps (in float64)."""
    from faststeal import distributed

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(7)
    data = tiny_data(64, 16)
    cfg = config(arch, resolution=16, batch=8, n_dis=2, phase_kimg=0.032, kimg=1.0)
    path = f"{folder}/run.pt"
    t = Trainer(cfg, data, checkpoint_path=path, progress=False)
    for _ in range(first):
        t.step()
    t.save()
    t = Trainer(cfg, data, checkpoint_path=path, progress=False)
    t.resume(path)
    for _ in range(then):
        t.step()
    return {"rank": distributed.rank(), "level": t.level_alpha(), "seen": t.images_seen,
            "losses": t.last_losses, **{k: {n: v.clone() for n, v in m.state_dict().items()}
                                        for k, m in (("G", t.G), ("G_ema", t.G_ema), ("D", t.D))}}


def _single(arch, steps):
    torch.manual_seed(7)
    t = Trainer(config(arch, resolution=16, batch=8, n_dis=2, phase_kimg=0.032, kimg=1.0), tiny_data(64, 16),
                checkpoint_path="unused.pt", progress=False)
    for _ in range(steps):
        t.step()
    return t


def _compared(arch, key, name):
    """Entries fixed by the data. In the SNGAN generator every bias feeds a batch norm, which cancels it: its
    true gradient is zero, so Adam turns float noise into lr-sized steps that differ between any two runs.
    Those biases and the running means that absorb them are checked through the outputs instead."""
    return not (arch == "sngan" and key != "D" and (name.endswith(".bias") and "bn" not in name
                                                   or name.endswith("running_mean")))


@pytest.mark.parametrize("arch", ["pggan", "sngan"])
def test_two_ranks_train_the_single_process_model(tmp_path, arch):
    """Global batch 8 on 2 gloo ranks (4 each), across a PGGAN phase change and a resume, equals one process:
    weights, EMA, spectral-norm vectors and batch-norm statistics, up to float rounding.

    Both sides train in float64. In float32 the rank split changes summation order, and six Adam steps through
    batch norm over 4 images amplify that rounding to ~1e-4 by an amount that depends on the CPU's
    instruction set; in float64 the same amplification stays below 1e-9 on any CPU, so a real divergence
    (a wrong slice, a missing all-reduce: differences of 1e-2 and more) cannot hide under the tolerance."""
    from multiproc import run_ranks

    from faststeal.models import build_generator

    torch.set_num_threads(1)
    ranks = run_ranks(_steps_then_resume, arch, str(tmp_path), 3, 3, tmp_path=tmp_path)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        one = _single(arch, 6)
    finally:
        torch.set_default_dtype(previous)
    a, b = ranks
    for key in ("G", "G_ema", "D"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs between ranks"
        for name, value in getattr(one, key).state_dict().items():
            if not _compared(arch, key, name):
                continue
            if value.is_floating_point():
                assert torch.allclose(a[key][name], value, rtol=1e-8, atol=1e-9), \
                    f"{key}.{name}: max diff {(a[key][name] - value).abs().max():.2e}"
            else:
                assert torch.equal(a[key][name], value), f"{key}.{name}"
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    level, alpha = one.level_alpha()
    kw = {} if level is None else {"level": level, "alpha": alpha}
    for key in ("G", "G_ema"):
        twin = build_generator(arch, 16, 1, 8, 8).double()
        twin.load_state_dict(a[key])
        with torch.no_grad():
            ref, got = getattr(one, key).train()(z, **kw), twin.train()(z, **kw)
        assert torch.allclose(got, ref, atol=1e-8), f"{key} outputs: max diff {(got - ref).abs().max():.2e}"
    assert a["seen"] == one.images_seen == 6 * 16 and a["level"] == one.level_alpha()
    if arch == "pggan":
        assert one.level_alpha()[0] >= 1          # the run crossed at least one growing phase
    assert a["losses"] == pytest.approx(one.last_losses, rel=1e-6, abs=1e-7)   # losses are reported as float32


def test_a_time_budget_stops_training_and_says_so(tmp_path):
    from faststeal.attack.thief import train_attack

    data = ImageSet(torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8), None, "noise", "noise")
    config = TrainConfig(arch="sngan", resolution=8, channels=1, latent_dim=8, width=8, batch=8, kimg=1000.0,
                         minutes=0.02, snapshot_kimg=1000.0)
    first = train_attack(config, data, tmp_path / "a.pt", progress=False)
    assert first["stopped"] == "minutes" and 0 < first["kimg"] < 1000 and first["train_seconds"] >= 1.2
    again = train_attack(config, data, tmp_path / "a.pt", progress=False)      # finished: reused, not resumed
    assert again["kimg"] == first["kimg"] and again["stopped"] == "minutes"
    longer = TrainConfig(**{**config.__dict__, "minutes": 0.03})
    more = train_attack(longer, data, tmp_path / "a.pt", progress=False)       # a bigger budget resumes it
    assert more["kimg"] > first["kimg"] and more["train_seconds"] >= 1.8
    # the threads the run had, averaged over its training time, survive the reuse and the resume
    threads = torch.get_num_threads()
    assert first["threads"] == again["threads"] == pytest.approx(threads) and more["threads"] == pytest.approx(threads)


def test_distillation_keeps_its_share_of_a_time_budget(tmp_path):
    data = ImageSet(torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8), None, "noise", "noise",
                    codes=torch.randn(16, 8))
    config = TrainConfig(arch="sngan", resolution=8, channels=1, latent_dim=8, width=8, batch=8, kimg=100.0,
                         distill=1.0, distill_only_kimg=75.0, minutes=1.0)
    t = Trainer(config, data, checkpoint_path=tmp_path / "d.pt", progress=False)
    assert t.in_paired_phase()
    t.train_seconds = 44.0
    assert t.in_paired_phase()
    t.train_seconds = 46.0                         # 75% of the minute gone: the adversarial phase starts
    assert not t.in_paired_phase()


def test_bf16_autocast_trains_with_float32_weights_and_is_part_of_the_settings(tmp_path):
    t = Trainer(config("fast", precision="bf16", resolution=16, width=8), tiny_data(res=16),
                checkpoint_path=tmp_path / "b.pt", progress=False)
    t.run()
    assert all(p.dtype == torch.float32 for p in t.G.parameters()) and t.steps > 0
    assert all(torch.isfinite(p).all() for p in t.G_ema.parameters())
    plain = Trainer(config("fast", resolution=16, width=8), tiny_data(res=16), checkpoint_path=tmp_path / "p.pt",
                    progress=False)
    plain.run()
    assert any(not torch.equal(a, b) for a, b in zip(t.G.parameters(), plain.G.parameters()))   # it did change
    with pytest.raises(ValueError, match="precision=bf16"):
        Trainer(config("fast", resolution=16, width=8), tiny_data(res=16), checkpoint_path="x.pt",
                progress=False).resume(tmp_path / "b.pt")
    with pytest.raises(ValueError, match="precision must be one of"):
        Trainer(config("fast", precision="fp8"), tiny_data(), checkpoint_path="x.pt", progress=False)


def test_bf16_is_native_only_on_cpus_with_bf16_instructions(monkeypatch):
    from faststeal.train import native_bf16

    for caps, native in (({"amx_bf16": True, "avx512_bf16": True}, True), ({"avx512_bf16": True}, True),
                         ({"avx512_bf16": False, "avx512f": True}, False), ({"avx2": True}, False), ({}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        assert native_bf16(torch.device("cpu")) is native


def test_bf16_autocast_keeps_the_fast_generator_close_to_float32():
    """The fast path (bf16 autocast) against its reference (float32) on the thief's 64x64 RGB generator."""
    from faststeal.models import build_generator

    torch.manual_seed(0)
    G = build_generator("fast", 64, 3, 128, 64).eval()
    z = torch.randn(8, 128)
    with torch.no_grad():
        reference = G(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = G(z).float()
    error = (fast - reference).abs().mean() / reference.abs().mean()
    assert error < 0.05, f"bf16 output differs from float32 by {error:.3f} of its mean magnitude"
