"""The utility/security trade-off of defended serving, measured end to end.

For every defense setting (and the undefended baseline, in the same run): the owner serves ``queries``
images through the defended oracle; utility = FID(served, real) is what an honest user sees; an attack GAN
trained on exactly those images gives security = its fidelity FID(attack, undefended target) and accuracy
FID(attack, real). Fidelity is always against the undefended target, since that is what the owner protects.
Each setting keeps its query set, attack checkpoint and measured row (``queries-<setting>/result.json``, keyed
on every option it depends on) in the run folder, so a rerun reuses finished work and resumes unfinished work.

Against a URL (``faststeal serve``) the defense is the server's own ``--defense``: the client cannot choose it,
so the run measures the one served setting, bought with the owner's key, against an undefended baseline
given as ``baseline`` (a checkpoint sampled here, or a second server without a defense). Without a baseline
there is no undefended view, and fidelity is n/a; the rest is measured as above.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from faststeal.attack import queryset
from faststeal.attack.thief import train_attack
from faststeal.data import DataError, ImageSet
from faststeal.defense import DefensePipeline, Family
from faststeal.defense.adversarial import AdversarialFeatures
from faststeal.evaluate import Evaluator, ServedEvaluator, coverage, fid, image_stats
from faststeal.fileio import write_json
from faststeal.report import RunFolder, line_plot, markdown_table, redacted_value
from faststeal.targets import Target, open_target
from faststeal.targets.oracle import BudgetExceeded

from .experiment import MEASURES, Experiment
from .options import DefendOptions, attack_config, knowledge_settings

BASELINE = "none"


SERVED = "served"


@dataclass
class Setting:
    """One row of the trade-off: where its images come from and what its files are called."""
    spec: str                                  # the defense it serves ("none": undefended)
    name: str                                  # queries-<name>/, attack-<name>.pt, samples-<name>.png
    target: str                                # the query set's target: a file, py: spec or a URL
    open: Callable                             # () -> the oracle serving this setting's images
    pipeline: DefensePipeline | None = None    # applied in this process; None: applied by a server
    family: str = BASELINE                     # its line on the trade-off plot
    swept: str | None = None
    value: object = None
    remote: bool = False                       # bought from a server (whose key pays for it)

    @property
    def slow(self) -> bool:
        return self.pipeline is not None and any(isinstance(d, AdversarialFeatures) for d in self.pipeline.image)


NO_EFFECT = 1e-3   # below this fraction of changed pixels a setting serves the undefended images


def changed_fraction(undefended: torch.Tensor, served_dir: Path) -> float:
    """Fraction of pixels of the served images that differ from the undefended answers to the same queries
    (both sets hold the same positions of the owner's code stream): 0 means the defense did nothing."""
    b = queryset.load(served_dir, limit=len(undefended)).images
    m = min(len(undefended), len(b))
    return float((undefended[:m] != b[:m]).float().mean()) if m else 0.0


def slug(spec: str) -> str:
    """A file-name-safe, readable name for one setting: 'noise:sigma=0.1' -> 'noise-sigma0.1'."""
    s = re.sub(r"[^A-Za-z0-9.]+", "-", spec.replace("=", "")).strip("-")
    return s or BASELINE


def _open(target: Target, opts: DefendOptions):
    return target.oracle(opts.queries, prior=opts.prior, seed=opts.seed)


def _validate_remote(opts: DefendOptions, target: Target, baseline: Target | None) -> tuple[dict, dict]:
    """Check a URL run before any query is bought: (the target's config, what its measured rows are keyed on).

    The server (and a baseline server) were opened with their keys, so a wrong URL or key failed already."""
    server = _open(target, opts)
    if opts.knowledge == "latents" and not server.accepts_latents:
        raise DataError(f"{opts.target}: this server does not accept latent codes; use --knowledge images")
    ids = {"target_sha256": server.model_id, "served_defense": server.defense or "unknown", "baseline": None,
           "baseline_sha256": None}
    if baseline is not None:
        shape, ids["baseline_sha256"] = (baseline.resolution, baseline.channels), baseline.model_id
        if opts.knowledge == "latents" and not baseline.accepts_latents:
            raise DataError(f"{opts.baseline}: the baseline server does not accept latent codes; use "
                            f"--knowledge images")
        if shape != (server.resolution, server.channels):
            raise ValueError(f"--baseline {opts.baseline} makes {shape[1]}x{shape[0]}x{shape[0]} images, the "
                             f"server {server.channels}x{server.resolution}x{server.resolution}: not the same model")
        ids["baseline"] = opts.baseline
    return server.config(), ids


def _check_budgets(run, opts: DefendOptions, plan: list[Setting]) -> None:
    """Every server key can still pay for what its query set lacks, before the first query is bought.

    Conservative: ids the key already paid for elsewhere would be replayed free, and are counted here."""
    for setting in plan:
        if not setting.remote:
            continue
        meta = queryset.read_meta(run.file(f"queries-{setting.name}"))
        need = max(0, opts.queries - (meta["count"] if meta else 0))
        left = setting.open().remaining
        if need > left:
            raise BudgetExceeded(f"{setting.target}: the key has {left} images left, the {setting.name} query "
                                 f"set needs {need} more (--queries {opts.queries})")


def _collect(run, opts: DefendOptions, setting: Setting, folder: Path) -> ImageSet:
    """Buy ``queries`` images of one setting into ``folder`` (resumable) and load them as a training set.

    Under torchrun the queries are split across ranks (``queryset.collect``); every rank loads the set after
    the last write has completed, so all train on the same images.
    """
    spec = setting.spec
    marker = folder / "defense.json"
    recorded = run.decide(lambda: json.loads(marker.read_text()).get("defense") if marker.exists() else None)
    if recorded is not None and recorded != spec:
        raise DataError(f"{folder}: holds queries served with defense {recorded!r}, this setting is "
                        f"{spec!r}; use another --out")
    run.write(write_json, marker, {"defense": spec})
    queryset.collect(setting.open(), folder, opts.queries, target=setting.target,
                     chunk_size=200 if setting.slow else 1000, progress=opts.progress, knowledge=opts.knowledge)
    qs = queryset.load(folder, limit=opts.queries)
    return ImageSet(qs.images, None, f"{qs.fingerprint}:defense:{spec}", qs.source, codes=qs.codes)


def _local_plan(exp, opts: DefendOptions, families: list[Family]) -> list[Setting]:
    """The undefended target, then every setting of every family, all applied in this process (on the one
    copy of the target the experiment holds)."""
    def setting(pipeline: DefensePipeline, family: Family | None = None, value=None) -> Setting:
        def oracle():
            return exp.oracle(opts.queries, prior=opts.prior, seed=opts.seed, **pipeline.oracle_hooks())

        spec = pipeline.spec()
        return Setting(spec, slug(spec), opts.target, oracle, pipeline, family.label if family else BASELINE,
                       family.swept if family else None, value)

    return [setting(DefensePipeline([]))] + [setting(s, f, f.values[i] if f.swept else None)
                                             for f in families for i, s in enumerate(f.settings)]


def _remote_plan(opts: DefendOptions, target: Target, baseline: Target | None, served_spec: str) -> list[Setting]:
    """The baseline (when given), then what the server serves: one setting, its defense chosen by the owner."""
    plan = []
    if baseline is not None:
        plan.append(Setting(BASELINE, "baseline", opts.baseline, lambda: _open(baseline, opts),
                            remote=not baseline.in_process))
    plan.append(Setting(served_spec, SERVED, opts.target, lambda: _open(target, opts), family=SERVED, remote=True))
    return plan


def _preview(exp, opts: DefendOptions, pipeline: DefensePipeline, n: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    """(undefended, defended) images for the same n prior codes, for the side-by-side picture."""
    plain = exp.oracle(n, prior=opts.prior, seed=opts.seed + 99)
    guarded = exp.oracle(n, prior=opts.prior, seed=opts.seed + 99, **pipeline.oracle_hooks())
    return plain.query(n), guarded.query(n)     # both from position 0 of the same seed's stream: same codes


def _picture(exp, opts: DefendOptions, setting: Setting, picture: str) -> None:
    """Undefended | served for the same codes in process; over HTTP the bought images (other codes)."""
    run = exp.folder
    if setting.pipeline is not None:
        plain, guarded = _preview(exp, opts, setting.pipeline, n=12 if setting.slow else 36)
        run.side_by_side(plain, guarded, picture)
        return
    served = queryset.load(run.file(f"queries-{setting.name}"), limit=36).images
    if setting.name == SERVED and opts.baseline:
        run.side_by_side(queryset.load(run.file("queries-baseline"), limit=36).images, served, picture)
    else:
        run.grid(served, picture)


class _LazyEvaluator:
    """Target and real statistics, computed only when some setting still has to be measured."""
    def __init__(self, build: Callable):
        self.build, self.ev = build, None

    def get(self):
        if self.ev is None:
            self.ev = self.build()
        return self.ev

    def mu(self) -> torch.Tensor:
        return torch.as_tensor(self.get().target_stats.mu, dtype=torch.float32)


def _evaluator(exp, opts: DefendOptions, config: dict, baseline: Target | None) -> _LazyEvaluator:
    """What fidelity is measured against: the undefended target (in process), or a baseline's images."""
    run = exp.folder
    if not exp.remote:
        return _LazyEvaluator(exp.evaluator)       # the experiment's target, read once
    if baseline is not None and baseline.in_process:
        return _LazyEvaluator(lambda: Evaluator(baseline.loaded, opts.fid_n, opts.eval_data, opts.progress))
    if baseline is not None:     # the baseline row is first in the plan, so its query set exists when this is built
        return _LazyEvaluator(lambda: ServedEvaluator(queryset.load(run.file("queries-baseline"), limit=opts.fid_n),
                                                      opts.fid_n, opts.eval_data, config, opts.progress))
    return _LazyEvaluator(lambda: ServedEvaluator(None, opts.fid_n, opts.eval_data, config, opts.progress))


def _result_key(exp, opts: DefendOptions, spec: str, remote: dict | None) -> dict:
    """Everything a setting's measured row depends on; a stored row is reused only if all of it matches.

    ``remote``: for a URL target, the server's model id and defense and the baseline's identity."""
    keep = ("target", "attack", "queries", "attack_kimg", "attack_width", "attack_latent_dim", "batch", "fid_n",
            "eval_data", "prior", "seed", "knowledge", "distill")
    ident = remote if remote is not None else {"target_sha256": exp.loaded.model_id}
    return {"defense": spec, **ident, **{k: getattr(opts, k) for k in keep}, "measures": MEASURES}


def run_defend(opts: DefendOptions, run=None, target=None, baseline=None) -> dict:
    """Measure every defense setting against the undefended baseline; writes the run folder, returns metrics.

    A URL target measures the one setting its server serves (see the module docstring). ``target`` and
    ``baseline``: Targets opened once by the caller (with hints and keys); default: opened from ``opts``."""
    target = open_target(target if target is not None else opts.target, hints=opts.target_hints)
    if baseline is None and opts.baseline:
        baseline = open_target(opts.baseline)
    remote = not target.in_process
    families = opts.check(remote=remote)
    if remote:
        target_cfg, ident = _validate_remote(opts, target, baseline)
    else:
        ident, target_cfg = None, target.config
    run = run or RunFolder(opts.out, "defend", {**asdict(opts), "target_info": target.describe()})
    run.start_over(opts.fresh)
    exp = Experiment(run, target, fid_n=opts.fid_n, eval_data=opts.eval_data, progress=opts.progress)
    plan = (_remote_plan(opts, target, baseline, ident["served_defense"]) if remote
            else _local_plan(exp, opts, families))
    if remote:
        run.decide(_check_budgets, run, opts, plan)
    lazy = _evaluator(exp, opts, target_cfg, baseline)
    cfg = attack_config(opts, target_cfg["resolution"], target_cfg["channels"], opts.attack_kimg,
                        **knowledge_settings(opts, target_cfg))
    rows = [_measure(exp, opts, setting, cfg, lazy, ident) for setting in plan]
    base = rows[0] if plan[0].family == BASELINE else None     # over HTTP only with --baseline
    _compare(run, opts, rows, base, remote)
    metrics = {"target": opts.target, "attack": opts.attack, "queries": opts.queries, "fid_n": opts.fid_n,
               "attack_kimg": opts.attack_kimg, "prior": opts.prior, "seed": opts.seed,
               "target_fid": (base or rows[0])["target_fid"], "baseline": base, "settings": rows}
    metrics["target_summary"] = target.summary()
    if remote:
        metrics.update(served_defense=ident["served_defense"], baseline_source=opts.baseline)
    labels = [f.label for f in families] if not remote else [SERVED]
    metrics["plots"] = _plots(run, rows, labels, base)
    run.write_metrics(metrics)
    _write_report(run, opts, rows, base, metrics, remote, baseline is not None and not baseline.in_process)
    return metrics


def _measure(exp, opts: DefendOptions, setting: Setting, cfg, lazy: _LazyEvaluator, ident: dict | None) -> dict:
    """One setting's row: reused from its result.json when every input matches, else bought, trained, measured."""
    run, name, spec = exp.folder, setting.name, setting.spec
    picture, ckpt = f"samples-{name}.png", run.file(f"attack-{name}.pt")
    computed = []

    def compute() -> dict:
        computed.append(name)
        for d in (setting.pipeline.image if setting.pipeline is not None else []):
            if isinstance(d, AdversarialFeatures) and d.reference is None:
                d.set_reference(lazy.mu())   # push away from the undefended target's own features
        served = _collect(run, opts, setting, run.file(f"queries-{name}"))
        train_attack(cfg, served, ckpt, progress=opts.progress)
        ev = lazy.get()
        n_util = min(opts.fid_n, len(served))
        served_stats = image_stats(served.images[:n_util], f"served:{spec}", progress=opts.progress)
        anchored = ev.target_stats is not None
        row = {"defense": spec,
               "utility": fid(served_stats, ev.real_stats) if ev.real_stats is not None else None,
               "served_vs_target": fid(served_stats, ev.target_stats) if anchored else None,
               "served_vs_target_prdc": coverage(ev.target_stats, served_stats) if anchored else None,
               **ev.attack(ckpt, against={"attack_vs_served": served_stats}),
               "utility_n": n_util, "queries_dir": f"queries-{name}", "attack_checkpoint": ckpt.name,
               "target_fid": ev.target_fid(),
               "real_note": None if ev.real_stats is not None else getattr(ev, "real_error", "no real data"),
               "target_note": None if anchored else ev.target_error}
        return row

    # Under torchrun rank 0's reading decides for all ranks (Experiment.cached): a rank that saw a file rank
    # 0 just wrote would skip a write the others wait for at its barrier.
    row = exp.cached(f"queries-{name}/result.json", _result_key(exp, opts, spec, ident), compute,
                     requires=(ckpt.name,))
    row.update({"family": setting.family, "swept": setting.swept,
                "value": redacted_value(setting.swept, setting.value)})     # a swept watermark key stays out
    for side, found in (("served", row.get("served_vs_target_prdc")), ("copy", row.get("vs_target"))):
        for name in ("precision", "coverage"):     # quality and coverage, flat for the report's table
            row[f"{side}_{name}"] = found[name] if found else None
    if computed or not run.decide(run.file(picture).exists):
        _picture(exp, opts, setting, picture)
    row["picture"] = picture
    return row


def _compare(run, opts: DefendOptions, rows: list[dict], base: dict | None, remote: bool) -> None:
    """Each row's change from the baseline, and (in process only) the fraction of pixels its defense changed.

    Over HTTP the server draws codes from its own secret stream, so served and baseline images answer
    different codes and a pixel comparison means nothing: changed_pixels is n/a there."""
    local = not remote
    undefended = queryset.load(run.file(base["queries_dir"]), limit=opts.fid_n).images if local else None
    for r in rows:
        for key in ("utility", "fidelity", "accuracy"):
            r[f"{key}_change"] = (None if base is None or r[key] is None or base[key] is None
                                  else r[key] - base[key])
        r["changed_pixels"] = changed_fraction(undefended, run.file(r["queries_dir"])) if local else None


def _write_report(run, opts: DefendOptions, rows: list[dict], base: dict | None, metrics: dict, remote: bool,
                  baseline_remote: bool) -> None:

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
        ("Definitions", _definitions(opts, base, remote, baseline_remote) + "".join(f"\n\n{n}" for n in notes)),
        ("Target", metrics["target_summary"]),
        ("Results", table),
        ("Trade-off", "\n\n".join(f"![{p}]({p})" for p in metrics["plots"])
         or "No plot: it needs utility (real data) and an undefended baseline."),
        ("Served samples", _samples_text(opts, rows, remote)),
    ]
    title = (f"The defense served by {opts.target} (`{metrics['served_defense']}`) against a {opts.attack} attack"
             if remote else f"Defenses for {opts.target} against a {opts.attack} attack")
    run.write_report(title, sections)


def _definitions(opts: DefendOptions, base: dict | None, remote: bool, baseline_remote: bool) -> str:
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


def _samples_text(opts: DefendOptions, rows: list[dict], remote: bool) -> str:
    if not remote:
        head = "Left: undefended target. Right: served through the defense (same codes)."
    elif opts.baseline:
        head = ("Served row: left the baseline's images, right the server's; other codes (the server draws "
                "its own). Baseline row: its images.")
    else:
        head = "The images the server sent."
    return head + "\n\n" + "\n\n".join(f"**{r['defense']}**\n\n![{r['defense']}]({r['picture']})" for r in rows)


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
