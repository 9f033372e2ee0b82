"""Model extraction end to end: query the target, train an attack GAN, measure fidelity and accuracy.

Fidelity extraction trains the attack GAN on the queried images only. Accuracy extraction adds what a
stronger adversary holds: part of the real training data (fine-tune the extracted model on it, or train on
queries + real images) and/or the target's discriminator (discriminator rejection sampling of the queries).
Every variant spends the same query budget, so their accuracies are directly comparable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from faststeal.attack import drs, queryset
from faststeal.attack.curve import FidelityProbe, plot_curves
from faststeal.attack.thief import adversary_real_subset, train_attack
from faststeal.checkpoint import load_generator
from faststeal.data import DataError, ImageSet, concat_sets, evaluation_data
from faststeal.errors import OptionError
from faststeal.report import RunFolder, Stopwatch, flat_measures, fmt, markdown_table, stage_line
from faststeal.sampling import generate
from faststeal.targets import open_target
from faststeal.train import TrainConfig

from .experiment import Experiment
from .options import ExtractOptions, attack_config, knowledge_settings

# How the copy was trained, recorded in metrics.json (defaults resolved): what the thief's knobs were set to.
ATTACK_SETTINGS = ("width", "batch", "lr", "distill_lr", "lr_decay", "r1_gamma", "augment", "ada_target", "ema_kimg",
                   "latent_dim", "perceptual", "perceptual_images", "fresh_fakes", "precision")


def run_extract(opts: ExtractOptions, run=None, target=None) -> dict:
    """The whole extraction experiment; writes into ``run`` (a RunFolder) and returns metrics.

    ``target``: the Target, opened once by the caller (with its hints and key); default: ``opts.target``."""
    clock = Stopwatch()
    target = open_target(target if target is not None else opts.target, hints=opts.target_hints)
    opts.sized_for(target.resolution, target.arch)
    remote = not target.in_process      # an HTTP target: nothing below loads its weights
    if opts.target_discriminator and not target.has_discriminator:
        target.discriminator()          # one line: which formats have one
    if opts.perceptual_images > opts.batch:
        raise OptionError(f"{opts.perceptual_images} is more than the thief's batch ({opts.batch}); give at most "
                          f"the batch, or 0 for all of it", "--perceptual-images")
    if opts.perceptual > 0 and target.resolution < 32:
        raise OptionError(f"the perceptual term needs images of at least 32x32 pixels; {opts.target} makes "
                          f"{target.resolution}x{target.resolution}", "--perceptual")
    run = run or RunFolder(opts.out, "extract", {**asdict(opts), "target_info": target.describe()})
    run.start_over(opts.fresh)
    exp = Experiment(run, target, fid_n=opts.fid_n, eval_data=opts.eval_data, progress=opts.progress)

    # 1. Buy the queries (black box: only uint8 images, and with knowledge "latents" the codes it chose).
    oracle = exp.oracle(opts.queries, prior=opts.prior, seed=opts.seed)
    target_cfg = exp.config
    res, ch = target_cfg["resolution"], target_cfg["channels"]
    if opts.knowledge == "latents" and not oracle.accepts_latents:
        raise DataError(f"{opts.target}: this target does not accept latent codes; use --knowledge images")
    qdir = Path(opts.query_set) if opts.query_set else run.file("queries")
    queryset.collect(oracle, qdir, opts.queries, target=opts.target, progress=opts.progress,
                     knowledge=opts.knowledge)
    queries = queryset.load(qdir, limit=opts.queries)
    clock.lap("queries")

    # 2. Train, one attack GAN after another: the fidelity thief on the queries alone (distilled on the pairs
    #    when the adversary chose the codes, its fidelity probed along the way), then each accuracy variant on
    #    the same query budget.
    knowing = knowledge_settings(opts, target_cfg)
    base_cfg = attack_config(opts, res, ch, opts.attack_kimg, **knowing)
    probe = None
    if opts.curve_n and not remote:     # the curve samples the target itself, beside the real data if known
        probe = FidelityProbe(exp.loaded.generator, opts.curve_n,
                              real=evaluation_data(target_cfg, opts.eval_data)[0], paired=opts.knowledge == "latents")
        clock.lap("curve references")
    fidelity_thief = AccuracyVariant("queries only (fidelity extraction)" if opts.knowledge == "images" else
                                     "chosen latents (distillation)", queries, base_cfg, "attack.pt", probe=probe)
    plan = [fidelity_thief, *accuracy_variants(opts, target, queries, run.file(fidelity_thief.file),
                                               knowing.get("latent_dim"))]
    trained_all = [train_attack(v.config, v.data, run.file(v.file), init_from=v.init_from, progress=opts.progress,
                                probe=v.probe, probe_kimg=opts.attack_kimg / max(opts.curve_points, 1))
                   for v in plan]
    clock.lap("training with its probes and checkpoints")

    # 3. Measure every copy against the same target and real statistics.
    measured = exp.measure([t["checkpoint"] for t in trained_all], served=queries)
    clock.lap("final measurement")
    rows = [{"variant": v.label, **found, "train_images": len(v.data), **v.notes}
            for v, found in zip(plan, measured.rows)]
    base, trained = rows[0], trained_all[0]     # the fidelity thief's row and training
    metrics = {"target": opts.target, "attack": opts.attack, "knowledge": opts.knowledge, "queries": opts.queries,
               "fid_n": opts.fid_n, "prior": opts.prior, "fidelity": base["fidelity"], "accuracy": base["accuracy"],
               "fidelity_ci": base.get("fidelity_ci"),
               "vs_target": base.get("vs_target"), "vs_real": base.get("vs_real"),
               "target_fid": measured.target_fid, "fid_floor": measured.fid_floor, "attack_kimg": opts.attack_kimg,
               "seed": opts.seed, "train_seconds": trained["train_seconds"],
               "train_threads": trained.get("threads"), "curve": trained["curve"],
               "minutes": opts.minutes, "attack_kimg_reached": trained["kimg"], "stopped": trained["stopped"],
               "curve_reference": probe.reference if probe is not None else None,
               "attack_settings": {k: base_cfg.resolved()[k] for k in ATTACK_SETTINGS}, "variants": rows}
    if probe is not None and trained["curve"]:
        run.write(plot_curves, {f"{opts.attack} ({opts.knowledge})": trained["curve"]}, probe.reference,
                  run.file("curve.png"), title=f"extraction of {opts.target}")

    # 5. Pictures and report.
    attack_gen = load_generator(trained["checkpoint"])
    left = queries.images[:36] if remote else exp.samples(36, seed=1)
    run.side_by_side(left, generate(attack_gen, 36, seed=1), "samples.png")
    clock.lap("pictures")
    metrics["stage_seconds"] = clock.seconds
    run.write_metrics(metrics)
    acc_note = "" if measured.real_error is None else f"\n\nNo real data for accuracy: {measured.real_error}"
    table = markdown_table([flat_measures(v) for v in rows],
                           ["variant", "train_images", "fidelity", "fidelity_lo", "fidelity_hi", "accuracy",
                            "copy_precision", "copy_recall", "copy_coverage"])
    sections = [
        ("Result", f"{summary_line(metrics)}\n\n{coverage_line(metrics)}\n\n"
                   f"{opts.queries} queries ({opts.prior} prior, knowledge: "
                   f"{opts.knowledge}), attack trained for {_length(metrics)} "
                   f"({fmt(metrics['train_seconds'], '.0f')} s of training{_threads(metrics)}; "
                   f"{_settings(metrics)}), FID on "
                   f"{opts.fid_n} images per side.{acc_note}{REMOTE_NOTE if remote else ''}\n\n"
                   f"This run's wall time by stage: {stage_line(clock.seconds)}. A time budget (--minutes) "
                   f"bounds the training steps only.\n\n{SPREAD_NOTE}"),
        ("Target", target.summary()),
        ("Variants (same query budget)", table),
        ("Samples", f"Left: {'served images' if remote else 'target'}. Right: attack.\n\n![samples](samples.png)"),
    ]
    if metrics["curve"]:
        sections.append(("Convergence", f"Fidelity during training on {opts.curve_n} samples per point (FID at "
                         f"this n is biased upwards: compare with the dashed lines at the same n).\n\n"
                         f"![curve](curve.png){_paired_fit(metrics['curve'][-1], opts.curve_n)}"))
    run.write_report(f"Extraction of {opts.target} with a {opts.attack} attack", sections)
    return metrics


def _paired_fit(point: dict, n: int) -> str:
    """A distilled copy's last paired L1 on its bought pairs beside the one on codes it never bought."""
    if "held_out_l1" not in point or "paired_l1" not in point:
        return ""
    gap = (" The second is well above the first: the copy fits its bought pairs better than the target's mapping."
           if point["held_out_l1"] > 1.2 * point["paired_l1"] else "")
    return (f"\n\nPaired L1 at the end: {point['paired_l1']:.3f} on the last training batch of bought pairs, "
            f"{point['held_out_l1']:.3f} on {n} codes never bought.{gap}")


@dataclass
class AccuracyVariant:
    """One attack GAN of the extraction table (the fidelity thief, then the accuracy variants): what it trains
    on, how, and what its row adds."""

    label: str
    data: ImageSet
    config: TrainConfig
    file: str                            # in the run folder
    init_from: Path | None = None        # fine-tuning starts from the fidelity thief's checkpoint
    notes: dict = field(default_factory=dict)
    probe: FidelityProbe | None = None   # the fidelity thief's convergence curve


def accuracy_variants(opts: ExtractOptions, target, queries: ImageSet, attack_ckpt: Path,
                      latent: int | None) -> list[AccuracyVariant]:
    """What a stronger adversary trains besides the fidelity thief, same query budget: with real data, a
    fine-tuned copy and a copy trained on queries + real images; with the target's discriminator, a copy
    trained on the queries it accepts (rejection sampling, calibrated on the real images when there are any)."""
    cfg, (res, ch) = target.config, (target.resolution, target.channels)
    ft_kimg = opts.finetune_kimg if opts.finetune_kimg is not None else opts.attack_kimg / 3
    finetuned, mixed, rejection = (attack_config(opts, res, ch, kimg, grow=grow, seed_offset=offset, latent_dim=latent)
                                   for kimg, grow, offset in ((ft_kimg, False, 1), (opts.attack_kimg, True, 2),
                                                              (opts.attack_kimg, True, 3)))
    out, real_subset = [], None
    if opts.real and opts.real_count > 0:
        same_data = opts.real == cfg.get("data_source")
        real_subset = adversary_real_subset(opts.real, opts.real_count, res, ch, opts.seed,
                                            classes=(cfg.get("extra") or {}).get("classes") if same_data else None)
        out.append(AccuracyVariant(f"+ fine-tune on {opts.real_count} real", real_subset, finetuned,
                                   "attack-finetuned.pt", init_from=attack_ckpt))
        out.append(AccuracyVariant(f"queries + {opts.real_count} real", concat_sets(queries, real_subset), mixed,
                                   "attack-mixed.pt"))
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
        out.append(AccuracyVariant(f"DRS with target D (kept {len(keep)}/{len(queries)})", kept, rejection,
                                   "attack-drs.pt", notes={"calibration": calibration}))
    return out


def _length(m: dict) -> str:
    """How long the attack trained, and which limit stopped it when a time budget was set."""
    if not m.get("minutes"):
        return f"{m['attack_kimg']:g} kimg"
    reached, why = m["attack_kimg_reached"], m["stopped"]
    limit = f"the {m['minutes']:g}-minute budget" if why == "minutes" else f"the {m['attack_kimg']:g}-kimg cap"
    return f"{reached:.1f} kimg (stopped by {limit})"


def _threads(m: dict) -> str:
    """' on 1.4 CPU threads on average' where the run trained on a CPU; a run that got fewer threads than
    the machine has cores trained fewer images in its time budget."""
    threads = m.get("train_threads")
    return "" if threads is None else f" on {threads:.1f} CPU threads on average"


def _settings(m: dict) -> str:
    """The thief's training knobs in one phrase, e.g. 'width 64, batch 16, lr 0.002, ...'."""
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in m["attack_settings"].items())


REMOTE_NOTE = ("\n\nThe target was queried over HTTP and never loaded here: fidelity is FID(attack, the served "
               "images bought), there is no FID floor and no convergence curve.")

SPREAD_NOTE = ("FID below 2,048 images per side is biased upwards (singular covariances), so compare numbers "
               "at the same n only. The bracket after fidelity (fidelity_lo, fidelity_hi) is a 95% bootstrap "
               "interval over which images were drawn at this n; resampled FIDs sit above the point value, so it "
               "is a spread more than a bracket, and it does not cover the training seed, which moves fidelity "
               "further. Numbers are bit-exact on one machine with the same thread count; across CPUs and seeds "
               "they move: see the results pages (docs/results/extraction.md) for the measured spread.")


def summary_line(m: dict) -> str:
    """The one line that extract prints and report.md opens with."""
    ci = m.get("fidelity_ci")
    shown = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return (f"fidelity {fmt(m['fidelity'])}{shown}  accuracy {fmt(m['accuracy'])}  target FID {fmt(m['target_fid'])}  "
            f"FID floor {fmt(m['fid_floor'])}  (FID on {m['fid_n']} per side, {m['queries']} queries, "
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
