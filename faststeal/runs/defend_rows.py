"""One row of the defend table per setting: its images bought, a thief trained on them, both measured.

utility = FID(served, real) is what an honest user sees; the thief's security figures are its fidelity
FID(attack, undefended target) and accuracy FID(attack, real). Each row is stored in its query folder
(``queries-<setting>/result.json``) keyed on every option it depends on, so a rerun reuses finished rows and
resumes unfinished ones.
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch

from faststeal.attack import queryset
from faststeal.attack.thief import train_attack
from faststeal.data import DataError, ImageSet
from faststeal.defense.adversarial import AdversarialFeatures
from faststeal.fileio import write_json
from faststeal.report import Stopwatch

from .defend_plan import DefendPlan, Setting
from .experiment import MEASURES
from .options import DEFAULT_MINUTES, AttackOptions

KNOBS = ("attack_lr", "distill_only", "distill_lr", "lr_decay", "r1_gamma", "augment", "ada_target", "ema_kimg",
         "attack_precision", "perceptual", "perceptual_images", "fresh_fakes", "minutes")
KNOB_DEFAULTS = ({f.name: f.default for f in fields(AttackOptions) if f.name in KNOBS}
                 | {"minutes": DEFAULT_MINUTES, "attack_precision": "float32", "distill_only": 0.75, "ada_target": 0.0,
                    "fresh_fakes": False})


def measure_rows(plan: DefendPlan, clock: Stopwatch) -> tuple[list[dict], set[str]]:
    """Every setting's row, in plan order (the undefended baseline first when the plan has one), and the names
    of the settings measured in this call (the others were stored already). ``clock``: the run's wall time by
    stage, every setting's buying, training and measuring added to its stage."""
    rows, computed = [], set()
    for setting in plan.settings:
        row, fresh = _row(plan, setting, clock)
        rows.append(row)
        if fresh:
            computed.add(setting.name)
        else:
            clock.lap("stored rows read")
    return rows, computed


def _row(plan: DefendPlan, setting: Setting, clock: Stopwatch) -> tuple[dict, bool]:
    """One setting's row: reused from its result.json when every input matches, else bought, trained, measured
    (then the second value is True)."""
    opts, exp, run, name, spec = plan.opts, plan.exp, plan.run, setting.name, setting.spec
    key, folder, ckpt = _result_key(plan, spec), run.file(f"queries-{name}"), run.file(f"attack-{name}.pt")
    computed = []

    def compute() -> dict:
        computed.append(name)
        for d in (setting.pipeline.image if setting.pipeline is not None else []):
            if isinstance(d, AdversarialFeatures) and d.reference is None:   # push away from the target's features
                d.set_reference(torch.as_tensor(exp.evaluator().target_stats.mu, dtype=torch.float32))
        served = _collect(plan, setting, folder)
        clock.lap("queries")
        # over HTTP with a second server as baseline, its images stand in for the undefended target (its query
        # set is the plan's first, so it exists by now)
        stand_in = (queryset.load(run.file("queries-baseline"), limit=opts.fid_n)
                    if plan.remote and plan.baseline is not None and not plan.baseline.in_process else None)
        train_attack(plan.attack, served, ckpt, progress=opts.progress)
        clock.lap("training")
        ev = exp.evaluator(served=stand_in)
        n_util = min(opts.fid_n, len(served))
        copy = ev.copy_stats(ckpt)
        row = {"defense": spec, **ev.attack(copy), **ev.served(served.images[:n_util], copy), "utility_n": n_util,
               "queries_dir": f"queries-{name}", "attack_checkpoint": ckpt.name, "target_fid": ev.target_fid(),
               "real_note": None if ev.real_stats is not None else ev.real_error,
               "target_note": None if ev.target_stats is not None else ev.target_error}
        clock.lap("measurement")
        return row

    # Under torchrun rank 0's reading decides for all ranks (Experiment.cached): a rank that saw a file rank
    # 0 just wrote would skip a write the others wait for at its barrier.
    row = exp.cached(f"queries-{name}/result.json", key, compute, requires=(ckpt.name,))
    row.update({"family": setting.family, "swept": setting.swept, "value": setting.value})
    for side, found in (("served", row.get("served_vs_target_prdc")), ("copy", row.get("vs_target"))):
        for measure in ("precision", "coverage"):     # quality and coverage, flat for the report's table
            row[f"{side}_{measure}"] = found[measure] if found else None
    return row, bool(computed)


def _collect(plan: DefendPlan, setting: Setting, folder: Path) -> ImageSet:
    """Buy ``queries`` images of one setting into ``folder`` (resumable) and load them as a training set.

    Under torchrun the queries are split across ranks (``queryset.collect``); every rank loads the set after
    the last write has completed, so all train on the same images.
    """
    run, opts, spec = plan.run, plan.opts, setting.spec
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


def _result_key(plan: DefendPlan, spec: str) -> dict:
    """Everything a setting's measured row depends on; a stored row is reused only if all of it matches.

    For a URL target: the server's model id and defense and the baseline's identity (plan.ident)."""
    keep = ("target", "attack", "queries", "attack_kimg", "attack_width", "attack_latent_dim", "batch", "fid_n",
            "eval_data", "prior", "seed", "knowledge", "distill")
    ident = plan.ident if plan.ident is not None else {"target_sha256": plan.exp.loaded.model_id}
    # the thief's knobs enter the key only when set away from their defaults, so rows stored before they
    # were keyed still match; the default time budget and none are not told apart (rows before the budget)
    knobs = {k: getattr(plan.opts, k) for k in KNOBS if getattr(plan.opts, k) not in (KNOB_DEFAULTS[k], None)}
    return {"defense": spec, **ident, **{k: getattr(plan.opts, k) for k in keep}, **knobs, "measures": MEASURES}
