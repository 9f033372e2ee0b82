"""`faststeal train-target`: train a target GAN on real data and write its checkpoint (resumable)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faststeal.data import load_dataset
from faststeal.train import TrainConfig, Trainer

from .options import FromParams, at_least, check_out_file, positive

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class TrainTargetOptions(FromParams):
    out: str                            # the checkpoint file
    arch: str = "pggan"
    data: str = "fashion-mnist"
    classes: str | None = None          # keep only these labels, e.g. "0,1,2"
    resolution: int = 32
    channels: int | None = None         # None: what the data has
    latent_dim: int = 128
    width: int = 64
    batch: int = 32
    kimg: float = 100.0
    lr: float | None = None             # None: the architecture's default (train.ARCH_DEFAULTS)
    n_dis: int | None = None
    phase_kimg: float | None = None
    ema_kimg: float = 5.0
    snapshot_kimg: float = 10.0
    seed: int = 0
    run_dir: str | None = None          # sample grids; None: runs/<out name>
    resume: bool = False
    force: bool = False

    def __post_init__(self):
        self.resolution = int(self.resolution)           # click hands the choices over as text
        self.channels = int(self.channels) if self.channels else None

    def check(self) -> None:
        for flag, value in (("--latent-dim", self.latent_dim), ("--width", self.width), ("--batch", self.batch),
                            ("--n-dis", self.n_dis)):
            at_least(value, 1, flag)
        for flag, value in (("--kimg", self.kimg), ("--lr", self.lr), ("--phase-kimg", self.phase_kimg),
                            ("--ema-kimg", self.ema_kimg), ("--snapshot-kimg", self.snapshot_kimg)):
            positive(value, flag)
        if not self.resume:
            check_out_file(self.out, self.force, CHECKPOINT_SUFFIXES)

    def grid_folder(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / Path(self.out).stem

    def train_config(self, channels: int) -> TrainConfig:
        return TrainConfig(arch=self.arch, resolution=self.resolution, channels=channels,
                           latent_dim=self.latent_dim, width=self.width, batch=self.batch, kimg=self.kimg, lr=self.lr,
                           n_dis=self.n_dis, phase_kimg=self.phase_kimg, ema_kimg=self.ema_kimg,
                           snapshot_kimg=self.snapshot_kimg, seed=self.seed, extra={"classes": self.classes})


def run_train_target(opts: TrainTargetOptions, log=print) -> dict:
    """Load the data, train (or resume) and return the trainer's summary (kimg, seconds, images_per_s)."""
    dataset = load_dataset(opts.data, resolution=opts.resolution, channels=opts.channels, classes=opts.classes)
    out = Path(opts.out)
    trainer = Trainer(opts.train_config(dataset.channels), dataset, checkpoint_path=out, run_dir=opts.grid_folder())
    if opts.resume and out.exists():
        trainer.resume(out)
        log(f"resumed {out} at {trainer.kimg:.1f} kimg")
    log(f"training {opts.arch} {opts.resolution}x{opts.resolution}x{dataset.channels} on {opts.data} "
        f"({len(dataset)} images) for {opts.kimg} kimg")
    return trainer.run()
