"""Query sweep: how fidelity and accuracy improve as the adversary buys more images.

One query set of the largest budget is collected once; the attack for budget B trains on its first B
images, which is exactly what an adversary with budget B would have bought (the oracle's stream is
positional). Each attack trains for the same number of kimg, so only the data differs.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from faststeal.attack import queryset
from faststeal.attack.thief import train_attack
from faststeal.report import RunFolder, Stopwatch, flat_measures, line_plot, markdown_table, stage_line
from faststeal.targets import open_target

from .experiment import Experiment
from .options import ExtractOptions, attack_config, knowledge_settings


def run_sweep(opts: ExtractOptions, budgets: list[int], run=None, target=None) -> dict:
    """Train one attack per budget on the first B queries; a rerun reuses every attack and measurement whose
    inputs did not change (train_attack's config check, Experiment.measure's key). ``target``: as in
    run_extract."""
    clock = Stopwatch()
    target = open_target(target if target is not None else opts.target, hints=opts.target_hints)
    opts.sized_for(target.resolution, target.arch)
    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] <= 0:
        raise ValueError(f"query budgets must be positive integers, got {budgets}")
    run = run or RunFolder(opts.out, "sweep", {**asdict(opts), "budgets": budgets})
    run.start_over(opts.fresh)
    exp = Experiment(run, target, fid_n=opts.fid_n, eval_data=opts.eval_data, progress=opts.progress)
    oracle = exp.oracle(budgets[-1], prior=opts.prior, seed=opts.seed)
    cfg = exp.config
    qdir = opts.query_set or run.file("queries")
    queryset.collect(oracle, qdir, budgets[-1], target=opts.target, progress=opts.progress,
                     knowledge=opts.knowledge)
    served = queryset.load(qdir, limit=budgets[-1])
    clock.lap("queries")
    rows = []
    for budget in budgets:
        data = queryset.load(qdir, limit=budget)
        trained = train_attack(attack_config(replace(opts, queries=budget), cfg["resolution"], cfg["channels"],
                                             opts.attack_kimg, **knowledge_settings(opts, cfg)),
                               data, run.file(f"attack-{budget}.pt"), progress=opts.progress)
        clock.lap("training")
        measured = exp.measure([trained["checkpoint"]], served=served)
        clock.lap("measurement")
        rows.append({"queries": budget, **measured.rows[0], "attack_kimg_reached": trained["kimg"],
                     "train_seconds": trained["train_seconds"]})
        run.write_metrics({"target": opts.target, "attack": opts.attack, "target_fid": measured.target_fid,
                           "sweep": rows})
    series = {"fidelity": ([r["queries"] for r in rows], [r["fidelity"] for r in rows])}
    if rows[0]["accuracy"] is not None:
        series["accuracy"] = ([r["queries"] for r in rows], [r["accuracy"] for r in rows])
    run.write(line_plot, run.file("sweep.png"), series, "queries (images bought)", "FID (lower = better copy)",
              f"{opts.attack} attack on {opts.target}", logx=True)
    clock.lap("plot")
    metrics = {"target": opts.target, "attack": opts.attack, "knowledge": opts.knowledge,
               "target_fid": measured.target_fid, "fid_floor": measured.fid_floor, "sweep": rows,
               "attack_kimg": opts.attack_kimg, "fid_n": opts.fid_n, "stage_seconds": clock.seconds}
    run.write_metrics(metrics)
    run.write_report(f"Query sweep against {opts.target}", [
        ("Fidelity and accuracy by query budget", markdown_table([flat_measures(r) for r in rows],
                                                                   ["queries", "fidelity", "fidelity_lo", "fidelity_hi",
                                                                    "accuracy", "copy_precision", "copy_recall",
                                                                    "copy_coverage", "attack_kimg_reached",
                                                                    "train_seconds"])),
        ("Plot", "![sweep](sweep.png)"),
        ("Wall time", f"This run's wall time by stage (every budget together): {stage_line(clock.seconds)}. "
                      f"A budget whose attack and measurement were stored already costs almost nothing."),
    ])
    return metrics
