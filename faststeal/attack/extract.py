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

from faststeal.checkpoint import LoadedTarget, load_checkpoint, load_generator
from faststeal.data import ImageSet, load_dataset
from faststeal.evaluate import coverage, fid, generator_stats, real_data_for, real_stats
from faststeal.sampling import generate
from faststeal.train import TrainConfig, Trainer

from . import drs, queryset

# How long the thief trains, for every attack and knowledge level. The image-only fast thief still gains 10 FID
# points from 60 to 80 kimg (three seeds each, README "Results on a CPU"), and 80 kimg keeps the default
# extraction within ~15 min on an idle 2-core CPU with the target's statistics cached.
DEFAULT_ATTACK_KIMG = 80.0


@dataclass
class AttackOptions:
    """What every attack run shares (extract, sweep, defend): the target, the attack GAN's size, the budget,
    the evaluation size and where the run folder goes."""

    target: str
    attack: str = "fast"
    queries: int = 10_000
    attack_kimg: float | None = None    # None: DEFAULT_ATTACK_KIMG
    minutes: float | None = None        # also stop each attack GAN after this many minutes of training
    knowledge: str = "images"           # "latents": the adversary chooses the codes and distils on the pairs
    distill: float = 10.0               # weight of the paired L1 loss with knowledge "latents"
    distill_only: float = 0.75          # fraction of attack_kimg trained on the paired loss alone (no D)
    curve_n: int = 128                  # samples per fidelity probe during training (0: no curve)
    curve_points: int = 6               # probes spread over training (plus one at the start and the end)

    def __post_init__(self):
        if self.attack_kimg is None:
            self.attack_kimg = DEFAULT_ATTACK_KIMG
        if self.batch is None:
            self.batch = 16 if self.attack == "fast" else 32
    attack_width: int = 64
    attack_latent_dim: int = 128
    batch: int | None = None            # None: 16 for the fast thief (more steps per image), 32 for pggan/sngan
    fid_n: int = 2000
    eval_data: str | None = None        # default: the target's own training data
    target_hints: dict | None = None    # what a foreign target's probe cannot find (targets.Hints fields)
    prior: str = "normal"
    seed: int = 0
    out: str = "runs/extract"
    progress: bool = True
    fresh: bool = False                 # start over: drop the run folder's queries, attacks and results


@dataclass
class ExtractOptions(AttackOptions):
    real: str | None = None             # adversary's real data (accuracy extraction)
    real_count: int = 0
    target_discriminator: bool = False
    drs_rate: float = 0.5               # fraction of queries DRS keeps
    finetune_kimg: float | None = None  # default: attack_kimg / 3
    query_set: str | None = None        # reuse a query-set folder


def attack_config(opts: AttackOptions, resolution: int, channels: int, kimg: float, *, grow: bool = True,
                  seed_offset: int = 0, latent_dim: int | None = None, distill: float = 0.0,
                  distill_only_kimg: float = 0.0) -> TrainConfig:
    return TrainConfig(arch=opts.attack, resolution=resolution, channels=channels,
                       latent_dim=latent_dim or opts.attack_latent_dim, width=opts.attack_width, batch=opts.batch,
                       kimg=kimg, snapshot_kimg=max(kimg / 4, 0.001), seed=opts.seed + seed_offset, grow=grow,
                       distill=distill, distill_only_kimg=distill_only_kimg, minutes=opts.minutes)


def knowledge_settings(opts: AttackOptions, target_config: dict) -> dict:
    """attack_config keywords for the adversary's knowledge: a distilled copy takes the target's code size."""
    if opts.knowledge == "latents":
        return {"latent_dim": target_config["latent_dim"], "distill": opts.distill,
                "distill_only_kimg": opts.distill_only * opts.attack_kimg}
    return {}


# What a stored attack checkpoint must share with this run's settings to be reused or resumed. Its length
# (kimg) may be shorter: the run then resumes it.
REUSE_KEYS = ("arch", "resolution", "channels", "latent_dim", "width", "batch", "lr", "n_dis", "seed", "loss",
              "r1_gamma", "augment", "distill", "distill_only_kimg", "ema_kimg", "grow", "phase_kimg", "gp_lambda",
              "drift")


class StaleCheckpoint(ValueError):
    """A run folder holds an attack trained with other settings or on other data."""


def train_attack(config: TrainConfig, data: ImageSet, path: Path, *, init_from=None, progress=True,
                 probe=None, probe_kimg=None) -> dict:
    """Train (resume, or reuse if ``path`` already finished) one attack GAN.

    Returns {"checkpoint", "train_seconds", "curve"}. A stored file is reused only when every setting that
    shaped it (REUSE_KEYS), its initialisation and its training data match; otherwise StaleCheckpoint says
    which one differs. Rank 0 decides whether the file exists (RunFolder.decide), so every rank takes the
    same branch under torchrun.
    """
    from faststeal.report import RunFolder

    exists = RunFolder.decide(path.exists)
    if exists:
        state = load_checkpoint(path)
        want = config.resolved() | {"init_from": str(init_from) if init_from else None}
        have = state["config"] | {"init_from": (state["config"].get("extra") or {}).get("init_from")}
        for key in (*REUSE_KEYS, "init_from"):
            if have.get(key) != want.get(key) and not (key == "phase_kimg" and not want.get("grow", True)):
                raise StaleCheckpoint(
                    f"{path}: was trained with {key}={have.get(key)!r}, this run has {key}={want.get(key)!r}; "
                    f"use another --out, or --fresh to start the run over")
        if state.get("data_fingerprint") != data.fingerprint:
            raise StaleCheckpoint(f"{path}: was trained on other images ({state.get('data_fingerprint')}); "
                                  f"use another --out, or --fresh to start the run over")
        progress = state["progress"]
        out_of_time = config.minutes and progress.get("train_seconds", 0.0) >= config.minutes * 60
        if progress["kimg"] >= config.kimg or out_of_time:
            return {"checkpoint": path, "train_seconds": progress.get("train_seconds"),
                    "curve": state.get("curve", []), "kimg": progress["kimg"],
                    "stopped": "kimg" if progress["kimg"] >= config.kimg else "minutes"}
    config.extra = {**config.extra, "init_from": str(init_from) if init_from else None}
    trainer = Trainer(config, data, checkpoint_path=path, run_dir=path.with_suffix(""), progress=progress)
    if exists:
        trainer.resume(path)
    elif init_from is not None:
        trainer.init_weights(init_from)
    result = trainer.run(probe=probe, probe_kimg=probe_kimg)
    return {"checkpoint": path, "train_seconds": trainer.train_seconds, "curve": trainer.curve,
            "kimg": trainer.kimg, "stopped": result["stopped"]}


class Evaluator:
    """FID statistics of the target and the real data, computed once and shared by every attack variant.

    Also the FID floor: FID between the target's evaluation sample and a second, independent sample of the
    target at the same n, i.e. the score of a perfect copy at this n (FID is biased upwards at small n).
    """

    def __init__(self, target, fid_n: int, eval_data: str | None, progress: bool = True):
        """``target``: a checkpoint path or a LoadedTarget (then its weights are not read again)."""
        self.fid_n, self.progress = fid_n, progress
        config = target.config if isinstance(target, LoadedTarget) else load_checkpoint(target)["config"]
        self.target, self._floor = target, None
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

    def fid_floor(self) -> float:
        """Computed on first use (a second fid_n-image sample of the target, cached): defend never asks."""
        from .curve import FLOOR_SEED

        if self._floor is None:
            second = generator_stats(self.target, self.fid_n, seed=FLOOR_SEED, name="target (second sample)",
                                     progress=self.progress, cache=True)
            self._floor = fid(second, self.target_stats)
        return self._floor

    def attack(self, checkpoint, against: dict | None = None) -> dict:
        """Fidelity and accuracy of an attack checkpoint, plus FID to each named statistics in ``against``."""
        stats = generator_stats(checkpoint, self.fid_n, name="attack", progress=self.progress)
        return {"fidelity": fid(stats, self.target_stats),
                "accuracy": fid(stats, self.real_stats) if self.real_stats is not None else None,
                **{k: fid(stats, ref) for k, ref in (against or {}).items()},
                "vs_target": coverage(self.target_stats, stats), "vs_real": coverage(self.real_stats, stats)}


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


def run_extract(opts: ExtractOptions, run=None, target=None) -> dict:
    """The whole extraction experiment; writes into ``run`` (a RunFolder) and returns metrics.

    ``target``: the Target, opened once by the caller (with its hints and key); default: ``opts.target``."""
    from faststeal.experiment import Experiment
    from faststeal.report import RunFolder, markdown_table
    from faststeal.targets import open_target

    target = open_target(target if target is not None else opts.target, hints=opts.target_hints)
    remote = not target.in_process      # an HTTP target: nothing below loads its weights
    if opts.target_discriminator and not target.has_discriminator:
        target.discriminator()          # one line: which formats have one
    run = run or RunFolder(opts.out, "extract", {**asdict(opts), "target_info": target.describe()})
    run.start_over(opts.fresh)
    exp = Experiment(run, target, fid_n=opts.fid_n, eval_data=opts.eval_data, progress=opts.progress)

    # 1. Buy the queries (black box: only uint8 images, and with knowledge "latents" the codes it chose).
    oracle = exp.oracle(opts.queries, prior=opts.prior, seed=opts.seed)
    target_cfg = exp.config
    res, ch = target_cfg["resolution"], target_cfg["channels"]
    if opts.knowledge == "latents" and not oracle.accepts_latents:
        raise queryset.DataError(f"{opts.target}: this target does not accept latent codes; "
                                 f"use --knowledge images")
    qdir = Path(opts.query_set) if opts.query_set else run.file("queries")
    queryset.collect(oracle, qdir, opts.queries, target=opts.target, progress=opts.progress,
                     knowledge=opts.knowledge)
    queries = queryset.load(qdir, limit=opts.queries)

    # 2. Fidelity extraction: an attack GAN trained on the queries alone (distilled on the pairs when the
    #    adversary chose the codes), with its fidelity probed along the way.
    distilling = opts.knowledge == "latents"
    latent = knowledge_settings(opts, target_cfg).get("latent_dim")
    base_cfg = attack_config(opts, res, ch, opts.attack_kimg, **knowledge_settings(opts, target_cfg))
    probe = None
    if opts.curve_n and not remote:     # the curve samples the target itself
        from .curve import FidelityProbe

        probe = FidelityProbe(exp.loaded.generator, opts.curve_n, real=_real_or_none(target_cfg, opts))
    trained = train_attack(base_cfg, queries, run.file("attack.pt"), progress=opts.progress, probe=probe,
                           probe_kimg=opts.attack_kimg / max(opts.curve_points, 1))
    attack_ckpt = trained["checkpoint"]

    # 3. Measure.
    ev = exp.evaluator(served=queries)
    base = exp.measure(attack_ckpt)
    metrics = {"target": opts.target, "attack": opts.attack, "knowledge": opts.knowledge, "queries": opts.queries,
               "fid_n": opts.fid_n, "prior": opts.prior, "fidelity": base["fidelity"], "accuracy": base["accuracy"],
               "vs_target": base.get("vs_target"), "vs_real": base.get("vs_real"),
               "target_fid": ev.target_fid(), "fid_floor": ev.fid_floor(), "attack_kimg": opts.attack_kimg,
               "seed": opts.seed, "train_seconds": trained["train_seconds"], "curve": trained["curve"],
               "minutes": opts.minutes, "attack_kimg_reached": trained["kimg"], "stopped": trained["stopped"],
               "curve_reference": probe.reference if probe is not None else None}
    variants = [{"variant": "queries only (fidelity extraction)" if not distilling else
                 "chosen latents (distillation)", **base, "train_images": len(queries)}]
    if probe is not None and trained["curve"]:
        from .curve import plot_curves

        run.write(plot_curves, {f"{opts.attack} ({opts.knowledge})": trained["curve"]}, probe.reference,
                  run.file("curve.png"), title=f"extraction of {opts.target}")

    # 4. Accuracy extraction, same budget.
    real_subset = None
    if opts.real and opts.real_count > 0:
        real_subset = adversary_real_subset(opts.real, opts.real_count, res, ch, opts.seed,
                                            classes=(target_cfg.get("extra") or {}).get("classes")
                                            if opts.real == target_cfg.get("data_source") else None)
        ft_kimg = opts.finetune_kimg if opts.finetune_kimg is not None else opts.attack_kimg / 3
        ft = train_attack(attack_config(opts, res, ch, ft_kimg, grow=False, seed_offset=1, latent_dim=latent),
                          real_subset, run.file("attack-finetuned.pt"), init_from=attack_ckpt,
                          progress=opts.progress)["checkpoint"]
        variants.append({"variant": f"+ fine-tune on {opts.real_count} real", **exp.measure(ft),
                         "train_images": opts.real_count})
        mixed = concat_sets(queries, real_subset)
        mx = train_attack(attack_config(opts, res, ch, opts.attack_kimg, seed_offset=2, latent_dim=latent), mixed,
                          run.file("attack-mixed.pt"), progress=opts.progress)["checkpoint"]
        variants.append({"variant": f"queries + {opts.real_count} real", **exp.measure(mx),
                         "train_images": len(mixed)})
    if opts.target_discriminator:
        target_d = target.discriminator()
        scores = drs.discriminator_scores(target_d, queries.images)
        if real_subset is not None:
            a, b = drs.calibrate_logistic(drs.discriminator_scores(target_d, real_subset.images), scores)
            logits, calibration = a * scores + b, f"logistic on {opts.real_count} real images"
        else:
            logits, calibration = drs.standardise(scores), "standardised scores (no real data)"
        keep = drs.rejection_sample(logits, rate=opts.drs_rate, seed=opts.seed)
        kept = ImageSet(queries.images[keep], None, f"{queries.fingerprint}:drs:{opts.drs_rate}", "drs")
        dr = train_attack(attack_config(opts, res, ch, opts.attack_kimg, seed_offset=3, latent_dim=latent), kept,
                          run.file("attack-drs.pt"), progress=opts.progress)["checkpoint"]
        variants.append({"variant": f"DRS with target D (kept {len(keep)}/{len(queries)})", **exp.measure(dr),
                         "train_images": len(keep), "calibration": calibration})
    metrics["variants"] = variants

    # 5. Pictures and report.
    attack_gen = load_generator(attack_ckpt)
    left = queries.images[:36] if remote else exp.samples(36, seed=1)
    run.side_by_side(left, generate(attack_gen, 36, seed=1), "samples.png")
    run.write_metrics(metrics)
    acc_note = "" if ev.real_stats is not None else f"\n\nNo real data for accuracy: {ev.real_error}"
    table = markdown_table(variants, ["variant", "train_images", "fidelity", "accuracy"])
    sections = [
        ("Result", f"{summary_line(metrics)}\n\n{coverage_line(metrics)}\n\n"
                   f"{opts.queries} queries ({opts.prior} prior, knowledge: "
                   f"{opts.knowledge}), attack trained for {_length(metrics)} "
                   f"({_fmt(metrics['train_seconds'], '.0f')} s of training), FID on {opts.fid_n} images per "
                   f"side.{acc_note}{REMOTE_NOTE if remote else ''}\n\n{SPREAD_NOTE}"),
        ("Target", target.summary()),
        ("Variants (same query budget)", table),
        ("Samples", f"Left: {'served images' if remote else 'target'}. Right: attack.\n\n![samples](samples.png)"),
    ]
    if metrics["curve"]:
        sections.append(("Convergence", f"Fidelity during training on {opts.curve_n} samples per point (FID at "
                         f"this n is biased upwards: compare with the dashed lines at the same n).\n\n"
                         f"![curve](curve.png)"))
    run.write_report(f"Extraction of {opts.target} with a {opts.attack} attack", sections)
    return metrics


def _length(m: dict) -> str:
    """How long the attack trained, and which limit stopped it when a time budget was set."""
    if not m.get("minutes"):
        return f"{m['attack_kimg']:g} kimg"
    reached, why = m["attack_kimg_reached"], m["stopped"]
    limit = f"the {m['minutes']:g}-minute budget" if why == "minutes" else f"the {m['attack_kimg']:g}-kimg cap"
    return f"{reached:.1f} kimg (stopped by {limit})"


def _real_or_none(target_cfg: dict, opts: AttackOptions):
    """The real data for the curve's reference line, or None when the target does not record it."""
    try:
        return real_data_for(target_cfg, opts.eval_data)
    except (ValueError, OSError):
        return None


REMOTE_NOTE = ("\n\nThe target was queried over HTTP and never loaded here: fidelity is FID(attack, the served "
               "images bought), there is no FID floor and no convergence curve.")

SPREAD_NOTE = ("FID below 2,048 images per side is biased upwards (singular covariances), so compare numbers "
               "at the same n only. Numbers are bit-exact on one machine with the same thread count; across "
               "CPUs and seeds they move: see README \"Results on a CPU\" for the measured spread.")


def summary_line(m: dict) -> str:
    """The one line that extract prints and report.md opens with."""
    return (f"fidelity {_fmt(m['fidelity'])}  accuracy {_fmt(m['accuracy'])}  target FID {_fmt(m['target_fid'])}  "
            f"FID floor {_fmt(m['fid_floor'])}  (FID on {m['fid_n']} per side, {m['queries']} queries, "
            f"knowledge {m['knowledge']}, seed {m['seed']})")


def coverage_line(m: dict) -> str:
    """Quality against coverage of the copy: precision/density (does it look like the target?) and
    recall/coverage (does it make all of what the target makes?), k = 3 and 5 on the FID features."""
    parts = []
    for name, d in (("target", m.get("vs_target")), ("real data", m.get("vs_real"))):
        if d:
            parts.append(f"against the {name}: precision {d['precision']:.3f}, recall {d['recall']:.3f}, "
                         f"density {d['density']:.3f}, coverage {d['coverage']:.3f}")
    if not parts:
        return "precision/recall/density/coverage: n/a (the FID samples kept no feature rows)"
    return "copy " + "; ".join(parts)


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)

