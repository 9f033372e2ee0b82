"""The attack options' defaults: a time budget only when the user names no length."""
from faststeal.runs.options import DEFAULT_ATTACK_KIMG, DEFAULT_MINUTES, AttackOptions, ExtractOptions


def test_no_length_given_means_the_kimg_cap_and_the_time_budget():
    opts = ExtractOptions(target="builtin:pggan-fmnist32")
    assert (opts.attack_kimg, opts.minutes) == (DEFAULT_ATTACK_KIMG, DEFAULT_MINUTES)


def test_a_given_length_is_reproduced_exactly_and_a_given_budget_is_kept():
    assert AttackOptions(target="t", attack_kimg=80.0).minutes is None
    assert AttackOptions(target="t", minutes=5.0).minutes == 5.0
    assert AttackOptions(target="t", minutes=5.0).attack_kimg == DEFAULT_ATTACK_KIMG
