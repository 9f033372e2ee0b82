"""The detector on a tiny target: calibrated over keys, finds a copy trained on marked images, not others."""
import pytest
import torch
from scipy.stats import kstest

from faststeal.attack import queryset
from faststeal.attack.thief import train_attack
from faststeal.checkpoint import load_generator
from faststeal.data import ImageSet
from faststeal.defense import parse_pipeline
from faststeal.ownership import VerifyError, detect, detect_many_keys
from faststeal.ownership.detect import DEFAULT_BAND, STOLEN_P, band_moments, exact_p_values, moment_image, normal_sf
from faststeal.sampling import generate
from faststeal.targets.oracle import TargetOracle
from faststeal.train import TrainConfig

OWNER = "owner-secret"


@pytest.fixture(scope="module")
def reference(tiny_target):
    """The owner's unmarked moment image of the tiny target."""
    return moment_image(generate(load_generator(tiny_target), 2000, seed=9))


@pytest.fixture(scope="module")
def copies(tiny_target, tmp_path_factory):
    """Two tiny copies distilled from 512 (code, image) pairs: one served with the mark, one without."""
    out = {}
    for name, spec in (("marked", f"watermark:key={OWNER},strength=16"), ("clean", "noise:sigma=0")):
        folder = tmp_path_factory.mktemp(name)
        oracle = TargetOracle(tiny_target, budget=512, seed=1, **parse_pipeline(spec).oracle_hooks())
        queryset.collect(oracle, folder / "q", 512, target=str(tiny_target), progress=False, knowledge="latents")
        q = queryset.load(folder / "q")
        cfg = TrainConfig(arch="fast", resolution=8, channels=1, latent_dim=8, width=8, batch=16, kimg=1,
                          snapshot_kimg=1, seed=0, distill=10.0, distill_only_kimg=1)
        train_attack(cfg, ImageSet(q.images, None, f"test-{name}", name, codes=q.codes), folder / "a.pt",
                     progress=False)
        out[name] = generate(load_generator(folder / "a.pt"), 1000, seed=3)
    return out


def test_null_is_uniform_over_keys(tiny_target, reference):
    images = generate(load_generator(tiny_target), 1000, seed=2)
    for ref in (None, reference):
        z = detect_many_keys(images, [f"null-{i}" for i in range(500)], reference=ref)
        p = [normal_sf(float(v)) for v in z]
        assert kstest(p, "uniform").pvalue > 0.05
        assert abs(float(z.mean())) < 0.15 and abs(float(z.std()) - 1) < 0.1


def test_exact_p_values_are_uniform_over_keys_and_agree_with_the_normal_tail(tiny_target, reference):
    images = generate(load_generator(tiny_target), 1000, seed=2)
    z, p = detect_many_keys(images, [f"null-{i}" for i in range(1000)], reference=reference, exact_draws=20_000)
    assert kstest(p.numpy(), "uniform").pvalue > 0.05
    # in the body of the distribution the normal tail is a good approximation of the counted one
    normal = torch.tensor([normal_sf(float(v)) for v in z], dtype=torch.float64)
    assert float((p - normal).abs().max()) < 0.03
    # the counted p never goes below its resolution, and a z beyond every draw gets exactly that
    c = band_moments(images, DEFAULT_BAND, reference)
    assert float(exact_p_values(c, 1e6, draws=999)[0]) == pytest.approx(1 / 1000)
    assert float(exact_p_values(c, -1e6, draws=999)[0]) == 1.0
    with pytest.raises(VerifyError, match="at least one draw"):
        exact_p_values(c, 0.0, draws=0)


def test_copy_of_marked_images_is_detected_and_clean_copy_is_not(copies, reference):
    for draws in (0, 10_000):                          # normal approximation, then the exact null
        marked = detect(copies["marked"], OWNER, reference=reference, exact_draws=draws)
        clean = detect(copies["clean"], OWNER, reference=reference, exact_draws=draws)
        assert marked.p_value < STOLEN_P and marked.verdict.startswith("MARKED")
        assert clean.p_value > 0.01 and clean.verdict.startswith("not marked")
        assert marked.null_draws == draws and marked.p_normal == normal_sf(marked.z)


def test_wrong_key_never_verifies(copies, reference):
    for images in copies.values():
        z = detect_many_keys(images, [f"wrong-{i}" for i in range(200)], reference=reference)
        assert float(z.max()) < 3.09          # p > 0.001 for every wrong key


def test_served_images_carry_the_mark_and_the_key_is_not_in_the_spec(tiny_target):
    p = parse_pipeline(f"watermark:key={OWNER},strength=4")
    served = TargetOracle(tiny_target, budget=300, **p.oracle_hooks()).query(300)
    plain = TargetOracle(tiny_target, budget=300).query(300)
    assert detect(served, OWNER, reference=moment_image(plain)).p_value < 1e-6
    assert OWNER not in p.spec() and "key=#" in p.spec()


def test_bad_inputs_are_one_line_errors(tiny_target):
    images = generate(load_generator(tiny_target), 50, seed=0)
    with pytest.raises(VerifyError, match="too few"):
        detect(images, OWNER)
    with pytest.raises(VerifyError, match="key is empty"):
        detect(generate(load_generator(tiny_target), 200, seed=0), "")
    with pytest.raises(VerifyError, match="constant"):
        detect(torch.full((200, 1, 8, 8), 7, dtype=torch.uint8), OWNER)
