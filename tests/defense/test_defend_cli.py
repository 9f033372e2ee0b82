from click.testing import CliRunner

from faststeal.cli import main


def test_defend_help_documents_the_syntax():
    result = CliRunner().invoke(main, ["defend", "--help"])
    assert result.exit_code == 0
    for text in ("noise:sigma=0.05,0.1,0.2", "--queries", "--attack-kimg", "--fid-n", "--out", "jpeg", "adv"):
        assert text in result.output


def test_defend_rejects_a_bad_spec_in_one_line(tiny_target, tmp_path):
    result = CliRunner().invoke(main, ["defend", "--target", str(tiny_target), "--defense", "noise:sigmaa=1",
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown key 'sigmaa'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_defend_prints_changed_pixels_and_names_settings_without_effect(tiny_target, tmp_path):
    import numpy as np

    np.save(tmp_path / "real.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    result = CliRunner().invoke(main, [
        "defend", "--target", str(tiny_target), "--defense", "truncate:psi=0.5", "--defense", "noise:sigma=0.2",
        "--queries", "32", "--attack-kimg", "0.008", "--attack-width", "8", "--batch", "8", "--fid-n", "16",
        "--eval-data", str(tmp_path / "real.npy"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert lines["none"].rstrip().endswith("0.0%") and not lines["noise:sigma=0.2"].rstrip().endswith(" 0.0%")
    assert "no effect on this target (served the undefended images): truncate:psi=0.5" in result.output
