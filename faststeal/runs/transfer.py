"""Transfer case study: is a stolen model a head start on a new domain?

Fine-tune the stolen GAN on new-domain data and, side by side, train the same architecture from scratch
on the same data for the same number of images; FID against the new domain is measured at equal
checkpoints along the way and drawn as two curves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from faststeal.checkpoint import ImageGenerator, load_checkpoint
from faststeal.data import load_dataset
from faststeal.evaluate import fid, generator_stats, real_stats
from faststeal.report import RunFolder, Stopwatch, line_plot, markdown_table, stage_line
from faststeal.targets import TargetError, detect_kind
from faststeal.train import TrainConfig, Trainer

from .options import at_least, positive


@dataclass
class TransferOptions:
    source: str
    data: str
    classes: str | None = None
    kimg: float = 20.0
    evals: int = 4            # FID measured after each of this many equal slices of kimg (plus at 0)
    fid_n: int = 1000
    batch: int = 32
    seed: int = 0
    out: str = "runs/transfer"
    progress: bool = True

    def check(self) -> None:
        positive(self.kimg, "--kimg")
        at_least(self.evals, 1, "--evals")
        at_least(self.batch, 1, "--batch")
        at_least(self.fid_n, 2, "--fid-n")


FID_STAGE = "FID along the curves"     # the wall-time stage of every FID measured on the curves


def _curve(trainer: Trainer, opts: TransferOptions, real, label: str, clock: Stopwatch, stage: str) -> list[dict]:
    """FID to the new domain at 0 and after each slice; the training charged to ``stage``, the FID to its own."""
    points = []
    slices = [opts.kimg * (i + 1) / opts.evals for i in range(opts.evals)]
    stats = generator_stats(_ema(trainer), opts.fid_n, name=f"{label}@0", progress=opts.progress)
    points.append({"kimg": 0.0, "fid": fid(stats, real)})
    clock.lap(FID_STAGE)
    for target_kimg in slices:
        trainer.config.kimg = target_kimg
        trainer.run()
        clock.lap(stage)
        stats = generator_stats(_ema(trainer), opts.fid_n, name=f"{label}@{target_kimg:g}", progress=opts.progress)
        points.append({"kimg": round(trainer.kimg, 3), "fid": fid(stats, real)})
        clock.lap(FID_STAGE)
    return points


def _ema(trainer: Trainer):
    return ImageGenerator(trainer.G_ema).eval()


def run_transfer(opts: TransferOptions, run=None) -> dict:
    kind = detect_kind(opts.source)
    if kind != "faststeal":
        raise TargetError(f"{opts.source}: transfer fine-tunes a faststeal checkpoint (it needs the generator's "
                          f"architecture and discriminator); a {kind} generator cannot be trained here: steal it "
                          f"with `faststeal extract` and transfer the copy (runs/.../attack.pt)")
    clock = Stopwatch()
    run = run or RunFolder(opts.out, "transfer", asdict(opts))
    src = load_checkpoint(opts.source)["config"]
    data = load_dataset(opts.data, resolution=src["resolution"], channels=src["channels"], classes=opts.classes)
    real = real_stats(data, opts.fid_n, opts.progress)
    clock.lap("new-domain data and its statistics")
    curves = {}
    for label, init in (("fine-tuned stolen model", opts.source), ("from scratch", None)):
        config = TrainConfig(arch=src["arch"], resolution=src["resolution"], channels=src["channels"],
                             latent_dim=src["latent_dim"], width=src["width"], batch=opts.batch, kimg=opts.kimg,
                             seed=opts.seed, grow=init is None, snapshot_kimg=opts.kimg,
                             phase_kimg=opts.kimg / 8 if src["arch"] == "pggan" else None)
        name = "finetune" if init else "scratch"
        trainer = Trainer(config, data, checkpoint_path=run.file(f"{name}.pt"), run_dir=run.file(name),
                          progress=opts.progress)
        if init:
            trainer.init_weights(init)
        clock.lap(f"training, {label}")
        curves[label] = _curve(trainer, opts, real, name, clock, f"training, {label}")
    series = {k: ([p["kimg"] for p in v], [p["fid"] for p in v]) for k, v in curves.items()}
    run.write(line_plot, run.file("transfer.png"), series, "kimg trained on the new domain", "FID to the new domain",
              f"transfer of {Path(opts.source).name}")
    clock.lap("plot")
    rows = [{"kimg": a["kimg"], "fine-tuned": a["fid"], "scratch": b["fid"]}
            for a, b in zip(*curves.values())]
    metrics = {"source": opts.source, "data": opts.data, "classes": opts.classes, "curves": curves,
               "final_finetuned_fid": rows[-1]["fine-tuned"], "final_scratch_fid": rows[-1]["scratch"],
               "stage_seconds": clock.seconds}
    run.write_metrics(metrics)
    run.write_report(f"Transfer of {opts.source} to {opts.data} {opts.classes or ''}", [
        ("FID to the new domain at equal images seen", markdown_table(rows, ["kimg", "fine-tuned", "scratch"])),
        ("Plot", "![transfer](transfer.png)"),
        ("Wall time", f"This run's wall time by stage: {stage_line(clock.seconds)}."),
    ])
    return metrics
