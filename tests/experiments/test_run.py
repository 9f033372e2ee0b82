"""experiments/run.py: the plan (plan.toml), what counts as done, and the tables (no training here)."""
import json

import pytest


@pytest.fixture(scope="module")
def ex(load_script):
    return load_script("experiments/run")


def _finish(root, ex, e, metrics):
    folder = ex.run_dir(root, e)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"argv": ["faststeal", *ex.command(root, e), "--threads", "1"]}))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_names_are_unique_and_the_default_budget_is_not_run_twice(ex):
    plan = ex.plan(None)
    assert len({e.name for e in plan}) == len(plan)
    shared = [e for e in plan if e.folder]
    # the chosen-latents sweep runs the default length, so its 10K row is the pair's run; the image-only sweep
    # gives its length explicitly (60 kimg) and has rows of its own
    assert {e.name for e in shared} == {f"sweep/latents/q10000/seed{s}" for s in (0, 1, 2)}
    by_name = {e.name: e for e in plan}
    for e in shared:                                   # the same command as the run whose folder it reads
        assert by_name[e.folder].args == e.args


def test_done_needs_the_same_command_line(ex, tmp_path):
    e = next(x for x in ex.plan(None) if x.name == "pairs/pggan-fast-images/seed0")
    assert not ex.is_done(tmp_path, e)
    _finish(tmp_path, ex, e, {"fidelity": 40.0})
    assert ex.is_done(tmp_path, e)                     # --threads does not change what was measured
    other = ex.PlannedRun(e.name, (*e.args[:-1], "7"))
    assert not ex.is_done(tmp_path, other)             # another seed in the same folder is not this run
    sweep = next(x for x in ex.plan(None) if x.name == "sweep/images/q10000/seed0")
    assert not ex.is_done(tmp_path, sweep)             # 60 kimg given explicitly: not the default-length run
    plan = {x.name: x for x in ex.plan(None)}
    _finish(tmp_path, ex, plan["pairs/pggan-fast-latents/seed0"], {"fidelity": 25.0})
    assert ex.is_done(tmp_path, plan["sweep/latents/q10000/seed0"])      # the pair's run serves the sweep's row


def test_done_is_keyed_by_the_settings_the_run_resolved(ex, tmp_path):
    from faststeal.runs.options import DEFAULT_ATTACK_KIMG

    e = next(x for x in ex.plan(None) if x.name == "pairs/pggan-fast-images/seed0")
    folder = ex.run_dir(tmp_path, e)
    folder.mkdir(parents=True)
    moved = ["extract", "--target", "builtin:pggan-fmnist32", "--seed", "0", "--out", str(tmp_path / "elsewhere")]

    def record(attack_kimg):
        (folder / "config.json").write_text(json.dumps({"argv": ["faststeal", *moved],
                                                        "options": {"attack_kimg": attack_kimg, "batch": 16}}))
        (folder / "metrics.json").write_text("{}")      # a run writes its metrics after its config

    record(DEFAULT_ATTACK_KIMG)
    assert ex.is_done(tmp_path, e)                     # written elsewhere, defaults left implicit: the same run
    record(DEFAULT_ATTACK_KIMG + 20)
    assert not ex.is_done(tmp_path, e)                 # trained under another default length: stale
    assert ex.settings(["extract", "--no-such-option"]) is None


def test_transfer_chain_resolves_paths_under_the_root(ex, tmp_path):
    plan = {e.name: e for e in ex.plan(None)}
    target = plan["transfer/target-classes0to6/seed0"]
    cmd = ex.command(tmp_path, target)
    assert cmd[-4:] == ["--out", str(tmp_path / "transfer/target-classes0to6/seed0/target.pt"),
                        "--run-dir", str(tmp_path / "transfer/target-classes0to6/seed0")]
    stolen = ex.command(tmp_path, plan["transfer/stolen-images/seed0"])
    assert stolen[stolen.index("--target") + 1] == cmd[-3]
    assert not ex.is_done(tmp_path, target)
    folder = ex.run_dir(tmp_path, target)
    folder.mkdir(parents=True)
    (folder / "finished.json").write_text(json.dumps({"command": cmd}))
    assert ex.is_done(tmp_path, target)


def test_icons_group_trains_its_target_on_the_folder_then_steals_it(ex, tmp_path):
    plan = {e.name: e for e in ex.plan(str(tmp_path / "icons"))}
    target = plan["icons64/target/seed0"]
    assert target.trains_target and target.args[target.args.index("--data") + 1] == str(tmp_path / "icons")
    made = ex.command(tmp_path, target)[-3]
    for knowledge in ("images", "latents"):
        steal = ex.command(tmp_path, plan[f"icons64/{knowledge}/seed0"])
        assert steal[steal.index("--target") + 1] == made
    assert not any(name.startswith("icons64") for name in {e.name for e in ex.plan(None)})


def test_icons_must_name_an_existing_folder(ex, tmp_path, capsys):
    with pytest.raises(SystemExit):
        ex.main(["--root", str(tmp_path), "--icons", str(tmp_path / "missing"), "--list"])
    assert "scripts/icons64.py" in capsys.readouterr().err


def test_summary_gives_mean_and_spread_per_group(ex, tmp_path):
    plan = {e.name: e for e in ex.plan(None)}
    for seed, fid in enumerate((30.0, 34.0, 38.0)):
        _finish(tmp_path, ex, plan[f"pairs/pggan-fast-latents/seed{seed}"], {"fidelity": fid, "accuracy": 60.0})
    _finish(tmp_path, ex, plan["transfer/to-classes7to9/seed0"],
            {"final_finetuned_fid": 50.0, "final_scratch_fid": 90.0})
    rows = {r["group"]: r for r in ex.summarise(tmp_path, list(plan.values()))}
    pair = rows["pairs/pggan-fast-latents"]
    assert (pair["runs"], pair["fidelity"], pair["fidelity_std"]) == (3, 34.0, 4.0)
    assert rows["sweep/latents/q10000"]["fidelity"] == 34.0
    table = ex.markdown(list(rows.values()))
    assert "34.00 ± 4.00" in table and "| transfer/to-classes7to9 | 1 | 50.00 | 90.00 |" in table


def test_sweep_plot_has_error_bars_where_seeds_exist(ex, tmp_path):
    rows = [{"group": "sweep/images/q300", "fidelity": 40.0, "fidelity_std": None, "accuracy": 60.0},
            {"group": "sweep/images/q1000", "fidelity": 45.0, "fidelity_std": 5.0, "accuracy": 70.0,
             "accuracy_std": 4.0},
            {"group": "pairs/pggan-fast-images", "fidelity": 41.0}]
    path = ex.sweep_plot(rows, tmp_path / "sweep.png")
    assert path.stat().st_size > 1000
    assert ex.sweep_plot(rows[2:], tmp_path / "none.png") is None


def test_accuracy_variants_get_rows_of_their_own(ex, tmp_path):
    plan = {e.name: e for e in ex.plan(None)}
    for seed, ft in enumerate((50.0, 54.0)):
        _finish(tmp_path, ex, plan[f"accuracy/real100/seed{seed}"], {
            "fidelity": 40.0, "accuracy": 65.0,
            "variants": [{"variant": "queries only (fidelity extraction)", "fidelity": 40.0, "accuracy": 65.0},
                         {"variant": "+ fine-tune on 100 real", "fidelity": 45.0, "accuracy": ft},
                         {"variant": f"DRS with target D (kept {5000 + seed}/10000)", "fidelity": 41.0,
                          "accuracy": 64.0}]})
    rows = {r["group"]: r for r in ex.summarise(tmp_path, list(plan.values()))}
    assert rows["accuracy/real100 [+ fine-tune on 100 real]"]["accuracy"] == 52.0
    assert rows["accuracy/real100 [DRS with target D]"]["runs"] == 2


def test_defense_table_marks_effects_beyond_the_seed_spread(ex):
    def setting(name, utility, fidelity):
        return {"defense": name, "utility": utility, "fidelity": fidelity, "accuracy": 60.0, "changed_pixels": 0.5}

    defend = {"group": "defend/images", "settings": [setting("none", 40.0, 31.0),
                                                     setting("jpeg:quality=20", 50.0, 33.0),
                                                     setting("noise:sigma=0.1", 80.0, 50.0)]}
    pair = {"group": "pairs/pggan-fast-images", "runs": 3, "fidelity": 30.0, "fidelity_std": 3.0}
    table = ex.defense_markdown([pair, defend])
    # noise of a single run against a 3-seed mean: 3 * sqrt(4/3) = 3.46, marked beyond 6.93
    assert "|change| > 6.93" in table
    assert "| `jpeg:quality=20` | 50.00 | +10.00 | 33.00 | +3.00 | no |" in table
    assert "| `noise:sigma=0.1` | 80.00 | +40.00 | 50.00 | +20.00 | yes | 60.00 | 0.50 ± 0.09 | 50% |" in table
    alone = ex.defense_markdown([defend])               # no seeds of the undefended thief: nothing is marked
    assert "one seed (no spread known)" in alone and "| yes |" not in alone and "| no |" not in alone


def test_defense_plot_is_drawn_only_for_defend_runs(ex, tmp_path):
    settings = [{"defense": "none", "utility": 40.0, "fidelity": 31.0},
                {"defense": "noise:sigma=0.1", "utility": 80.0, "fidelity": 50.0}]
    rows = [{"group": "pairs/pggan-fast-images", "runs": 3, "fidelity": 30.0, "fidelity_std": 3.0},
            {"group": "defend/images", "settings": settings}]
    assert ex.defense_plot(rows, tmp_path / "d.png").stat().st_size > 1000
    assert ex.defense_plot(rows[:1], tmp_path / "none.png") is None


def test_an_unfinished_defend_run_reports_the_settings_it_has_measured(ex, tmp_path):
    e = next(x for x in ex.plan(None) if x.name == "defend/latents/seed0")
    folder = ex.run_dir(tmp_path, e)
    options = {"defenses": [a for prev, a in zip(e.args, e.args[1:]) if prev == "--defense"], "seed": 0,
               "knowledge": "latents"}

    def store(spec, fidelity, **key):
        from faststeal.runs.defend import slug

        (folder / f"queries-{slug(spec)}").mkdir(parents=True, exist_ok=True)
        row = {"defense": spec, "utility": 44.0, "fidelity": fidelity, "accuracy": 55.0}
        (folder / f"queries-{slug(spec)}" / "result.json").write_text(
            json.dumps({"key": {"defense": spec, "seed": 0, **key}, "value": row}))

    store("none", 24.0)
    store("anchors:mix=0.5", 30.0)
    store("region:keep=0.25", 99.0, seed=5)            # stored by a run with another seed: not this run's row
    assert ex.defend_progress(tmp_path, e) is None     # no config.json: no run of this command started here
    (folder / "config.json").write_text(json.dumps({"argv": ["faststeal", *ex.command(tmp_path, e)],
                                                    "options": options}))
    rows = ex.defend_progress(tmp_path, e)
    assert [r["defense"] for r in rows] == ["none", "anchors:mix=0.5"]
    summary = ex.summarise(tmp_path, [e])
    assert summary[0]["partial"] and "still running" in ex.defense_markdown(summary)
    (folder / "metrics.json").write_text(json.dumps({"settings": rows}))
    assert not ex.summarise(tmp_path, [e])[0]["partial"]     # finished: the run's own metrics
    import os

    os.utime(folder / "metrics.json", (1, 1))          # metrics older than the config: a rerun has begun since
    assert not ex.is_done(tmp_path, e) and ex.summarise(tmp_path, [e])[0]["partial"]


def test_seeded_defense_is_a_paired_difference_over_seeds_with_seed0_from_the_full_run(ex, tmp_path):
    plan = {e.name: e for e in ex.plan(None)}

    def run(seed, base, defended, extra=()):
        rows = [{"defense": "none", "utility": 44.0, "fidelity": base, "accuracy": 55.0},
                {"defense": "anchors:mix=0.5", "utility": 45.0, "fidelity": defended, "accuracy": 65.0}]
        rows += [{"defense": d, "utility": 44.0, "fidelity": base, "accuracy": 55.0} for d in extra]
        return {"seed": seed, "settings": rows}

    _finish(tmp_path, ex, plan["defend/images/seed0"], run(0, 29.0, 49.0, extra=["jpeg:quality=50"]))
    _finish(tmp_path, ex, plan["defend-seeds/images/seed1"], run(1, 33.0, 51.0))
    _finish(tmp_path, ex, plan["defend-seeds/images/seed2"], run(2, 31.0, 53.0))
    rows = {r["group"]: r for r in ex.summarise(tmp_path, list(plan.values()))}
    seeded = rows["defend-seeds/images"]
    assert seeded["runs"] == 3 and "settings" not in seeded
    (effect,) = seeded["paired"]                        # jpeg was measured at one seed only: no paired row
    assert [x["fidelity"] for x in effect["seeds"]] == [20.0, 18.0, 22.0]
    table = ex.paired_markdown(list(rows.values()))
    # mean 20, std 2, t = 20 / (2 / sqrt 3) = 17.3 > 4.30 (df 2)
    assert "| `anchors:mix=0.5` | 3 | +20.00 / +18.00 / +22.00 | +20.00 ± 2.00 | 17.3 | yes |" in table
    assert "defend-seeds" not in ex.defense_markdown(list(rows.values()))   # not a table of one run


def test_a_paired_effect_inside_its_spread_is_not_marked(ex):
    seeds = [{"seed": s, "fidelity": f, "utility": 0.0, "accuracy": 0.0} for s, f in enumerate((5.0, -3.0, 4.0))]
    table = ex.paired_markdown([{"group": "defend-seeds/latents", "paired": [{"defense": "x", "seeds": seeds}]}])
    assert "| no |" in table


def test_every_planned_command_parses_with_the_cli(ex, tmp_path):
    from faststeal.cli import main

    for e in ex.plan("data/icons64"):
        args = ex.command(tmp_path, e)
        command = main.commands[args[0]]
        command.make_context(args[0], list(args[1:]))      # raises on an unknown option or a bad value


def test_a_plan_entry_expands_its_axes_in_order_and_seeds_last(ex, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[names]\nt = "builtin:x"\n\n'
                    '[[run]]\nname = "g/{a}-{b}"\ncommand = "extract --target {t} --q {a}"\n'
                    'each.a = [1, 2]\neach.b = ["u", "v"]\nseeds = [0, 5]\n\n'
                    '[[run]]\nname = "icons"\ncommand = "extract --target {icons}"\nneeds = "icons"\n')
    runs = ex.plan(None, plan)
    assert [e.name for e in runs] == [f"g/{a}-{b}/seed{s}" for a in (1, 2) for b in "uv" for s in (0, 5)]
    assert runs[1].args == ("extract", "--target", "builtin:x", "--q", "1", "--seed", "5")
    assert [e.args[2] for e in ex.plan("some/folder", plan)][-1] == "some/folder"
