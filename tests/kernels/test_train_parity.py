"""Training with FASTSTEAL_KERNELS=triton (interpreter on CPU) follows FASTSTEAL_KERNELS=torch.

Tiny configs (8x8, width 8, batch 2, 2 steps). PGGAN is put at level 1 mid-fade so the fused upsample and
downsample convs, pixel norm, the 4x4 head and the gradient penalty's double backward all run; SNGAN's
discriminator runs spectral_norm_multi once per forward. float32 tolerance on weights after 2 Adam steps:
rtol=1e-4, atol=1e-5; losses rtol=1e-4.

One exception, not caused by the kernels: SNGAN generator conv biases that feed straight into batch norm
have an analytically zero gradient (~1e-7 of float noise), which Adam turns into +-lr steps in either run.
Those parameters are skipped, and the batch-norm running means that absorb them get atol=1e-3.
"""
import pytest
import torch

pytest.importorskip("triton")
train = pytest.importorskip("faststeal.train")
if torch.cuda.is_available():
    pytest.skip("the Trainer runs these tiny models on the CPU, where Triton needs the interpreter",
                allow_module_level=True)
from faststeal.data import ImageSet  # noqa: E402


def _train(arch, impl, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSTEAL_KERNELS", impl)
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=g), None, "fp", "tiny")
    cfg = train.TrainConfig(arch=arch, resolution=8, channels=1, latent_dim=8, width=8, batch=2, kimg=1.0,
                            phase_kimg=0.004, n_dis=1, seed=5)
    t = train.Trainer(cfg, data, checkpoint_path=tmp_path / f"{arch}-{impl}.pt", progress=False)
    if arch == "pggan":
        t.images_seen = 6  # level 1, alpha 0.5 on the first step
        assert t.level_alpha() == (1, 0.5)
    losses = [t.step() for _ in range(2)]
    return t, losses


@pytest.mark.parametrize("arch", ["pggan", "sngan"])
def test_training_matches_between_torch_and_triton(arch, monkeypatch, tmp_path):
    a, la = _train(arch, "torch", monkeypatch, tmp_path)
    b, lb = _train(arch, "triton", monkeypatch, tmp_path)
    for x, y in zip(la, lb):
        for key in x:
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5), key
    for net in ("G", "D"):
        ref_net, tri_net = getattr(a, net), getattr(b, net)
        noise_driven = {k for k, p in ref_net.named_parameters() if p.grad is not None and p.grad.abs().max() < 1e-6}
        assert len(noise_driven) <= (3 if (arch, net) == ("sngan", "G") else 0), noise_driven
        sa, sb = ref_net.state_dict(), tri_net.state_dict()
        for k in sa:
            if k in noise_driven:
                continue
            tol = dict(rtol=1e-4, atol=1e-3 if k.endswith("running_mean") else 1e-5)
            torch.testing.assert_close(sb[k], sa[k], **tol, msg=f"{net}.{k}")
