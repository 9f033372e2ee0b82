"""The commands' options: defaults (a time budget only when the user names no length), building them from
click's parameters, and each rule refusing a bad value with the flag named."""
import inspect

import pytest

from faststeal.errors import OptionError
from faststeal.ownership.verify import MIN_IMAGES, verify
from faststeal.runs.options import (
    DEFAULT_ATTACK_KIMG,
    DEFAULT_MINUTES,
    AttackOptions,
    ExtractOptions,
    FidOptions,
    VerifyOptions,
    knowledge_settings,
)
from faststeal.runs.train_target import TrainTargetOptions


def sized(resolution=32, target_arch=None, **kw) -> AttackOptions:
    opts = AttackOptions(target="t", **kw)
    opts.sized_for(resolution, target_arch)
    return opts


def test_no_length_given_means_the_kimg_cap_and_the_time_budget():
    opts = ExtractOptions(target="builtin:pggan-fmnist32")
    assert not opts.sized and opts.attack_kimg is None       # left open until the target's size is known
    opts.sized_for(32)
    assert (opts.attack_kimg, opts.minutes) == (DEFAULT_ATTACK_KIMG, DEFAULT_MINUTES)


def test_a_given_length_is_reproduced_exactly_and_a_given_budget_is_kept():
    assert sized(attack_kimg=80.0).minutes is None
    assert sized(minutes=5.0).minutes == 5.0
    assert sized(minutes=5.0).attack_kimg == DEFAULT_ATTACK_KIMG


def test_the_thief_is_sized_for_the_target_unless_told():
    small, large = sized(32), sized(64)
    assert (small.attack, small.attack_width, small.batch) == ("fast", 64, 16)
    assert (large.attack, large.attack_width, large.batch) == ("dcgan", 32, 64)
    assert (large.attack_kimg, large.minutes) == (400.0, DEFAULT_MINUTES)     # the time budget binds first
    assert sized(128).attack == "dcgan"
    # above 32 pixels the thief follows the family of a target faststeal trained; a foreign one gets a DCGAN
    assert [sized(64, arch).attack for arch in ("pggan", "sngan", "dcgan", "torchscript", None)] == \
        ["fast", "fast", "dcgan", "dcgan", "dcgan"]
    assert sized(32, "dcgan").attack == "fast"
    big = sized(64, "pggan")
    assert (big.attack_width, big.batch, big.attack_kimg, big.minutes) == (64, 16, 200.0, DEFAULT_MINUTES)
    assert sized(32).attack_kimg == sized(64, attack="fast").attack_kimg == DEFAULT_ATTACK_KIMG
    # a named architecture keeps its own sizes at any resolution; a named width or batch is kept
    assert (sized(64, attack="fast").attack_width, sized(64, attack="fast").batch) == (64, 16)
    assert (sized(32, attack="sngan").batch, sized(64, attack_width=48).attack_width) == (32, 48)
    once = sized(64)
    once.sized_for(32)                              # idempotent: the first sizing stands
    assert once.attack == "dcgan" and once.attack_width == 32


def test_the_large_fast_thief_s_paired_phase_steps_faster_with_chosen_latents_only():
    assert sized(64, "pggan", knowledge="latents").distill_lr == 4e-3
    assert sized(64, "pggan").distill_lr is None                                  # no paired phase
    assert sized(32, knowledge="latents").distill_lr is None                      # the 32x32 thief unchanged
    assert sized(64, "pggan", knowledge="latents", attack="fast").distill_lr is None     # a named thief: its own
    assert sized(64, "dcgan", knowledge="latents").distill_lr is None
    assert sized(64, "pggan", knowledge="latents", distill_lr=1e-3).distill_lr == 1e-3   # a given rate is kept


def test_the_large_fast_thief_s_discriminator_joins_halfway():
    assert sized(64, "pggan", knowledge="latents").distill_only == 0.5
    assert sized(32, knowledge="latents").distill_only == 0.75                    # the 32x32 thief unchanged
    assert sized(64, "pggan", knowledge="latents", attack="fast").distill_only == 0.75   # a named thief: its own
    assert sized(64, "dcgan", knowledge="latents").distill_only == 0.75
    assert sized(64, "pggan").distill_only is None                                # no paired phase
    assert sized(64, "pggan", knowledge="latents", distill_only=0.75).distill_only == 0.75   # a given share is kept
    # every size given on the command line but the share: the share is still filled in
    given = dict(attack="fast", attack_width=64, batch=16, attack_kimg=10.0, attack_precision="float32")
    assert sized(64, "pggan", knowledge="latents", **given).distill_only == 0.75


def test_the_large_fast_thief_on_images_alone_adapts_a_wider_augmentation():
    images = sized(64, "pggan")
    assert (images.augment, images.ada_target) == ("translation,color,cutout", 0.6)
    images.check()                                                  # a policy to adapt: accepted
    # chosen latents, the 32x32 thief, a DCGAN thief and a named architecture keep their own (fixed) policy
    for opts in (sized(64, "pggan", knowledge="latents"), sized(32), sized(64, "dcgan"),
                 sized(64, "pggan", attack="fast")):
        assert (opts.augment, opts.ada_target) == (None, 0.0)
    # a given policy or a given target is the user's choice: the size fills in neither
    assert (sized(64, "pggan", augment="translation").ada_target, sized(64, "pggan", augment="none").ada_target) \
        == (0.0, 0.0)
    assert (sized(64, "pggan", ada_target=0.0).augment, sized(64, "pggan", ada_target=0.8).ada_target) == (None, 0.8)


def test_the_paired_share_is_sized_before_the_knowledge_settings_read_it():
    # the ownership evaluation builds its thieves' options without sizing them first
    opts = AttackOptions(target="t", knowledge="latents", attack="fast", attack_kimg=10.0)
    settings = knowledge_settings(opts, {"resolution": 32, "latent_dim": 16, "arch": "pggan"})
    assert settings["distill_only_kimg"] == 7.5 and settings["latent_dim"] == 16


def test_the_large_fast_thief_trains_in_bf16_only_where_the_hardware_runs_it_natively(monkeypatch):
    from faststeal.runs import options

    for native in (True, False):
        monkeypatch.setattr(options, "native_bf16", lambda device, native=native: native)
        assert sized(64, "pggan").attack_precision == ("bf16" if native else "float32")
        # the 32x32 default, a DCGAN thief and a named architecture were measured in float32 and keep it
        assert {sized(32).attack_precision, sized(64, "dcgan").attack_precision,
                sized(64, "pggan", attack="fast").attack_precision} == {"float32"}
        assert sized(64, "pggan", attack_precision="float32").attack_precision == "float32"
        assert sized(32, attack_precision="bf16").attack_precision == "bf16"     # asked for, kept


def test_perceptual_images_needs_the_perceptual_term_and_fits_the_batch():
    with pytest.raises(OptionError, match="--perceptual W") as err:
        AttackOptions(target="t", knowledge="latents", perceptual_images=4).check()
    assert err.value.flag == "--perceptual-images"
    with pytest.raises(OptionError, match="more than the batch"):
        AttackOptions(target="t", knowledge="latents", perceptual=1.0, perceptual_images=9, batch=8).check()
    with pytest.raises(OptionError, match="must be"):
        AttackOptions(target="t", knowledge="latents", perceptual=1.0, perceptual_images=-1).check()
    AttackOptions(target="t", knowledge="latents", perceptual=1.0, perceptual_images=4).check()


def test_distill_only_is_a_fraction():
    for bad in (-0.5, 1.2):
        with pytest.raises(OptionError, match="between 0") as err:
            AttackOptions(target="t", knowledge="latents", distill_only=bad).check()
        assert err.value.flag == "--distill-only"
    AttackOptions(target="t", knowledge="latents", distill_only=0.5).check()
    with pytest.raises(OptionError, match="--knowledge latents") as err:      # images have no paired phase
        AttackOptions(target="t", distill_only=0.5).check()
    assert err.value.flag == "--distill-only"


def test_the_codes_of_distillation_s_fakes_need_chosen_latents_and_reach_the_training_config():
    for given, flag in ((True, "--fresh-fakes"), (False, "--paired-fakes")):
        with pytest.raises(OptionError, match="--knowledge latents") as err:
            AttackOptions(target="t", fresh_fakes=given).check()
        assert err.value.flag == flag
        opts = AttackOptions(target="t", knowledge="latents", fresh_fakes=given)
        opts.check()
        assert knowledge_settings(opts, {"resolution": 64, "latent_dim": 16, "arch": "pggan"})["fresh_fakes"] is given
    assert "fresh_fakes" not in knowledge_settings(AttackOptions(target="t"), {"resolution": 64, "arch": "pggan"})


def test_the_paired_phase_s_learning_rate_is_positive_and_needs_chosen_latents():
    with pytest.raises(OptionError, match="--knowledge latents") as err:
        AttackOptions(target="t", distill_lr=4e-3).check()
    assert err.value.flag == "--distill-lr"
    with pytest.raises(OptionError) as err:
        AttackOptions(target="t", knowledge="latents", distill_lr=0.0).check()
    assert err.value.flag == "--distill-lr"
    AttackOptions(target="t", knowledge="latents", distill_lr=4e-3).check()


def test_lr_decay_is_a_fraction():
    for bad in (-0.1, 1.5):
        with pytest.raises(OptionError, match="between 0") as err:
            AttackOptions(target="t", lr_decay=bad).check()
        assert err.value.flag == "--lr-decay"
    AttackOptions(target="t", lr_decay=0.9).check()


def test_the_adaptive_augmentation_needs_a_target_share_and_a_policy_to_adapt():
    for bad in (-0.1, 1.0):
        with pytest.raises(OptionError, match="between 0 and 1") as err:
            AttackOptions(target="t", ada_target=bad).check()
        assert err.value.flag == "--ada-target"
    for no_policy in (dict(augment="none"), dict(attack="pggan")):      # named none, or the thief's default none
        with pytest.raises(OptionError, match="give --augment too") as err:
            AttackOptions(target="t", ada_target=0.6, **no_policy).check()
        assert err.value.flag == "--ada-target"
    AttackOptions(target="t", ada_target=0.6, augment="translation,color,cutout").check()
    AttackOptions(target="t", ada_target=0.6, attack="fast").check()        # the fast thief's translation


def test_options_take_clicks_parameters_and_gather_the_target_hints():
    params = {"a": "fashion-mnist", "b": "gen:g.onnx", "n": 100, "metric": "all", "target_latent_dim": 64,
              "output_range": None, "num_classes": 0, "threads": 2}       # threads belongs to the CLI, not fid
    opts = FidOptions.from_params(params)
    assert (opts.a, opts.n, opts.metric) == ("fashion-mnist", 100, "all")
    assert opts.target_hints == {"latent_dim": 64, "output_range": None, "num_classes": 0}
    assert FidOptions.from_params({"a": "x", "b": "y"}).target_hints is None


@pytest.mark.parametrize("bad, flag", [
    ({"n": 1}, "--n"), ({"ci": 1.5}, "--ci"), ({"ci": 0.9, "metric": "prdc"}, "--ci"),
    ({"resamples": 1}, "--bootstrap"),
])
def test_fid_options_refuse_bad_values_naming_the_flag(bad, flag):
    with pytest.raises(OptionError) as err:
        FidOptions(a="x", b="y", **bad).check()
    assert err.value.flag == flag


@pytest.mark.parametrize("bad, flag", [
    ({"key": None}, "--key"), ({"n": 10}, "--n"), ({"low": 8.0, "high": 1.0}, "--low"),
    ({"null_keys": -1}, "--null-keys"),
])
def test_verify_options_refuse_bad_values_naming_the_flag(bad, flag):
    with pytest.raises(OptionError) as err:
        VerifyOptions(**({"suspect": "s", "key": "K"} | bad)).check(min_images=MIN_IMAGES)
    assert err.value.flag == flag


def test_verify_options_pass_everything_but_suspect_and_key_to_the_detector():
    opts = VerifyOptions(suspect="s", key="K", n=300, low=2.0)
    bound = inspect.signature(verify).bind("s", "K", **opts.verify_kwargs())
    assert bound.arguments["n"] == 300 and bound.arguments["low"] == 2.0


@pytest.mark.parametrize("bad, flag", [({"kimg": 0}, "--kimg"), ({"width": 0}, "--width"), ({"out": "t.txt"}, "--out")])
def test_train_target_options_refuse_bad_values_naming_the_flag(tmp_path, bad, flag):
    opts = TrainTargetOptions(**({"out": str(tmp_path / "t.pt")} | bad))
    with pytest.raises(OptionError) as err:
        opts.check()
    assert err.value.flag == flag


def test_an_existing_checkpoint_is_kept_unless_forced_or_resumed(tmp_path):
    out = tmp_path / "t.pt"
    out.write_bytes(b"kept")
    with pytest.raises(OptionError, match="--force"):
        TrainTargetOptions(out=str(out)).check()
    TrainTargetOptions(out=str(out), force=True).check()
    TrainTargetOptions(out=str(out), resume=True).check()
    assert out.read_bytes() == b"kept"


def test_train_target_options_turn_clicks_choice_text_into_numbers(tmp_path):
    opts = TrainTargetOptions.from_params({"out": str(tmp_path / "t.pt"), "resolution": "64", "channels": "3"})
    assert (opts.resolution, opts.channels) == (64, 3)
    assert opts.train_config(3).resolution == 64
    assert opts.grid_folder().name == "t"
