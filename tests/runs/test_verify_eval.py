"""The population evaluation on the tiny target: members verified, results resumable, key never written."""
import json

from faststeal.runs.verify_eval import EvalOptions, Member, run_eval, summarise

KEY = "population-secret"


def plan():
    return [Member("innocent", "target itself", marked=False, data="target"),
            Member("stolen", "distilled from marked", knowledge="latents", queries=512),
            Member("innocent", "distilled from unmarked", marked=False, knowledge="latents", queries=512),
            Member("careful", "distilled from marked then blurred", knowledge="latents", queries=512,
                   thief="blur:sigma=1")]


def test_population_detects_the_copy_and_resumes(tiny_target, tmp_path):
    opts = EvalOptions(target=str(tiny_target), key=KEY, strength=32, kimg=2, verify_n=1000, null_keys=200,
                       measure_utility=False, out=str(tmp_path / "eval"), plan=plan(), limit=3)
    logs = []
    r = run_eval(opts, log=logs.append)
    by = {m["label"]: m for m in r["members"]}
    assert by["distilled from marked"]["p_value"] < 1e-3
    assert by["distilled from unmarked"]["p_value"] > 0.01 and by["target itself"]["p_value"] > 0.01
    assert r["not_done"] == ["distilled from marked then blurred"]
    assert r["summary"]["tpr_stolen_at_0.001"] == 1.0 and r["summary"]["fpr_innocent_at_0.01"] == 0.0
    assert r["summary"]["wrong_key_tests"] == 600
    for name in ("report-s32.md", "results-s32.json", "statistic-s32.png", "served-s32.png", "config.json"):
        assert (tmp_path / "eval" / name).exists()
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "eval").rglob("*.json"))
    written += (tmp_path / "eval" / "report-s32.md").read_text()
    assert KEY not in written
    assert "| innocent | target itself | 2 |" in written          # each model's training length is shown

    again = []
    r2 = run_eval(opts, log=again.append)              # every member reused: nothing is built again
    assert not any("building" in line for line in again)
    assert [m["z"] for m in r2["members"]] == [m["z"] for m in r["members"]]
    other_key = run_eval(EvalOptions(**{**opts.__dict__, "key": "another", "limit": 1}), log=again.append)
    assert any("building" in line for line in again)    # results are keyed on the key (by its digest)
    assert json.loads((tmp_path / "eval" / "results-s32.json").read_text())["members"][0]["z"] == \
        other_key["members"][0]["z"]


def test_members_built_elsewhere_are_reused(tiny_target, tmp_path):
    """--member builds one model in its own folder; copied into the main folder, it is not built again."""
    import shutil

    common = dict(target=str(tiny_target), key=KEY, strength=32, kimg=1, verify_n=200, null_keys=20,
                  measure_utility=False, plan=plan()[:2])
    side = run_eval(EvalOptions(**common, out=str(tmp_path / "side"), members=("distilled-from-marked",)),
                    log=lambda _: None)
    assert [m["label"] for m in side["members"]] == ["distilled from marked"]
    assert side["not_done"] == ["target itself"]
    shutil.copytree(tmp_path / "side" / "members", tmp_path / "main" / "members")
    logs = []
    full = run_eval(EvalOptions(**common, out=str(tmp_path / "main")), log=logs.append)
    assert [line for line in logs if "building" in line] == ["[1/2] building innocent: target itself"]
    assert full["members"][1]["z"] == side["members"][0]["z"]


def test_summary_counts_rates():
    rows = [{"group": "stolen", "p_value": 1e-5, "null_z": [0.0, 1.0]},
            {"group": "stolen", "p_value": 0.005, "null_z": [-1.0]},
            {"group": "innocent", "p_value": 0.5, "null_z": [0.5]}]
    s = summarise(rows)
    assert s["tpr_stolen_at_0.01"] == 1.0 and s["tpr_stolen_at_0.001"] == 0.5
    assert s["fpr_innocent_at_0.01"] == 0.0 and s["tpr_careful_at_0.01"] is None and s["wrong_key_tests"] == 4


def test_member_key_records_the_lengths_used():
    """A member trained longer, or fine-tuned for a set length, is keyed on the length it used, so the same
    length reached another way is the same result."""
    from faststeal.runs.verify_eval import member_key

    opts = EvalOptions(key=KEY, kimg=80)
    base = Member("stolen", "copy")
    assert member_key(opts, base, "t")["kimg"] == 80
    longer = Member("stolen", "copy", longer=3)
    assert member_key(opts, longer, "t")["kimg"] == 240
    assert member_key(opts, longer, "t") == member_key(EvalOptions(key=KEY, kimg=240), base, "t")
    ft = Member("careful", "ft", finetune_real=1000)
    assert "finetune_kimg" not in member_key(opts, base, "t")
    assert member_key(opts, ft, "t")["finetune_kimg"] == 80 / 3
    assert member_key(opts, Member("careful", "ft", finetune_real=1000, finetune_kimg=2), "t")["finetune_kimg"] == 2
