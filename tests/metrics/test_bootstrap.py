"""Bootstrap intervals: each resample's FID / KID equals the metric of the rows it stands for, a seed repeats
the interval, and bad settings are one-line errors; the CLI prints every number of --metric all --ci."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faststeal.cli import main
from faststeal.metrics import bootstrap as boot
from faststeal.metrics.frechet import frechet_distance_of_features


def rows(counts):
    return torch.repeat_interleave(torch.arange(counts.shape[0]), counts.long())


@pytest.mark.parametrize("d", [80, 16])      # n <= d: the Gram route; n > d: the weighted covariance route
def test_fid_of_a_resample_is_the_fid_of_its_rows(d):
    gen = torch.Generator().manual_seed(0)
    f1, f2 = torch.rand(60, d, generator=gen).double(), torch.rand(50, d, generator=gen).double() + 0.05
    c1, c2 = boot.draw_counts(60, 3, gen), boot.draw_counts(50, 3, gen)
    assert (c1.sum(1) == 60).all() and (c2.sum(1) == 50).all()
    got = boot.fid_resamples(f1, f2, c1, c2)
    for b in range(3):
        want = frechet_distance_of_features(f1[rows(c1[b])], f2[rows(c2[b])])
        assert got[b] == pytest.approx(want, rel=1e-7)


def test_kid_of_a_resample_pairs_only_distinct_points():
    gen = torch.Generator().manual_seed(1)
    f1, f2 = torch.rand(30, 8, generator=gen).double(), torch.rand(25, 8, generator=gen).double()
    c1, c2 = boot.draw_counts(30, 2, gen), boot.draw_counts(25, 2, gen)
    got = boot.kid_resamples(f1, f2, c1, c2)

    def k(x, y):
        return (x @ y.T / 8 + 1) ** 3

    for b in range(2):
        i, j = rows(c1[b]), rows(c2[b])
        x, y = f1[i], f2[j]
        pair_x, pair_y = i[:, None] != i[None], j[:, None] != j[None]
        want = (k(x, x)[pair_x].mean() + k(y, y)[pair_y].mean() - 2 * k(x, y).mean()).item()
        assert got[b] == pytest.approx(want, rel=1e-10)


def test_intervals_repeat_with_a_seed_and_change_without():
    gen = torch.Generator().manual_seed(2)
    f1, f2 = torch.rand(40, 64, generator=gen), torch.rand(40, 64, generator=gen) + 0.1
    a = boot.bootstrap_intervals(f1, f2, level=0.9, resamples=30, seed=5)
    assert a == boot.bootstrap_intervals(f1, f2, level=0.9, resamples=30, seed=5)
    assert a["fid_ci"] != boot.bootstrap_intervals(f1, f2, level=0.9, resamples=30, seed=6)["fid_ci"]
    assert a["fid_ci"][0] < a["fid_boot_mean"] < a["fid_ci"][1] and a["kid_ci"][0] < a["kid_ci"][1]
    assert boot.percentile_interval(np.arange(101), 0.9) == pytest.approx((5.0, 95.0))


@pytest.mark.parametrize("kwargs, words", [({"level": 1.2}, "between 0 and 1"), ({"resamples": 1}, "at least 2"),
                                           ({"metrics": ("prdc",)}, "fid and kid")])
def test_bad_settings_are_one_line_errors(kwargs, words):
    with pytest.raises(ValueError, match=words) as err:
        boot.bootstrap_intervals(torch.rand(10, 4), torch.rand(10, 4), **kwargs)
    assert "\n" not in str(err.value)


def test_cli_all_with_interval_prints_every_number(tmp_path, fmnist_test, monkeypatch):
    monkeypatch.setenv("FASTSTEAL_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, fmnist_test[:8])
    np.save(b, fmnist_test[20:28])
    args = ["fid", str(a), str(b), "--metric", "all", "--ci", "0.95", "--bootstrap", "20", "--loader", "torch",
            "--batch", "8", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert set(out) >= {"fid", "kid", "prdc", "fid_ci", "kid_ci", "n1", "n2"} and out["n1"] == out["n2"] == 8
    assert set(out["prdc"]) == {"precision", "recall", "density", "coverage"} and out["precision"] == "float32"
    assert lines[0].startswith(f"FID {out['fid']:.4f}  [95% bootstrap {out['fid_ci'][0]:.4f}")
    assert lines[1].startswith(f"KID {out['kid']:.4f}  [95% bootstrap")
    assert lines[2] == ("precision {precision:.4f}  recall {recall:.4f}  density {density:.4f}  "
                        "coverage {coverage:.4f}".format(**out["prdc"]))
    again = json.loads(CliRunner().invoke(main, args).stdout.strip().splitlines()[-1])
    assert again["fid_ci"] == out["fid_ci"] and again["kid_ci"] == out["kid_ci"]

    # too few images for PRDC, and --ci with PRDC alone: one-line errors before any feature pass
    for extra, words in ((["--metric", "prdc", "-n", "4"], "needs at least 6"),
                         (["--metric", "prdc", "--ci", "0.9"], "use --metric all")):
        res = CliRunner().invoke(main, ["fid", str(a), str(b), "--loader", "torch", *extra])
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and words in lines[0], res.output
