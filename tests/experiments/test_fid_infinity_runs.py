"""experiments/fid_infinity.py: FID at n beside its extrapolation, for a target's copies (tiny n here)."""
import shutil

import pytest


@pytest.fixture(scope="module")
def fi(load_script):
    return load_script("experiments/fid_infinity")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_copy_identical_to_the_target_scores_zero_at_n_and_the_floor_does_not(fi, tiny_target, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_target, run / "attack.pt")
    floor, copy = fi.measure(str(tiny_target), [run], n=8, progress=False)
    assert floor["copy"].startswith("floor") and floor["fid"] > 0
    assert copy["fid"] == pytest.approx(0.0, abs=1e-6)      # the same generator and sampler seed: the same images
    assert set(copy) >= {"fid_inf", "fid_inf_se", "slope"}
    assert "| floor (target, second sample) |" in fi.markdown([floor, copy])


def test_folders_without_a_finished_attack_are_refused_before_any_work(fi, tmp_path, capsys):
    with pytest.raises(SystemExit):
        fi.main(["--target", "builtin:pggan-fmnist32", str(tmp_path)])
    assert "no attack.pt" in capsys.readouterr().err
