import pytest

from faststeal.defense import DefenseError, parse_family, parse_pipeline


def test_single_setting_with_defaults_and_canonical_spec():
    p = parse_pipeline("jpeg:quality=50")
    assert p.spec() == "jpeg:quality=50" and p.defenses[0].quality == 50
    assert parse_pipeline("noise").spec() == "noise:sigma=0.05"


def test_sweep_expands_one_key():
    f = parse_family("noise:sigma=0.05,0.1,0.2")
    assert f.swept == "noise.sigma" and f.values == ["0.05", "0.1", "0.2"] and f.label == "noise:sigma"
    assert [s.defenses[0].sigma for s in f.settings] == [0.05, 0.1, 0.2]


def test_sweep_mixed_with_fixed_keys_and_chains():
    f = parse_family("region:shape=ball,keep=0.9,0.5+jpeg:quality=70")
    assert [s.spec() for s in f.settings] == ["region:shape=ball,keep=0.9+jpeg:quality=70",
                                              "region:shape=ball,keep=0.5+jpeg:quality=70"]
    p = f.settings[0]
    assert [d.name for d in p.latent] == ["region"] and [d.name for d in p.image] == ["jpeg"]


@pytest.mark.parametrize("text,message", [
    ("gauss:sigma=1", "unknown defense 'gauss'"),
    ("noise:amount=1", "unknown key 'amount'"),
    ("noise:sigma=abc", "sigma must be float"),
    ("noise:sigma=-1", "sigma must be >= 0"),
    ("jpeg:quality=0", "quality must be >= 1"),
    ("jpeg:quality=50.5", "quality must be int"),
    ("region:shape=cone", "shape must be one of"),
    ("noise:0.1", "expected KEY=VALUE"),
    ("noise:sigma=", "empty value"),
    ("noise:", "nothing after ':'"),
    ("", "empty --defense"),
    ("noise:sigma=0.1,sigma=0.2", "given twice"),
    ("noise:sigma=0.1,0.2+blur:sigma=1,2", "only one key"),
    ("truncate:psi=0", "psi must be >="),
    ("anchors:k=1", "k must be >= 2"),
    ("noise:sigma=nan", "must be a number"),
])
def test_parser_errors_are_one_line_and_specific(text, message):
    with pytest.raises(DefenseError, match=message) as info:
        parse_family(text)
    assert "\n" not in str(info.value)


def test_pipeline_refuses_a_sweep():
    with pytest.raises(DefenseError, match="is a sweep"):
        parse_pipeline("blur:sigma=1,2")


def test_defend_help_lists_every_registered_defense_and_key():
    from click.testing import CliRunner

    from faststeal.cli import main
    from faststeal.defense.pipeline import REGISTRY

    text = CliRunner().invoke(main, ["defend", "--help"]).output
    for name, cls in REGISTRY.items():
        assert f"  {name} " in text
        for p in cls.params:
            assert f"{p.name}={p.default!s}: {p.help}" in text
