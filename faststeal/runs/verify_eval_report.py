"""The population's report: a table of every member, the detection statistic by group, served vs marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faststeal.defense import parse_pipeline
from faststeal.fileio import atomic_write, write_text
from faststeal.grid import make_grid, save_png
from faststeal.ownership.detect import INNOCENT_P, STOLEN_P
from faststeal.report import fmt
from faststeal.targets.oracle import TargetOracle


def member_table(rows: list[dict]) -> str:
    """One line per model, with the training length its stored result was keyed on."""
    lines = ["| group | model | kimg | z | p-value | detected (p < 1e-3) | fidelity | train s |",
             "|---|---|---:|---:|---:|:---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['label']} | {r['kimg']:g} | {r['z']:.2f} | {r['p_value']:.2g} | "
                     f"{'yes' if r['detected'] else 'no'} | {fmt(r.get('fidelity'))} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def summary_table(s: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.0f}%"

    return "\n".join([
        "| | at p < 0.01 (FPR 1%) | at p < 0.001 (FPR 0.1%) |", "|---|---:|---:|",
        f"| TPR, stolen | {pct(s.get('tpr_stolen_at_0.01'))} | {pct(s.get('tpr_stolen_at_0.001'))} |",
        f"| TPR, careful thieves | {pct(s.get('tpr_careful_at_0.01'))} | {pct(s.get('tpr_careful_at_0.001'))} |",
        f"| false positives, innocent models | {pct(s.get('fpr_innocent_at_0.01'))} | "
        f"{pct(s.get('fpr_innocent_at_0.001'))} |",
        f"| false positives, wrong keys ({s.get('wrong_key_tests', 0)} tests) | "
        f"{fmt(100 * s['wrong_key_fpr_at_0.01'] if 'wrong_key_tests' in s else None)}% | "
        f"{fmt(100 * s['wrong_key_fpr_at_0.001'] if 'wrong_key_tests' in s else None)}% |"])


def statistic_plot(rows: list[dict], path: Path) -> Path:
    """z of every member by group, against the wrong-key null of all members (a histogram)."""
    from matplotlib.figure import Figure  # on use: matplotlib and scipy.stats add ~1.6 s to a command's start
    from scipy.stats import norm

    fig = Figure(figsize=(8, 4.2))       # no pyplot: no backend or global state, safe in any process
    ax = fig.subplots()
    null = [z for r in rows for z in r["null_z"]]
    if null:
        ax.hist(null, bins=60, density=True, color="0.8", label=f"wrong keys ({len(null)} tests)")
    colours = {"stolen": "tab:red", "careful": "tab:orange", "innocent": "tab:blue"}
    top = 0.45
    for i, group in enumerate(("stolen", "careful", "innocent")):
        zs = [r["z"] for r in rows if r["group"] == group]
        if zs:
            ax.scatter(zs, [top * (0.25 + 0.22 * i)] * len(zs), s=40, color=colours[group], label=group,
                       edgecolor="k", zorder=3)
    for p, style in ((STOLEN_P, "--"), (INNOCENT_P, ":")):
        ax.axvline(float(norm.isf(p)), color="k", ls=style, lw=1, label=f"p = {p:g}")
    ax.set_xlabel("detection statistic z (owner's key)")
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Ownership verification: stolen vs innocent models")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def served_picture(target, serving: str, path: Path, n: int = 36) -> Path:
    """Left: the target's images; right: the same codes served with the mark."""
    plain = TargetOracle(target, budget=n, seed=99).query(n)
    marked = TargetOracle(target, budget=n, seed=99, **parse_pipeline(serving).oracle_hooks()).query(n)
    a, b = make_grid(plain, 6), make_grid(marked, 6)
    gap = np.full((a.shape[0], 8, a.shape[2]), 255, dtype=np.uint8)
    return save_png(np.concatenate([a, gap, b], axis=1), path, upscale=2 if plain.shape[-1] < 64 else 1)


def write_report(result: dict, utility: dict | None, out: Path) -> Path:
    opts, s = result["options"], result["summary"]
    util = ("not measured" if utility is None else
            f"FID(served, real) on {utility['n']} images per side, same codes: {utility['fid_unmarked']:.2f} "
            f"unmarked, {utility['fid_marked']:.2f} marked (cost {utility['cost']:+.2f}); the mark changes pixels "
            f"by {utility['rms_pixel_change']:.2f} levels RMS, at most {utility['max_pixel_change']}.")
    body = [
        "# Ownership verification: population", "",
        f"Target {opts['target']}, mark strength {opts['strength']:g} (RMS pixel levels), band "
        f"[{opts['low']:g}, {opts['high']:g}), models trained {opts['kimg']:g} kimg unless their row says "
        f"otherwise, {opts['verify_n']} samples per model for the detector (reference: the owner's unmarked "
        f"target), {opts['null_keys']} wrong keys per "
        f"model. p-values are exact: the rank of z among 10,000 random sign vectors on the model's own band "
        f"coefficients (models stored before that carry normal-tail p-values).", "",
        "## Utility", "", util, "",
        "## Detection", "", summary_table(s), "",
        f"Wrong-key p-values over all models: KS test against uniform p = {fmt(s.get('wrong_key_ks_p'), '.3f')} "
        f"(smallest per-model KS p = {fmt(s.get('wrong_key_ks_p_per_member_min'), '.3f')}).", "",
        "## Every model", "", member_table(result["members"]), "",
        f"![statistic](statistic-s{opts['strength']:g}.png)", "", "## Served images", "",
        "Left: the target. Right: the same codes served with the mark.", "",
        f"![served vs marked](served-s{opts['strength']:g}.png)", "",
    ]
    if result["not_done"]:
        body += ["## Not done", "", *[f"- {label}" for label in result["not_done"]], ""]
    return write_text(out / f"report-s{opts['strength']:g}.md", "\n".join(body))

