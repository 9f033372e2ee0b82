"""Train one attack GAN on what the thief holds, resuming or reusing a stored one only when nothing changed.

Also the training sets an adversary with more knowledge assembles: a seeded subset of real data and the
union of queries and real images.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from faststeal.checkpoint import load_checkpoint
from faststeal.data import ImageSet, load_dataset
from faststeal.errors import FaststealError
from faststeal.metrics.perceptual import StemFeatures
from faststeal.report import RunFolder
from faststeal.train import TrainConfig, Trainer, mean_threads

# What a stored attack checkpoint must share with this run's settings to be reused or resumed. Its length
# (kimg) may be shorter: the run then resumes it.
REUSE_KEYS = ("arch", "resolution", "channels", "latent_dim", "width", "batch", "lr", "lr_decay", "n_dis", "seed",
              "loss", "r1_gamma", "augment", "ada_target", "distill", "distill_only_kimg", "distill_lr", "perceptual",
              "perceptual_images", "fresh_fakes", "ema_kimg", "grow", "phase_kimg", "gp_lambda", "drift", "precision")


class StaleCheckpoint(FaststealError, ValueError):
    """A run folder holds an attack trained with other settings or on other data."""


def train_attack(config: TrainConfig, data: ImageSet, path: Path, *, init_from=None, progress=True,
                 probe=None, probe_kimg=None) -> dict:
    """Train (resume, or reuse if ``path`` already finished) one attack GAN.

    Returns {"checkpoint", "train_seconds", "threads" (CPU threads on average, None on a GPU), "curve", "kimg",
    "stopped"}. A stored file is reused only when every setting that
    shaped it (REUSE_KEYS), its initialisation and its training data match; otherwise StaleCheckpoint says
    which one differs. Rank 0 decides whether the file exists (RunFolder.decide), so every rank takes the
    same branch under torchrun.
    """
    exists = RunFolder.decide(path.exists)
    if exists:
        state = load_checkpoint(path)
        want = config.resolved() | {"init_from": str(init_from) if init_from else None}
        # a setting added after the file was written is read as its default (what the file was trained with)
        have = ({f.name: f.default for f in fields(TrainConfig) if f.name in REUSE_KEYS} | state["config"]
                | {"init_from": (state["config"].get("extra") or {}).get("init_from")})
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
                    "threads": mean_threads(progress.get("thread_seconds", 0.0), progress.get("train_seconds", 0.0)),
                    "curve": state.get("curve", []), "kimg": progress["kimg"],
                    "stopped": "kimg" if progress["kimg"] >= config.kimg else "minutes"}
    config.extra = {**config.extra, "init_from": str(init_from) if init_from else None}
    features = None
    if config.perceptual > 0:           # the perceptual term's network: the FID Inception's first layers
        features = StemFeatures()
    trainer = Trainer(config, data, checkpoint_path=path, run_dir=path.with_suffix(""), progress=progress,
                      features=features)
    if exists:
        trainer.resume(path)
    elif init_from is not None:
        trainer.init_weights(init_from)
    result = trainer.run(probe=probe, probe_kimg=probe_kimg)
    return {"checkpoint": path, "train_seconds": trainer.train_seconds, "threads": trainer.mean_threads,
            "curve": trainer.curve,
            "kimg": trainer.kimg, "stopped": result["stopped"]}


def adversary_real_subset(spec: str, count: int, resolution: int, channels: int, seed: int,
                          classes=None) -> ImageSet:
    """The K real images the adversary holds: a seeded random subset of the named data."""
    data = load_dataset(spec, resolution=resolution, channels=channels, classes=classes)
    if count <= 0 or count > len(data):
        raise ValueError(f"--real-count must be in 1..{len(data)} for {spec}, got {count}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7))[:count]
    return ImageSet(data.images[idx], None, f"{data.fingerprint}:subset:{seed}:{count}", f"{spec}[{count}]")


