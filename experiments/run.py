"""Run the results pages' studies (plan.toml) with seeds, and tabulate mean and spread.

Every experiment is one `faststeal` command, planned declaratively in plan.toml, writing its own run folder
under --root. A finished run (its metrics.json written with the same settings) is skipped, and an interrupted
one resumes (the commands reuse their query sets and attack checkpoints), so this script can be stopped and
started again at will.
Runs are sequential within one process. On 2 cores, two processes with `--threads 1` and different `--only`
prefixes finish sooner than one with both threads (docs/results/speed.md, "Sharing the CPU"); never two on one name.

    python experiments/run.py --list                      # what would run, and what is done
    python experiments/run.py --only pairs/pggan-fast     # one group (a prefix of the names)
    python experiments/run.py --summary                   # tables from what has finished
    python experiments/run.py                             # everything (many hours on 2 cores)

The summary (experiments.md and experiments.json under --root) gives, for every group of seeds, the mean and
the sample standard deviation of fidelity and accuracy, and the FID floor at the same n; for a defense setting
run at several seeds, its change against the same seed's undefended thief with a paired t.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

PLAN = Path(__file__).with_name("plan.toml")     # what runs: every study of the results pages
UTILITY_NOISE = 2.0                              # FID points: below this a utility change gets no ratio
SEEDED_DEFENSES = "defend-seeds"                 # defend runs at more seeds, summarised as paired differences


@dataclass(frozen=True)
class PlannedRun:
    name: str            # group/variant/seedN: runs sharing group/variant are one mean +- std
    args: tuple[str, ...]
    folder: str | None = None   # another experiment's run folder when the command is the same one

    @property
    def trains_target(self) -> bool:
        """train-target writes a checkpoint file, not a run folder with config.json and metrics.json."""
        return self.args[0] == "train-target"

    @property
    def group(self) -> str:
        return self.name.rsplit("/", 1)[0]


def plan(icons: str | None, path: Path = PLAN) -> list[PlannedRun]:
    """The runs plan.toml describes, in its order (the file's header says how an entry expands)."""
    spec = tomllib.loads(Path(path).read_text())
    names = spec.get("names", {})
    out: list[PlannedRun] = []
    for entry in spec["run"]:
        if entry.get("needs") == "icons" and not icons:
            continue
        axes = entry.get("each", {})
        for combo in itertools.product(*axes.values()):
            values = {**names, "icons": icons, **dict(zip(axes, combo))}
            name, args = entry["name"].format(**values), shlex.split(entry["command"].format(**values))
            for seed in entry.get("seeds", [0]):
                folder = entry["folder"].format(**values, seed=seed) if "folder" in entry else None
                out.append(PlannedRun(f"{name}/seed{seed}", (*args, "--seed", str(seed)), folder=folder))
    return out


def run_dir(root: Path, e: PlannedRun) -> Path:
    return root / (e.folder or e.name)


def command(root: Path, e: PlannedRun) -> list[str]:
    """The faststeal arguments with '@name' paths resolved under root and the output option appended."""
    args = [str(root / a[1:]) if a.startswith("@") else a for a in e.args]
    folder = run_dir(root, e)
    if e.trains_target:
        return [*args, "--out", str(folder / "target.pt"), "--run-dir", str(folder)]
    return [*args, "--out", str(folder)]


# Settings that do not change what a run measures (where it is written, how many threads ran it) or that
# are secrets; every other option of the command is compared.
NOT_SETTINGS = {"out", "run_dir", "threads", "fresh", "api_key", "baseline_api_key"}


def settings(args: list[str]) -> dict | None:
    """The command's options with today's defaults filled in, as the faststeal CLI parses them (None when it
    does not parse). The attack's length is left to the command (None), so it is resolved here."""
    from click.exceptions import ClickException

    from faststeal.cli import main as cli
    name, rest = args[0], list(args[1:])
    try:
        params = cli.commands[name].make_context(name, rest).params
    except (KeyError, ClickException):
        return None
    params = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
    if "attack_kimg" in params and params["attack_kimg"] is None:
        params["attack_kimg"] = _default_length(params)
    return json.loads(json.dumps(params))              # tuples as lists, as config.json stores them


def _default_length(params: dict) -> float | None:
    """The kimg cap the command will train to: its architecture's, or the default thief's at the target's
    resolution (the target is opened to read it; None when it cannot be opened yet, e.g. not trained)."""
    from faststeal.errors import FaststealError
    from faststeal.runs.options import ARCH_SIZES, thief_size
    from faststeal.targets import open_target

    if params.get("attack"):
        return ARCH_SIZES[params["attack"]].kimg
    try:
        target = open_target(params["target"])
        return thief_size(target.resolution, target_arch=target.arch).kimg
    except (FaststealError, OSError, ValueError):       # not there yet (a target a planned run trains)
        return None


def is_done(root: Path, e: PlannedRun) -> bool:
    """Finished with the settings this plan asks for (see started_config)."""
    folder = run_dir(root, e)
    if e.trains_target:                          # finished when this runner saw that command line succeed
        try:
            return json.loads((folder / "finished.json").read_text())["command"] == command(root, e)
        except (OSError, ValueError, KeyError):
            return False
    metrics, config = folder / "metrics.json", folder / "config.json"
    # a rerun writes config.json when it starts and metrics.json when it ends: older metrics are a previous run's
    return (started_config(root, e) is not None and metrics.exists()
            and metrics.stat().st_mtime >= config.stat().st_mtime)


def started_config(root: Path, e: PlannedRun) -> dict | None:
    """The run folder's config.json if the run there was started with the settings this plan asks for, else
    None. A run's recorded options (resolved when it ran) are the key, so a default that changed since makes
    it stale; options it did not record, or that the command resolves itself (given as None), are read from
    its command line. Where it was written and how many threads ran it do not count, so folders can move."""
    try:
        config = json.loads((run_dir(root, e) / "config.json").read_text())
        recorded = settings(config["argv"][1:])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    wanted = settings(command(root, e))
    if recorded is None or wanted is None:
        return None
    options = config.get("options", {})

    def ran_with(k):                             # an option left to the command (None) is compared as given
        return options[k] if k in options and wanted[k] is not None else recorded.get(k)

    return config if all(ran_with(k) == v for k, v in wanted.items()) else None


def defend_progress(root: Path, e: PlannedRun) -> list[dict] | None:
    """The settings an unfinished defend run has measured so far (baseline first, plan order), so a long run's
    table can be read before it ends. A stored row counts only if the run now in that folder was started by
    this very command and the row's key agrees with that run's options; None if there is no such row."""
    from faststeal.defense.pipeline import parse_family
    from faststeal.runs.defend import BASELINE, slug

    config = started_config(root, e) if e.args[0] == "defend" else None
    if config is None:
        return None
    options = config.get("options", {})
    specs = [BASELINE] + [s.spec() for d in options.get("defenses", []) for s in parse_family(d).settings]
    rows = []
    for spec in specs:
        try:
            stored = json.loads((run_dir(root, e) / f"queries-{slug(spec)}" / "result.json").read_text())
        except (OSError, ValueError):
            continue
        key = stored.get("key", {}) if isinstance(stored, dict) else {}
        if key.get("defense") == spec and all(options.get(k, v) == v for k, v in key.items() if k != "defense"):
            rows.append({**stored["value"], "changed_pixels": None})
    return rows if rows and rows[0]["defense"] == BASELINE else None


def execute(root: Path, e: PlannedRun, threads: int | None) -> int:
    folder = run_dir(root, e)
    # This interpreter's faststeal, not whichever one PATH finds first (a worktree's venv runs its own copy).
    cmd = [sys.executable, "-m", "faststeal", *command(root, e)] + (["--threads", str(threads)] if threads else [])
    (folder if e.trains_target else folder.parent).mkdir(parents=True, exist_ok=True)
    log = folder.with_name(folder.name + ".log")
    print(f"[{time.strftime('%H:%M:%S')}] {e.name}: {shlex.join(cmd)}  (log {log})", flush=True)
    start = time.time()
    with open(log, "a") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"    {'done' if rc == 0 else f'FAILED (exit {rc})'} in {(time.time() - start) / 60:.1f} min", flush=True)
    if rc == 0 and e.trains_target:
        from faststeal.fileio import write_json

        write_json(folder / "finished.json", {"command": command(root, e), "minutes": (time.time() - start) / 60})
    return rc


def summarise(root: Path, experiments: list[PlannedRun]) -> list[dict]:
    """One row per group: n seeds, mean and sample std of fidelity/accuracy, floor, wall time."""
    groups: dict[str, list[dict]] = {}
    for e in experiments:
        path = run_dir(root, e) / "metrics.json"
        done = not e.trains_target and is_done(root, e)
        partial = None if done or e.trains_target else defend_progress(root, e)
        if partial:
            groups.setdefault(e.group, []).append({"settings": partial, "partial": True})
        elif done:
            metrics = json.loads(path.read_text())
            groups.setdefault(e.group, []).append(metrics)
            for v in metrics.get("variants", [])[1:]:      # accuracy extraction: one row per variant
                label = v["variant"].split(" (")[0]         # "DRS with target D (kept 5012/10000)" -> one group
                groups.setdefault(f"{e.group} [{label}]", []).append({**v, "wall_seconds": None})
    rows = []
    for group, runs in groups.items():
        if group.startswith(SEEDED_DEFENSES + "/"):
            first = groups.get(f"defend/{group.split('/')[1]}", [])   # seed 0: the full defend run
            rows.append({"group": group, "runs": len(runs) + len(first), "paired": paired_effects(first + runs)})
            continue
        row = {"group": group, "runs": len(runs)}
        for key in ("fidelity", "accuracy", "target_fid", "fid_floor", "train_seconds", "wall_seconds",
                    "final_finetuned_fid", "final_scratch_fid"):
            values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
            if values:
                row[key] = statistics.fmean(values)
                row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        if "settings" in runs[0]:                # a defend run: its own table
            row["settings"] = runs[0]["settings"]
            row["partial"] = runs[0].get("partial", False)
        rows.append(row)
    return rows


def paired_effects(runs: list[dict]) -> list[dict]:
    """Per defense setting measured in at least two of these defend runs (one seed each): its change against
    the same run's undefended thief, per seed, for fidelity, utility and accuracy."""
    by_spec: dict[str, dict] = {}
    for run in runs:
        base = run["settings"][0]
        for s in run["settings"][1:]:
            entry = by_spec.setdefault(s["defense"], {"defense": s["defense"], "seeds": []})
            entry["seeds"].append({"seed": run.get("seed"),
                                   **{k: s[k] - base[k] for k in ("fidelity", "utility", "accuracy")}})
    return [e for e in by_spec.values() if len(e["seeds"]) > 1]


def _spread(seeds: list[dict], key: str) -> tuple[float, float]:
    values = [x[key] for x in seeds]
    return statistics.fmean(values), statistics.stdev(values)


def paired_markdown(rows: list[dict]) -> str:
    """Seeded defend groups: mean +- sample std of the per-seed changes and the paired t statistic; an
    effect is marked when |t| exceeds the two-sided 5% critical value for n - 1 degrees of freedom."""
    from scipy.stats import t as student_t

    lines = []
    for r in rows:
        if not r.get("paired"):
            continue
        lines += ["", f"**{r['group']}** (each seed against its own undefended thief)", "",
                  "| defense | seeds | thief's fidelity change per seed | mean ± std | paired t | beyond 5% | "
                  "utility lost per seed | utility lost | accuracy change |",
                  "|---|---:|---|---:|---:|:---:|---|---:|---:|"]
        for e in r["paired"]:
            n = len(e["seeds"])
            mean, std = _spread(e["seeds"], "fidelity")
            t = mean / (std / n ** 0.5) if std > 0 else float("inf")
            beyond = "yes" if abs(t) > student_t.ppf(0.975, n - 1) else "no"    # two-sided 5%
            per_seed, utility_per_seed = (" / ".join(f"{x[k]:+.2f}" for x in e["seeds"])
                                          for k in ("fidelity", "utility"))
            (u, us), (a, as_) = _spread(e["seeds"], "utility"), _spread(e["seeds"], "accuracy")
            lines.append(f"| `{e['defense']}` | {n} | {per_seed} | {mean:+.2f} ± {std:.2f} | {t:.1f} | {beyond} | "
                         f"{utility_per_seed} | {u:+.2f} ± {us:.2f} | {a:+.2f} ± {as_:.2f} |")
    return "\n".join(lines) + "\n" if lines else ""


def markdown(rows: list[dict]) -> str:
    def cell(row, key):
        if key not in row:
            return "-"
        std = row.get(key + "_std")
        return f"{row[key]:.2f}" + (f" ± {std:.2f}" if std is not None else "")

    lines = ["| experiment | runs | fidelity | accuracy | target FID | FID floor | train s | wall min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "final_finetuned_fid" in r:
            continue
        wall = f"{r['wall_seconds'] / 60:.1f}" if "wall_seconds" in r else "-"
        lines.append(f"| {r['group']} | {r['runs']} | {cell(r, 'fidelity')} | {cell(r, 'accuracy')} | "
                     f"{cell(r, 'target_fid')} | {cell(r, 'fid_floor')} | "
                     f"{r.get('train_seconds', float('nan')):.0f} | {wall} |")
    transfer = [r for r in rows if "final_finetuned_fid" in r]
    if transfer:
        lines += ["", "| transfer | runs | FID to the new domain, fine-tuned stolen model | from scratch |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['group']} | {r['runs']} | {cell(r, 'final_finetuned_fid')} | {cell(r, 'final_scratch_fid')} |"
                  for r in transfer]
    return "\n".join(lines) + "\n\nmean ± sample standard deviation over the runs (seeds) of each experiment.\n"


def _undefended(rows_by_group: dict, run: dict) -> tuple[float, float | None, str]:
    """The undefended thief a defend run is judged against: (fidelity mean, seed noise of one run against that
    mean, description). With seeds (its pairs group) the noise is sigma * sqrt(1 + 1/n); without, the run's own
    baseline and no noise."""
    knowledge = run["group"].split("/")[1]
    pair = rows_by_group.get(f"pairs/pggan-fast-{knowledge}")
    if pair and pair.get("fidelity_std"):
        mean, std, n = pair["fidelity"], pair["fidelity_std"], pair["runs"]
        noise = std * (1 + 1 / n) ** 0.5
        return mean, noise, (f"undefended: {mean:.2f} ± {std:.2f} over {n} seeds ({pair['group']}); "
                             f"marked: |change| > {2 * noise:.2f}")
    return run["settings"][0]["fidelity"], None, "undefended: this run's baseline, one seed (no spread known)"


def defense_markdown(rows: list[dict]) -> str:
    """Each defend run's settings against the seed spread of the same thief undefended (its pairs group).

    A defended run and the mean of n undefended seeds differ by sigma * sqrt(1 + 1/n) from seeds alone, so an
    effect is marked when it exceeds twice that. The ratio is the thief's fidelity lost per point of the honest
    users' utility lost; its +- is the seed part only (utility has no training in it).
    """
    by_group = {r["group"]: r for r in rows}
    lines = []
    for r in rows:
        if "settings" not in r:
            continue
        base = r["settings"][0]
        mean, noise, ref = _undefended(by_group, r)
        progress = " (still running: the settings measured so far)" if r.get("partial") else ""
        lines += ["", f"**{r['group']}**{progress} ({ref})", "",
                  "| defense | utility | utility lost | fidelity | fidelity change | > 2 sigma | accuracy | "
                  "fidelity per utility point | pixels changed |",
                  "|---|---:|---:|---:|---:|:---:|---:|---:|---:|"]
        for s in r["settings"]:
            lost = s["utility"] - base["utility"]
            change = s["fidelity"] - mean
            beyond = "-" if noise is None else ("yes" if abs(change) > 2 * noise else "no")
            ratio = "" if s is base or abs(lost) < UTILITY_NOISE else (
                f"{change / lost:.2f}" + (f" ± {noise / abs(lost):.2f}" if noise else ""))
            pixels = "" if s.get("changed_pixels") is None else f"{100 * s['changed_pixels']:.0f}%"
            lines.append(f"| `{s['defense']}` | {s['utility']:.2f} | {lost:+.2f} | {s['fidelity']:.2f} | "
                         f"{change:+.2f} | {beyond} | {s['accuracy']:.2f} | {ratio} | {pixels} |")
    return "\n".join(lines) + "\n" if lines else ""


def defense_plot(rows: list[dict], path: Path) -> Path | None:
    """What each defense costs the thief (fidelity change) against what it costs honest users (utility lost),
    one colour per knowledge level, error bars of twice the seed noise, and the line where both pay alike."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from faststeal.fileio import atomic_write

    by_group = {r["group"]: r for r in rows}
    runs = [r for r in rows if "settings" in r]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
    top, piled = 1.0, []
    for r, colour in zip(runs, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        knowledge = r["group"].split("/")[1]
        base = r["settings"][0]
        mean, noise, _ = _undefended(by_group, r)
        noise = noise or 0.0
        xs = [s["utility"] - base["utility"] for s in r["settings"][1:]]
        ys = [s["fidelity"] - mean for s in r["settings"][1:]]
        ax.errorbar(xs, ys, yerr=2 * noise, fmt="o", capsize=3, color=colour, label=f"thief: {knowledge}")
        for x, y, s in zip(xs, ys, r["settings"][1:]):
            if abs(x) < UTILITY_NOISE and abs(y) <= 4 * noise:   # piled near the origin: listed, not labelled
                piled.append((f"{s['defense']}  {y:+.1f}", colour))
            else:
                ax.annotate(s["defense"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7,
                            color=colour)
        top = max([top, *xs, *ys])
    listed = [("free for users, thief moved < 2x the mark:", "black")] + piled if piled else []
    for i, (label, colour) in enumerate(listed):
        ax.text(0.98, 0.04 + 0.045 * (len(piled) - i), label, transform=ax.transAxes, ha="right", fontsize=7,
                color=colour)
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="thief pays as much as the users")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("utility lost: FID(served, real) minus undefended")
    ax.set_ylabel("thief's fidelity change vs undefended seeds")
    ax.set_title("Defenses against the default thief (error bars: 2 sigma of seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def sweep_plot(rows: list[dict], path: Path) -> Path | None:
    """Fidelity and accuracy against the query budget, both knowledge levels, error bars where seeds exist."""
    from faststeal.report import line_plot

    series = {}
    for knowledge in ("images", "latents"):
        points = sorted((int(r["group"].rsplit("/q", 1)[1]), r) for r in rows
                        if r["group"].startswith(f"sweep/{knowledge}/q") and "fidelity" in r)
        for key in ("fidelity", "accuracy"):
            if points:
                series[f"{key}, {knowledge}"] = ([q for q, _ in points], [r[key] for _, r in points],
                                                 [r.get(key + "_std") for _, r in points])
    if not series:
        return None
    return line_plot(path, series, "queries (images served to the thief)", "FID at n = 2,000",
                     "PGGAN target (images: 60 kimg, latents: 80)", logx=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/experiments", help="where run folders go")
    parser.add_argument("--only", action="append", default=[], help="run only names starting with this (repeatable)")
    parser.add_argument("--icons", default=None, help="a 64x64 RGB image folder for group icons64, which trains "
                        "a target on it and steals it (build one with scripts/icons64.py)")
    parser.add_argument("--threads", type=int, default=None, help="pin threads (default: faststeal adapts)")
    parser.add_argument("--list", action="store_true", help="list the experiments and whether they are done")
    parser.add_argument("--summary", action="store_true", help="only tabulate what has finished")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.icons is not None and not Path(args.icons).is_dir():
        parser.error(f"--icons {args.icons}: not a folder of images; build one with "
                     "python scripts/icons64.py --out data/icons64")
    root = Path(args.root)
    chosen = [e for e in plan(args.icons) if not args.only or any(e.name.startswith(p) for p in args.only)]
    if not chosen:
        parser.error(f"--only {args.only} matches no experiment; see --list")
    if args.list:
        for e in chosen:
            print(f"{'done ' if is_done(root, e) else 'to do'}  {e.name:40s} faststeal {shlex.join(e.args)}")
        return 0
    failed = 0
    if not args.summary:
        for e in chosen:
            if not is_done(root, e):
                failed += execute(root, e, args.threads) != 0
    rows = summarise(root, chosen)
    root.mkdir(parents=True, exist_ok=True)
    (root / "experiments.json").write_text(json.dumps(rows, indent=2))
    text = (markdown([r for r in rows if "settings" not in r and "paired" not in r]) + defense_markdown(rows)
            + paired_markdown(rows))
    (root / "experiments.md").write_text(text)
    sweep_plot(rows, root / "sweep.png")
    defense_plot(rows, root / "defenses.png")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
