"""What a defend run shows once its rows are measured: each row's change from the baseline, the pictures of
what was served, metrics.json, the trade-off plots and report.md."""
from __future__ import annotations

import torch

from faststeal.attack import queryset
from faststeal.defense import DefensePipeline
from faststeal.report import Stopwatch, line_plot, markdown_table, stage_line

from .defend_plan import BASELINE, SERVED, DefendPlan, Setting

NO_EFFECT = 1e-3   # below this fraction of changed pixels a setting serves the undefended images


def report_defend(plan: DefendPlan, rows: list[dict], redraw: set[str], clock: Stopwatch) -> dict:
    """Compare, draw (the settings named in ``redraw``, and any picture missing) and write; returns the metrics
    with the run's wall time by stage (``clock``)."""
    opts, remote = plan.opts, plan.remote
    base = rows[0] if plan.settings[0].family == BASELINE else None     # over HTTP only with --baseline
    labels = [f.label for f in plan.families] if not remote else [SERVED]
    text = {"definitions": _definitions(plan, base), "samples": _samples_text(plan, rows)}
    _compare(plan, rows, base)
    for setting, row in zip(plan.settings, rows):
        row["picture"] = _picture(plan, setting, setting.name in redraw)
    clock.lap("comparison and pictures")
    metrics = {"target": opts.target, "attack": opts.attack, "queries": opts.queries, "fid_n": opts.fid_n,
               "attack_kimg": opts.attack_kimg, "prior": opts.prior, "seed": opts.seed,
               "target_fid": (base or rows[0])["target_fid"], "baseline": base, "settings": rows,
               "target_summary": plan.target.summary(), "stage_seconds": clock.seconds}
    if remote:
        metrics.update(served_defense=plan.ident["served_defense"], baseline_source=opts.baseline)
    _write(plan, rows, base, labels, metrics, text)
    return metrics


def _compare(plan: DefendPlan, rows: list[dict], base: dict | None) -> None:
    """Each row's change from the baseline, and (in process only) the fraction of pixels its defense changed.

    Over HTTP the server draws codes from its own secret stream, so served and baseline images answer
    different codes and a pixel comparison means nothing: changed_pixels is n/a there."""
    limit = plan.opts.fid_n
    undefended = _served(plan, base["queries_dir"], limit) if not plan.remote else None
    for r in rows:
        for key in ("utility", "fidelity", "accuracy"):
            r[f"{key}_change"] = (None if base is None or r[key] is None or base[key] is None
                                  else r[key] - base[key])
        if undefended is None:
            r["changed_pixels"] = None
        else:     # the baseline's own set is already loaded
            served = undefended if r is base else _served(plan, r["queries_dir"], limit)
            r["changed_pixels"] = changed_fraction(undefended, served)


def changed_fraction(undefended: torch.Tensor, served: torch.Tensor) -> float:
    """Fraction of the pixels of ``served`` that differ from ``undefended``, the undefended answers to the same
    positions of the owner's code stream: 0 means whatever served the set changed nothing."""
    m = min(len(undefended), len(served))
    return float((undefended[:m] != served[:m]).float().mean()) if m else 0.0


def _served(plan: DefendPlan, queries_dir: str, limit: int) -> torch.Tensor:
    """The first ``limit`` images of a setting's query set (``queries-<name>`` in the run folder)."""
    return queryset.load(plan.run.file(queries_dir), limit=limit).images


def _picture(plan: DefendPlan, setting: Setting, redraw: bool) -> str:
    """samples-<name>.png: undefended | served for the same codes in process; over HTTP the bought images (beside
    the baseline's, other codes). Drawn when its row was measured now or the file is missing."""
    run, opts, name = plan.run, plan.opts, f"samples-{setting.name}.png"
    if not redraw and run.decide(run.file(name).exists):
        return name
    left = None
    if setting.pipeline is not None:
        left, right = _preview(plan, setting.pipeline, n=12 if setting.slow else 36)
    else:
        right = _served(plan, f"queries-{setting.name}", 36)
        if setting.name == SERVED and opts.baseline:
            left = _served(plan, "queries-baseline", 36)
    if left is None:
        run.grid(right, name)
    else:
        run.side_by_side(left, right, name)
    return name


def _preview(plan: DefendPlan, pipeline: DefensePipeline, n: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    """(undefended, defended) images for the same n prior codes, for the side-by-side picture."""
    opts = plan.opts
    plain = plan.exp.oracle(n, prior=opts.prior, seed=opts.seed + 99)
    guarded = plan.exp.oracle(n, prior=opts.prior, seed=opts.seed + 99, **pipeline.oracle_hooks())
    return plain.query(n), guarded.query(n)     # both from position 0 of the same seed's stream: same codes


def _write(plan: DefendPlan, rows: list[dict], base: dict | None, labels: list[str], metrics: dict,
           text: dict) -> None:
    """The trade-off plots, metrics.json and report.md."""
    opts, remote, run = plan.opts, plan.remote, plan.run
    metrics["plots"] = _plots(run, rows, labels, base)
    run.write_metrics(metrics)
    columns = ["defense", "utility", "fidelity", "accuracy", "served_vs_target", "attack_vs_served",
               "served_precision", "served_coverage", "copy_precision", "copy_coverage"]
    table = markdown_table(rows, columns + ([] if remote else ["changed_pixels"]))
    idle = [r["defense"] for r in rows[1:] if r["changed_pixels"] is not None and r["changed_pixels"] < NO_EFFECT]
    if idle:
        table += ("\n\n**No effect on this target:** " + ", ".join(f"`{d}`" for d in idle) + " served the "
                  "undefended images (fewer than 0.1% of pixels changed). A latent defense that only rescales "
                  "codes does nothing to a generator that normalises its latent input, as PGGAN does; any "
                  "change in its fidelity or accuracy is training noise.")
    notes = [f"No real data, so no utility or accuracy: {rows[0]['real_note']}"] if rows[0]["real_note"] else []
    if base is None and rows[0].get("target_note"):
        notes.append(f"No fidelity or served_vs_target: {rows[0]['target_note']}.")
    sections = [
        ("Definitions", text["definitions"] + "".join(f"\n\n{n}" for n in notes)),
        ("Target", metrics["target_summary"]),
        ("Results", table),
        ("Trade-off", "\n\n".join(f"![{p}]({p})" for p in metrics["plots"])
         or "No plot: it needs utility (real data) and an undefended baseline."),
        ("Served samples", text["samples"]),
        ("Wall time", f"This run's wall time by stage (every setting together): "
                      f"{stage_line(metrics['stage_seconds'])}. A setting whose row was stored already is read, "
                      f"not bought, trained or measured again."),
    ]
    title = (f"The defense served by {opts.target} (`{metrics['served_defense']}`) against a {opts.attack} attack"
             if remote else f"Defenses for {opts.target} against a {opts.attack} attack")
    run.write_report(title, sections)


def _definitions(plan: DefendPlan, base: dict | None) -> str:
    opts, remote = plan.opts, plan.remote
    baseline_remote = plan.baseline is not None and not plan.baseline.in_process
    undefended = ("the undefended target" if not remote else
                  f"the undefended baseline {opts.baseline}" if opts.baseline else "the undefended target (n/a)")
    text = (f"utility = FID(served images, real data): what honest users lose (lower is better for them). "
            f"fidelity = FID(attack, {undefended}) and accuracy = FID(attack, real): what the thief gets (higher "
            f"means the defense works). served_vs_target = FID(served, {undefended}). attack_vs_served = "
            f"FID(attack, the images it was trained on): how far the thief is from copying what it was served. "
            f"served_precision/served_coverage and copy_precision/copy_coverage: precision (k = 3) and coverage "
            f"(k = 5) of the served images and of the copy against {undefended}, on the FID features; a defense "
            f"that lowers precision only spoils how the images look, one that lowers coverage hides part of what "
            f"the target makes. ")
    if remote:
        text += (f"The server at {opts.target} applies its own `--defense`; its {opts.queries} images were bought "
                 f"with the given key (the server's prior and secret seed). ")
        if baseline_remote:
            text += ("The baseline server's images stand for the undefended target (fidelity is against its "
                     "first fid_n images). ")
    else:
        text += ("changed_pixels = fraction of served pixels that differ from the undefended answer to the same "
                 f"query. {opts.queries} queries per setting ({opts.prior} prior), ")
    text += (f"{opts.attack} attack trained for {opts.attack_kimg} kimg, FID on {opts.fid_n} images per side "
             f"(utility on min(fid_n, queries)); ")
    text += ("the first row is the undefended baseline measured in this run." if base is not None
             else "no undefended baseline was given (--baseline), so no row to compare with.")
    return text


def _samples_text(plan: DefendPlan, rows: list[dict]) -> str:
    if not plan.remote:
        head = "Left: undefended target. Right: served through the defense (same codes)."
    elif plan.opts.baseline:
        head = ("Served row: left the baseline's images, right the server's; other codes (the server draws "
                "its own). Baseline row: its images.")
    else:
        head = "The images the server sent."
    pictures = (f"samples-{s.name}.png" for s in plan.settings)
    return head + "\n\n" + "\n\n".join(f"**{r['defense']}**\n\n![{r['defense']}]({p})" for r, p in zip(rows, pictures))


def _plots(run, rows, labels: list[str], base) -> list[str]:
    """trade-off PNGs: utility on x; fidelity / accuracy on y; one line per family, starting at the baseline."""
    if base is None or base["utility"] is None:
        return []
    out = []
    for metric in ("fidelity", "accuracy"):
        series = {}
        for label in labels:
            pts = [base] + [r for r in rows if r["family"] == label]
            if any(p[metric] is None or p["utility"] is None for p in pts):
                continue
            series[label] = ([p["utility"] for p in pts], [p[metric] for p in pts])
        if series:
            name = f"tradeoff-{metric}.png"
            run.write(line_plot, run.file(name), series, "utility = FID(served, real)  (lower: users lose less)",
                      f"{metric} of the attack  (higher: thief gets less)",
                      f"Defenses: {metric} vs utility (first point: undefended)")
            out.append(name)
    return out
