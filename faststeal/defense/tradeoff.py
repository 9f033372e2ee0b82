"""The utility/security trade-off of defended serving, measured end to end.

For every defense setting (and the undefended baseline, in the same run): the owner serves ``queries``
images through the defended oracle; utility = FID(served, real) is what an honest user sees; an attack GAN
trained on exactly those images gives security = its fidelity FID(attack, undefended target) and accuracy
FID(attack, real). Fidelity is always against the undefended target, since that is what the owner protects.
Each setting keeps its query set, attack checkpoint and measured row (``queries-<setting>/result.json``, keyed
on every option it depends on) in the run folder, so a rerun reuses finished work and resumes unfinished work.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from faststeal.attack import queryset
from faststeal.attack.extract import AttackOptions, Evaluator, attack_config, knowledge_settings, train_attack
from faststeal.attack.oracle import TargetOracle
from faststeal.checkpoint import load_checkpoint
from faststeal.data import DataError, ImageSet
from faststeal.evaluate import fid, image_stats
from faststeal.fileio import write_json

from .adversarial import AdversarialFeatures
from .pipeline import DefensePipeline, Family, parse_family

BASELINE = "none"


@dataclass
class DefendOptions(AttackOptions):
    defenses: list[str] = field(default_factory=list)   # one --defense value each (a family, maybe a sweep)
    out: str = "runs/defend"


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


def _validate(opts: DefendOptions) -> list[Family]:
    if opts.queries < 1:
        raise ValueError(f"queries must be >= 1, got {opts.queries}")
    if opts.fid_n < 2:
        raise ValueError(f"fid_n must be >= 2, got {opts.fid_n}")
    if opts.attack_kimg <= 0:
        raise ValueError(f"attack_kimg must be > 0, got {opts.attack_kimg}")
    if not opts.defenses:
        raise ValueError("give at least one defense, e.g. noise:sigma=0.05,0.1")
    families = [parse_family(text, seed=opts.seed) for text in opts.defenses]
    specs = [s.spec() for f in families for s in f.settings]
    dupes = sorted({s for s in specs if specs.count(s) > 1})
    if dupes:
        raise ValueError(f"defense setting {dupes[0]!r} is given twice")
    return families


def _collect(run, opts: DefendOptions, pipeline: DefensePipeline, folder: Path) -> ImageSet:
    """Buy ``queries`` defended images into ``folder`` (resumable) and load them as a training set.

    Under torchrun the queries are split across ranks (``queryset.collect``); every rank loads the set after
    the last write has completed, so all train on the same images.
    """
    spec = pipeline.spec()
    marker = folder / "defense.json"
    recorded = run.decide(lambda: json.loads(marker.read_text()).get("defense") if marker.exists() else None)
    if recorded is not None and recorded != spec:
        raise DataError(f"{folder}: holds queries served with defense {recorded!r}, this setting is "
                        f"{spec!r}; use another --out")
    run.write(write_json, marker, {"defense": spec})
    oracle = TargetOracle(opts.target, budget=opts.queries, prior=opts.prior, seed=opts.seed,
                          **pipeline.oracle_hooks())
    queryset.collect(oracle, folder, opts.queries, target=opts.target,
                     chunk_size=200 if any(isinstance(d, AdversarialFeatures) for d in pipeline.image) else 1000,
                     progress=opts.progress, knowledge=opts.knowledge)
    qs = queryset.load(folder, limit=opts.queries)
    return ImageSet(qs.images, None, f"{qs.fingerprint}:defense:{spec}", qs.source, codes=qs.codes)


def _preview(opts: DefendOptions, pipeline: DefensePipeline, n: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    """(undefended, defended) images for the same n prior codes, for the side-by-side picture."""
    plain = TargetOracle(opts.target, budget=n, prior=opts.prior, seed=opts.seed + 99)
    guarded = TargetOracle(opts.target, budget=n, prior=opts.prior, seed=opts.seed + 99,
                           **pipeline.oracle_hooks())
    return plain.query(n), guarded.query(n)     # both from position 0 of the same seed's stream: same codes


class _LazyEvaluator:
    """Target and real statistics, computed only when some setting still has to be measured."""

    def __init__(self, opts: DefendOptions):
        self.opts, self.ev = opts, None

    @property
    def built(self) -> bool:
        return self.ev is not None

    def get(self) -> Evaluator:
        if self.ev is None:
            self.ev = Evaluator(self.opts.target, self.opts.fid_n, self.opts.eval_data, self.opts.progress)
        return self.ev

    def mu(self) -> torch.Tensor:
        return torch.as_tensor(self.get().target_stats.mu, dtype=torch.float32)


def _result_key(opts: DefendOptions, spec: str) -> dict:
    """Everything a setting's measured row depends on; a stored row is reused only if all of it matches."""
    from faststeal.checkpoint import content_digest

    keep = ("target", "attack", "queries", "attack_kimg", "attack_width", "attack_latent_dim", "batch", "fid_n",
            "eval_data", "prior", "seed", "knowledge", "distill")
    return {"defense": spec, "target_sha256": content_digest(opts.target), **{k: getattr(opts, k) for k in keep}}


def _cached_row(path: Path, key: dict, ckpt: Path) -> dict | None:
    if not path.exists() or not ckpt.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return stored["row"] if stored.get("key") == json.loads(json.dumps(key)) else None


def run_defend(opts: DefendOptions, run=None) -> dict:
    """Measure every defense setting against the undefended baseline; writes the run folder, returns metrics."""
    from faststeal.report import RunFolder, line_plot, markdown_table

    families = _validate(opts)
    target_cfg = load_checkpoint(opts.target)["config"]
    res, ch = target_cfg["resolution"], target_cfg["channels"]
    run = run or RunFolder(opts.out, "defend", asdict(opts))
    run.start_over(opts.fresh)
    lazy = _LazyEvaluator(opts)
    plan = [(None, None, DefensePipeline([]))] + [(f, f.values[i] if f.swept else None, s)
                                                  for f in families for i, s in enumerate(f.settings)]
    rows, previews = [], []
    cfg = attack_config(opts, res, ch, opts.attack_kimg, **knowledge_settings(opts, target_cfg))
    for family, value, pipeline in plan:
        spec, name = pipeline.spec(), slug(pipeline.spec())
        picture, result_file = f"samples-{name}.png", run.file(f"queries-{name}") / "result.json"
        key = _result_key(opts, spec)
        ckpt = run.file(f"attack-{name}.pt")
        # Under torchrun rank 0's reading decides for all ranks: a rank that saw a file rank 0 just wrote
        # would skip a write the others wait for at its barrier.
        row = run.decide(_cached_row, result_file, key, ckpt)
        fresh = row is None
        if fresh:
            for d in pipeline.image:
                if isinstance(d, AdversarialFeatures) and d.reference is None:
                    d.set_reference(lazy.mu())   # push away from the undefended target's own features
            served = _collect(run, opts, pipeline, run.file(f"queries-{name}"))
            train_attack(cfg, served, ckpt, progress=opts.progress)
            ev = lazy.get()
            n_util = min(opts.fid_n, len(served))
            served_stats = image_stats(served.images[:n_util], f"served:{spec}", progress=opts.progress)
            row = {"defense": spec,
                   "utility": fid(served_stats, ev.real_stats) if ev.real_stats is not None else None,
                   "served_vs_target": fid(served_stats, ev.target_stats), **ev.attack(ckpt),
                   "utility_n": n_util, "queries_dir": f"queries-{name}", "attack_checkpoint": ckpt.name,
                   "target_fid": ev.target_fid(),
                   "real_note": None if ev.real_stats is not None else getattr(ev, "real_error", "no real data")}
            run.write(write_json, result_file, {"key": key, "row": row})
        row.update({"family": family.label if family else BASELINE, "swept": family.swept if family else None,
                    "value": value})
        if fresh or not run.decide(run.file(picture).exists):
            slow = any(isinstance(d, AdversarialFeatures) for d in pipeline.image)
            plain, guarded = _preview(opts, pipeline, n=12 if slow else 36)
            run.side_by_side(plain, guarded, picture)
        rows.append(row)
        previews.append((spec, picture))

    base = rows[0]
    undefended = queryset.load(run.file(base["queries_dir"]), limit=opts.fid_n).images
    for r in rows:
        for key in ("utility", "fidelity", "accuracy"):
            r[f"{key}_change"] = (None if r[key] is None or base[key] is None else r[key] - base[key])
        r["changed_pixels"] = changed_fraction(undefended, run.file(r["queries_dir"]))
    idle = [r["defense"] for r in rows[1:] if r["changed_pixels"] < NO_EFFECT]
    metrics = {"target": opts.target, "attack": opts.attack, "queries": opts.queries, "fid_n": opts.fid_n,
               "attack_kimg": opts.attack_kimg, "prior": opts.prior, "seed": opts.seed,
               "target_fid": base["target_fid"], "baseline": base, "settings": rows}

    plots = _plots(run, rows, families, base, line_plot)
    metrics["plots"] = plots
    run.write_metrics(metrics)

    table = markdown_table(rows, ["defense", "utility", "fidelity", "accuracy", "served_vs_target",
                                  "changed_pixels"])
    if idle:
        table += ("\n\n**No effect on this target:** " + ", ".join(f"`{d}`" for d in idle) + " served the "
                  "undefended images (fewer than 0.1% of pixels changed). A latent defense that only rescales "
                  "codes does nothing to a generator that normalises its latent input, as PGGAN does; any "
                  "change in its fidelity or accuracy is training noise.")
    acc_note = ("" if base["real_note"] is None
                else f"\n\nNo real data, so no utility or accuracy: {base['real_note']}")
    sections = [
        ("Definitions", "utility = FID(served images, real data): what honest users lose (lower is better "
                        "for them). fidelity = FID(attack, undefended target) and accuracy = FID(attack, real): "
                        "what the thief gets (higher means the defense works). served_vs_target = FID(served, "
                        "undefended target). changed_pixels = fraction of served pixels that differ from the "
                        f"undefended answer to the same query. {opts.queries} queries per setting "
                        f"({opts.prior} prior), "
                        f"{opts.attack} attack trained for {opts.attack_kimg} kimg, FID on {opts.fid_n} "
                        f"images per side (utility on min(fid_n, queries)); the first row is the undefended "
                        f"baseline measured in this run.{acc_note}"),
        ("Results", table),
        ("Trade-off", "\n\n".join(f"![{p}]({p})" for p in plots) or "No plot: no real data for utility."),
        ("Served samples", "Left: undefended target. Right: served through the defense (same codes).\n\n" +
         "\n\n".join(f"**{spec}**\n\n![{spec}]({pic})" for spec, pic in previews)),
    ]
    run.write_report(f"Defenses for {opts.target} against a {opts.attack} attack", sections)
    return metrics


def _plots(run, rows, families, base, line_plot) -> list[str]:
    """trade-off PNGs: utility on x; fidelity / accuracy on y; one line per family, starting at the baseline."""
    if base["utility"] is None:
        return []
    out = []
    for metric in ("fidelity", "accuracy"):
        series = {}
        for family in families:
            pts = [base] + [r for r in rows if r["family"] == family.label]
            if any(p[metric] is None for p in pts):
                continue
            series[family.label] = ([p["utility"] for p in pts], [p[metric] for p in pts])
        if series:
            name = f"tradeoff-{metric}.png"
            run.write(line_plot, run.file(name), series, "utility = FID(served, real)  (lower: users lose less)",
                      f"{metric} of the attack  (higher: thief gets less)",
                      f"Defenses: {metric} vs utility (first point: undefended)")
            out.append(name)
    return out
