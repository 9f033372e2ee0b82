"""Model extraction end to end: query the target, train an attack GAN, measure fidelity and accuracy.

Fidelity extraction trains the attack GAN on the queried images only. Accuracy extraction adds what a
stronger adversary holds: part of the real training data (fine-tune the extracted model on it, or train on
queries + real images) and/or the target's discriminator (discriminator rejection sampling of the queries).
Every variant spends the same query budget, so their accuracies are directly comparable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from faststeal import distributed
from faststeal.checkpoint import load_checkpoint, load_discriminator, load_generator
from faststeal.data import ImageSet, load_dataset
from faststeal.evaluate import fid, generator_stats, real_data_for, real_stats
from faststeal.train import Trainer, TrainConfig, generate

from . import drs, queryset
from .oracle import TargetOracle


@dataclass
class AttackOptions:
    """What every attack run shares (extract, sweep, defend): the target, the attack GAN's size, the budget,
    the evaluation size and where the run folder goes."""

    target: str
    attack: str = "pggan"
    queries: int = 10_000
    attack_kimg: float = 80.0
    attack_width: int = 64
    attack_latent_dim: int = 128
    batch: int = 32
    fid_n: int = 2000
    eval_data: str | None = None        # default: the target's own training data
    prior: str = "normal"
    seed: int = 0
    out: str = "runs/extract"
    progress: bool = True


@dataclass
class ExtractOptions(AttackOptions):
    real: str | None = None             # adversary's real data (accuracy extraction)
    real_count: int = 0
    target_discriminator: bool = False
    drs_rate: float = 0.5               # fraction of queries DRS keeps
    finetune_kimg: float | None = None  # default: attack_kimg / 3
    query_set: str | None = None        # reuse a query-set folder


def attack_config(opts: AttackOptions, resolution: int, channels: int, kimg: float, *, grow: bool = True,
                  seed_offset: int = 0) -> TrainConfig:
    return TrainConfig(arch=opts.attack, resolution=resolution, channels=channels,
                       latent_dim=opts.attack_latent_dim, width=opts.attack_width, batch=opts.batch, kimg=kimg,
                       snapshot_kimg=max(kimg / 4, 0.001), seed=opts.seed + seed_offset, grow=grow)


def train_attack(config: TrainConfig, data: ImageSet, path: Path, *, init_from=None, progress=True) -> Path:
    """Train (or reuse, if ``path`` already finished) one attack GAN; returns its checkpoint.

    Under torchrun every rank must take the same branch, so a file counts only if every rank sees it.
    """
    exists = distributed.all_true(path.exists())
    if exists:
        state = load_checkpoint(path)
        if state["progress"]["kimg"] >= config.kimg and state.get("data_fingerprint") == data.fingerprint:
            return path
    trainer = Trainer(config, data, checkpoint_path=path, run_dir=path.with_suffix(""), progress=progress)
    if init_from is not None:
        trainer.init_weights(init_from)
    elif exists:
        trainer.resume(path)
    trainer.run()
    return path


class Evaluator:
    """FID statistics of the target and the real data, computed once and shared by every attack variant."""

    def __init__(self, target: str, fid_n: int, eval_data: str | None, progress: bool = True):
        self.fid_n, self.progress = fid_n, progress
        config = load_checkpoint(target)["config"]
        self.target_stats = generator_stats(target, fid_n, name="target", progress=progress, cache=True)
        try:
            self.real = real_data_for(config, eval_data)
        except (ValueError, OSError) as exc:
            if eval_data:
                raise
            self.real, self.real_error = None, str(exc)
        self.real_stats = real_stats(self.real, fid_n, progress) if self.real is not None else None

    def target_fid(self) -> float | None:
        return fid(self.target_stats, self.real_stats) if self.real_stats is not None else None

    def attack(self, checkpoint) -> dict:
        stats = generator_stats(checkpoint, self.fid_n, name="attack", progress=self.progress)
        return {"fidelity": fid(stats, self.target_stats),
                "accuracy": fid(stats, self.real_stats) if self.real_stats is not None else None}


def adversary_real_subset(spec: str, count: int, resolution: int, channels: int, seed: int,
                          classes=None) -> ImageSet:
    """The K real images the adversary holds: a seeded random subset of the named data."""
    data = load_dataset(spec, resolution=resolution, channels=channels, classes=classes)
    if count <= 0 or count > len(data):
        raise ValueError(f"--real-count must be in 1..{len(data)} for {spec}, got {count}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7))[:count]
    return ImageSet(data.images[idx], None, f"{data.fingerprint}:subset:{seed}:{count}", f"{spec}[{count}]")


def concat_sets(a: ImageSet, b: ImageSet) -> ImageSet:
    return ImageSet(torch.cat([a.images, b.images]), None, f"{a.fingerprint}+{b.fingerprint}",
                    f"{a.source}+{b.source}")


def run_extract(opts: ExtractOptions, run=None) -> dict:
    """The whole extraction experiment; writes into ``run`` (a RunFolder) and returns metrics."""
    from faststeal.report import RunFolder, markdown_table

    run = run or RunFolder(opts.out, "extract", asdict(opts))
    target_cfg = load_checkpoint(opts.target)["config"]
    res, ch = target_cfg["resolution"], target_cfg["channels"]

    # 1. Buy the queries (black box: only uint8 images come back).
    oracle = TargetOracle(opts.target, budget=opts.queries, prior=opts.prior, seed=opts.seed)
    qdir = Path(opts.query_set) if opts.query_set else run.file("queries")
    queryset.collect(oracle, qdir, opts.queries, target=opts.target, progress=opts.progress)
    queries = queryset.load(qdir, limit=opts.queries)

    # 2. Fidelity extraction: an attack GAN trained on the queries alone.
    base_cfg = attack_config(opts, res, ch, opts.attack_kimg)
    attack_ckpt = train_attack(base_cfg, queries, run.file("attack.pt"), progress=opts.progress)

    # 3. Measure.
    ev = Evaluator(opts.target, opts.fid_n, opts.eval_data, opts.progress)
    base = ev.attack(attack_ckpt)
    metrics = {"target": opts.target, "attack": opts.attack, "queries": opts.queries, "fid_n": opts.fid_n,
               "prior": opts.prior, "fidelity": base["fidelity"], "accuracy": base["accuracy"],
               "target_fid": ev.target_fid(), "attack_kimg": opts.attack_kimg, "seed": opts.seed}
    variants = [{"variant": "queries only (fidelity extraction)", **base, "train_images": len(queries)}]

    # 4. Accuracy extraction, same budget.
    real_subset = None
    if opts.real and opts.real_count > 0:
        real_subset = adversary_real_subset(opts.real, opts.real_count, res, ch, opts.seed,
                                            classes=(target_cfg.get("extra") or {}).get("classes")
                                            if opts.real == target_cfg.get("data_source") else None)
        ft_kimg = opts.finetune_kimg if opts.finetune_kimg is not None else opts.attack_kimg / 3
        ft = train_attack(attack_config(opts, res, ch, ft_kimg, grow=False, seed_offset=1), real_subset,
                          run.file("attack-finetuned.pt"), init_from=attack_ckpt, progress=opts.progress)
        variants.append({"variant": f"+ fine-tune on {opts.real_count} real", **ev.attack(ft),
                         "train_images": opts.real_count})
        mixed = concat_sets(queries, real_subset)
        mx = train_attack(attack_config(opts, res, ch, opts.attack_kimg, seed_offset=2), mixed,
                          run.file("attack-mixed.pt"), progress=opts.progress)
        variants.append({"variant": f"queries + {opts.real_count} real", **ev.attack(mx),
                         "train_images": len(mixed)})
    if opts.target_discriminator:
        target_d = load_discriminator(opts.target)
        scores = drs.discriminator_scores(target_d, queries.images)
        if real_subset is not None:
            a, b = drs.calibrate_logistic(drs.discriminator_scores(target_d, real_subset.images), scores)
            logits, calibration = a * scores + b, f"logistic on {opts.real_count} real images"
        else:
            logits, calibration = drs.standardise(scores), "standardised scores (no real data)"
        keep = drs.rejection_sample(logits, rate=opts.drs_rate, seed=opts.seed)
        kept = ImageSet(queries.images[keep], None, f"{queries.fingerprint}:drs:{opts.drs_rate}", "drs")
        dr = train_attack(attack_config(opts, res, ch, opts.attack_kimg, seed_offset=3), kept,
                          run.file("attack-drs.pt"), progress=opts.progress)
        variants.append({"variant": f"DRS with target D (kept {len(keep)}/{len(queries)})", **ev.attack(dr),
                         "train_images": len(keep), "calibration": calibration})
    metrics["variants"] = variants

    # 5. Pictures and report.
    target_gen, attack_gen = load_generator(opts.target), load_generator(attack_ckpt)
    run.side_by_side(generate(target_gen, 36, seed=1), generate(attack_gen, 36, seed=1), "samples.png")
    run.write_metrics(metrics)
    acc_note = "" if ev.real_stats is not None else f"\n\nNo real data for accuracy: {ev.real_error}"
    table = markdown_table(variants, ["variant", "train_images", "fidelity", "accuracy"])
    run.write_report(f"Extraction of {opts.target} with a {opts.attack} attack", [
        ("Result", f"fidelity = FID(attack, target) = **{metrics['fidelity']:.2f}**; accuracy = FID(attack, real) "
                   f"= **{_fmt(metrics['accuracy'])}**; the target's own FID(target, real) = "
                   f"{_fmt(metrics['target_fid'])}. {opts.queries} queries ({opts.prior} prior), attack trained "
                   f"for {opts.attack_kimg} kimg, FID on {opts.fid_n} images per side.{acc_note}"),
        ("Variants (same query budget)", table),
        ("Samples", "Left: target. Right: attack.\n\n![samples](samples.png)"),
    ])
    return metrics


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"

