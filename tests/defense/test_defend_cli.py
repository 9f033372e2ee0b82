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
