"""GAN training: PGGAN (WGAN-GP, progressive growing), SNGAN (hinge, n_dis critic steps) and the fast thief.

One ``Trainer`` drives all three; the architecture decides the losses, the optimiser betas and whether the
networks grow. "fast" trains PGGAN's networks at full resolution with the non-saturating logistic loss, lazy
R1 (one double backward through D every ``R1_EVERY`` critic steps instead of WGAN-GP's at every step),
differentiable augmentation and an EMA whose half-life ramps up with training (compared with the PGGAN
attacker in bench/attack_speed.py). Progress is counted in images shown to the discriminator (kimg), as in PGGAN.
Checkpoints are atomic and hold everything needed to resume bit-exactly on a CPU.

Under torchrun the same loop is data parallel: ``batch`` stays the global batch, each rank trains on its
slice of it (reals, latents and GP weights are drawn globally, then sliced), G and D are wrapped in
DistributedDataParallel so gradients are averaged, and the loss values are averaged for reporting and for
the divergence check. Everything else (EMA, spectral-norm vectors, batch-norm statistics, the growing
schedule) then stays identical on every rank without extra communication, and K processes train the same
model as one process up to float rounding.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from faststeal.errors import FaststealError

from . import allocator, augment, cpu, distributed, losses
from .checkpoint import CheckpointError, float_state, load_checkpoint, save_checkpoint
from .data import ImageSet, InfiniteBatches, to_uint8
from .grid import save_grid
from .models import build_discriminator, build_generator
from .models.pggan import level_count

ARCH_DEFAULTS = {
    "pggan": dict(lr=1e-3, betas=(0.0, 0.99), n_dis=1, loss="wgan-gp", r1_gamma=0.0, augment="none",
                  ema_rampup=None),
    "sngan": dict(lr=2e-4, betas=(0.0, 0.9), n_dis=5, loss="hinge", r1_gamma=0.0, augment="none",
                  ema_rampup=None),
    "fast": dict(lr=2e-3, betas=(0.0, 0.99), n_dis=1, loss="logistic-r1", r1_gamma=0.1, augment="translation",
                 ema_rampup=0.05),
    "dcgan": dict(lr=2e-4, betas=(0.5, 0.999), n_dis=1, loss="logistic-r1", r1_gamma=0.0, augment="none",
                  ema_rampup=0.05),
}


PRECISIONS = ("float32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs on bf16 hardware here: a CUDA GPU with bf16, or an x86 CPU with AMX tiles or
    AVX-512 BF16 dot products (the fast thief's 64x64 adversarial steps ran 1.4-1.7x faster with AMX and 1.36x
    with AVX-512 BF16 alone: docs/results/speed.md). Elsewhere bf16 is emulated and may be slower than float32,
    so nothing turns it on there by default."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def lr_scale(progress: float, decay: float) -> float:
    """The learning rate's factor at ``progress`` (0 to 1) through a phase: a half cosine from 1 to 1 - decay."""
    p = min(max(progress, 0.0), 1.0)
    return 1.0 - decay * (1.0 - math.cos(math.pi * p)) / 2.0


def mean_threads(thread_seconds: float, train_seconds: float) -> float | None:
    """Time-weighted torch thread count of a run (Trainer.mean_threads), None when none was recorded."""
    return thread_seconds / train_seconds if thread_seconds > 0 and train_seconds > 0 else None


class TrainingDiverged(FaststealError, RuntimeError):
    """A loss became NaN/inf; the last good checkpoint on disk is untouched."""


@dataclass
class TrainConfig:
    arch: str = "pggan"
    resolution: int = 32
    channels: int = 1
    latent_dim: int = 128
    width: int = 64
    batch: int = 32
    kimg: float = 100.0
    lr: float | None = None            # None: the architecture's default (PGGAN 1e-3, SNGAN 2e-4)
    lr_decay: float = 0.0              # the learning rate falls by this fraction over each phase (cosine); 0: flat
    n_dis: int | None = None           # None: PGGAN 1, SNGAN 5
    ema_kimg: float = 5.0              # EMA half-life in thousands of images
    phase_kimg: float | None = None    # PGGAN: kimg per fade and per stable phase; None: split evenly
    grow: bool = True                  # PGGAN: False trains at full resolution from the start (fine-tuning)
    r1_gamma: float | None = None      # fast: R1 weight; None: the architecture's default
    augment: str | None = None         # DiffAugment policy ("translation,cutout", "none"); None: arch default
    ada_target: float = 0.0            # > 0: the policy applies to a share p of images, steered so that D calls
                                       # this share of the reals real (augment.AdaptiveStrength); 0: always all
    distill: float = 0.0               # > 0: weight of the paired L1 loss G(code) ~ served image (chosen latents)
    distill_only_kimg: float = 0.0     # distillation: first train G on the paired loss alone (no D) this long
    distill_lr: float | None = None    # distillation: G's learning rate in that first phase; None: lr
    perceptual: float = 0.0            # distillation: weight of a perceptual distance beside the paired L1
    perceptual_images: int = 0         # images of each batch the perceptual distance is taken on; 0: all
    fresh_fakes: bool = False          # distillation's adversarial phase: D and G's adversarial loss see fakes
                                       # from fresh prior codes, not only the paired ones the queries bought
    gp_lambda: float = 10.0
    drift: float = 0.001
    seed: int = 0
    snapshot_kimg: float = 10.0        # checkpoint + sample grid every this many kimg (under a time budget,
                                       # also every same fraction of the minutes)
    minutes: float | None = None       # also stop once this many minutes of training steps ran (kimg: the cap)
    precision: str = "float32"         # "bf16": the networks' forward passes under bfloat16 autocast
    extra: dict = field(default_factory=dict)   # provenance added by callers (data source, command, ...)

    def resolved(self) -> dict:
        d = asdict(self)
        defaults = ARCH_DEFAULTS[self.arch]
        for key in ("lr", "n_dis", "r1_gamma", "augment"):
            d[key] = d[key] if d[key] is not None else defaults[key]
        d["betas"] = list(defaults["betas"])
        d["loss"] = defaults["loss"]
        d["ema_rampup"] = defaults["ema_rampup"]
        return d


# a resumed run may only run longer (in images or minutes) or snapshot differently
RESUMABLE_CHANGES = ("kimg", "snapshot_kimg", "minutes", "extra")


def pggan_schedule(kimg: float, levels: int, total_kimg: float, phase_kimg: float | None):
    """(level, alpha) of progressive growing after ``kimg`` thousand images, for a PGGAN of ``levels``
    resolutions (models.pggan.level_count).

    Level 0 (4x4) is stable for one phase; each higher level fades in over one phase then trains stable
    for one. The final level keeps training after its stable phase until ``total_kimg``.
    """
    if phase_kimg is None:
        phase_kimg = total_kimg / (2 * levels)        # the final resolution gets at least 1.5 phases
    if kimg < phase_kimg:
        return 0, 1.0
    t = (kimg - phase_kimg) / phase_kimg              # phases since level 0 ended
    level = min(levels - 1, 1 + int(t // 2))
    if level == levels - 1 and t >= 2 * (levels - 1):
        return level, 1.0
    in_fade = (t - 2 * (level - 1)) < 1.0
    alpha = (t - 2 * (level - 1)) if in_fade else 1.0
    return level, float(min(max(alpha, 0.0), 1.0))


def downscale_reals(x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
    """Real images at the current level; during a fade they blend in from the level below (as G does)."""
    size = 2 ** (level + 2)
    factor = x.shape[-1] // size
    if factor > 1:
        x = F.avg_pool2d(x, factor)
    if alpha < 1.0 and level > 0:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = torch.lerp(low, x, alpha)
    return x


def ema_beta(batch: int, ema_kimg: float, kimg: float | None = None, rampup: float | None = None) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg``; with ``rampup`` the half-life is at most
    rampup * kimg so far, so a short run's EMA does not remember its first, worst weights."""
    if rampup is not None and kimg is not None:
        ema_kimg = min(ema_kimg, kimg * rampup)
    return 0.5 ** (batch / max(ema_kimg * 1000.0, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


class Trainer:
    """Owns G, EMA-G, D, optimisers and the data stream; ``run()`` trains to ``config.kimg``."""

    def __init__(self, config: TrainConfig, data: ImageSet, *, checkpoint_path, run_dir=None,
                 progress: bool = True, features=None):
        """``features``: the perceptual term's network (config.perceptual > 0), with ``distance(copy, served)``;
        the caller builds it (attack.thief: the FID Inception's stem), so training imports no metric."""
        if config.arch not in ARCH_DEFAULTS:
            raise ValueError(f"arch must be one of {tuple(ARCH_DEFAULTS)}, got {config.arch!r}")
        if config.distill > 0 and data.codes is None:
            raise ValueError("distillation (distill > 0) needs images with their latent codes (--knowledge latents)")
        if config.distill > 0 and data.codes.shape[1] != config.latent_dim:
            raise ValueError(f"the codes have {data.codes.shape[1]} dimensions but the model's latent size is "
                             f"{config.latent_dim}")
        if config.perceptual > 0 and (config.distill <= 0 or features is None):
            raise ValueError("a perceptual term (perceptual > 0) is part of distillation: it needs distill > 0 "
                             "and a features network")
        if config.perceptual > 0 and config.resolution < 32:
            raise ValueError(f"the perceptual term needs images of at least 32x32 pixels, the model makes "
                             f"{config.resolution}x{config.resolution}")
        if not 0 <= config.perceptual_images <= config.batch:
            raise ValueError(f"perceptual_images must be between 0 (the whole batch) and the batch "
                             f"({config.batch}), got {config.perceptual_images}")
        if config.distill_lr is not None and not config.distill_lr > 0:
            raise ValueError(f"distill_lr must be positive (or None: lr), got {config.distill_lr}")
        if not 0 <= config.lr_decay <= 1:
            raise ValueError(f"lr_decay is the fraction the learning rate falls by, from 0 (flat) to 1 (to zero), "
                             f"got {config.lr_decay}")
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
        if data.resolution != config.resolution or data.channels != config.channels:
            raise ValueError(f"data is {data.channels}x{data.resolution}x{data.resolution} but the model "
                             f"expects {config.channels}x{config.resolution}x{config.resolution}")
        self.config = config
        self.settings = config.resolved()
        self.device = distributed.device()
        self.world = distributed.world()
        self.augment = augment.parse_policy(self.settings["augment"])
        if config.ada_target and not self.augment:
            raise ValueError("an adaptive augmentation (ada_target > 0) needs an augment policy to adapt; "
                             "give one, e.g. translation,color,cutout")
        self.ada = augment.AdaptiveStrength(config.ada_target, config.batch) if config.ada_target else None
        self.objective = losses.objective(self.settings["loss"], gp_lambda=config.gp_lambda, drift=config.drift,
                                          r1_gamma=self.settings["r1_gamma"])
        self.levels = level_count(config.resolution) if config.arch == "pggan" else None   # progressive growing
        self.data = data
        self.checkpoint_path = Path(checkpoint_path)
        self.run_dir = Path(run_dir) if run_dir else None
        self.progress = progress and distributed.is_main()
        self.features = features.to(self.device) if features is not None and config.perceptual > 0 else None
        torch.manual_seed(config.seed)
        self.G = build_generator(config.arch, config.resolution, config.channels, config.latent_dim,
                                 config.width).to(self.device)
        self.D = build_discriminator(config.arch, config.resolution, config.channels, config.width).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        lr, betas = self.settings["lr"], tuple(self.settings["betas"])
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)
        group = 4 if config.arch == "pggan" else 1       # minibatch-stddev group size of the PGGAN critic
        self.take = distributed.rank_positions(config.batch, distributed.rank(), self.world, group)
        self.G_train, self.D_train = distributed.data_parallel(self.G), distributed.data_parallel(self.D)
        # distillation draws (image, code) pairs, every other recipe images alone
        self.batches = InfiniteBatches(data, config.batch, config.seed, take=self.take if self.world > 1 else None,
                                       pairs=config.distill > 0)
        self.images_seen = 0
        self.steps = 0
        self.d_steps = 0
        self.last_paired = None
        self.train_seconds = 0.0
        self.thread_seconds = 0.0            # CPU: torch threads x step time, to report the threads a run had
        self.curve: list[dict] = []          # fidelity probes during training (see run(probe=...))
        self.last_losses = {"loss_D": float("nan"), "loss_G": float("nan")}
        self.grid_z = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))

    # ----- schedule -------------------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.images_seen / 1000.0

    def level_alpha(self) -> tuple[int | None, float]:
        if self.config.arch != "pggan":
            return None, 1.0
        if not self.config.grow:
            return self.levels - 1, 1.0
        return pggan_schedule(self.kimg, self.levels, self.config.kimg, self.config.phase_kimg)

    # ----- one iteration --------------------------------------------------------------------------
    def _slice(self, global_draw: torch.Tensor) -> torch.Tensor:
        """This rank's part of a tensor drawn for the whole global batch (the RNG stream is shared)."""
        return (global_draw if self.world == 1 else global_draw[self.take]).to(self.device)

    def in_paired_phase(self) -> bool:
        """Distillation's first phase (paired loss only) lasts distill_only_kimg; under a time budget it also
        ends at the same fraction of the minutes, so the adversarial phase always gets its share of the time."""
        if self.kimg >= self.config.distill_only_kimg:
            return False
        if self.config.minutes:
            return self.train_seconds < self._paired_share() * self.config.minutes * 60
        return True

    def _paired_share(self) -> float:
        """The fraction of the run (of its kimg, or of its minutes) that distillation trains on the paired loss."""
        return self.config.distill_only_kimg / max(self.config.kimg, 1e-9)

    def run_progress(self) -> float:
        """How far training is toward its end, 0 to 1: the kimg cap or the time budget, whichever is nearer."""
        done = self.kimg / max(self.config.kimg, 1e-9)
        if self.config.minutes:
            done = max(done, self.train_seconds / (self.config.minutes * 60))
        return min(done, 1.0)

    def phase_progress(self) -> float:
        """How far the current phase is toward its end, 0 to 1. Distillation's two phases (paired loss alone,
        then with the discriminator) end where in_paired_phase says, at the same fraction of the run; any other
        run is one phase."""
        done = self.run_progress()
        share = min(self._paired_share(), 1.0) if self.config.distill > 0 else 0
        if share <= 0:
            return done
        if self.in_paired_phase():
            return min(done / share, 1.0)
        return 1.0 if share >= 1 else max(done - share, 0.0) / (1 - share)

    def phase_lr(self) -> float:
        """The current phase's learning rate before any fall: distill_lr in distillation's paired phase (a
        regression takes larger steps than an adversarial game stays stable with), lr otherwise."""
        if self.config.distill_lr is not None and self.config.distill > 0 and self.in_paired_phase():
            return self.config.distill_lr
        return self.settings["lr"]

    def _set_learning_rate(self) -> None:
        """Both optimisers at the phase's rate (phase_lr), at the phase's point on the cosine fall (lr_decay):
        smaller steps late in a phase average out the noise of small batches. The fall is an option, off by
        default: on the 64x64 icons target it did not bring the copy closer (docs/results/extraction.md)."""
        if not self.config.lr_decay and self.config.distill_lr is None:
            return
        rate = self.phase_lr() * lr_scale(self.phase_progress(), self.config.lr_decay)     # no fall: scale 1
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = rate

    def _main_clock(self) -> float:
        """Rank 0's training time on every rank: time-budget decisions (phase, stop) must agree across ranks."""
        t = torch.tensor([self.train_seconds if distributed.is_main() else 0.0], dtype=torch.float64)
        return float(distributed.all_sum(t)[0])

    def out_of_time(self) -> bool:
        return bool(self.config.minutes) and self.train_seconds >= self.config.minutes * 60

    def _mixed(self):
        """bfloat16 autocast around the networks' forward passes (G, D and the perceptual term's features) when
        config.precision is "bf16"; their outputs are cast back, so the losses and the R1/GP penalties (which
        call D themselves, outside this context) stay in float32, as do the weights and the optimiser."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _full(self, t: torch.Tensor) -> torch.Tensor:
        """An output of the autocast region back in float32 (untouched when autocast is off, e.g. in float64)."""
        return t.float() if self.config.precision == "bf16" else t

    def _interpolation_weights(self, dtype: torch.dtype) -> torch.Tensor:
        """WGAN-GP's interpolation weights, drawn for the global batch from the shared stream."""
        return self._slice(torch.rand(self.config.batch, 1, 1, 1, dtype=dtype))

    def _latents(self) -> torch.Tensor:
        return self._slice(torch.randn(self.config.batch, self.config.latent_dim))

    def step(self) -> dict:
        """n_dis critic updates then one generator update; returns float losses."""
        self._set_learning_rate()
        if self.config.distill > 0 and self.in_paired_phase():
            return self._regression_step()
        level, alpha = self.level_alpha()
        kw = {} if level is None else {"level": level, "alpha": alpha}
        self.G.train()
        self.D.train()
        G, D = self.G_train, self.D_train
        paired = self.config.distill > 0
        fresh = paired and self.config.fresh_fakes
        for _ in range(self.settings["n_dis"]):
            if paired:      # distillation: the fakes come from the codes that bought the real images ...
                real, codes = (t.to(self.device) for t in next(self.batches))
                if fresh:   # ... or from the whole prior, which the copy is measured on
                    codes = self._latents()
            else:
                real, codes = next(self.batches).to(self.device), self._latents()
            if level is not None:
                real = downscale_reals(real, level, alpha)
            with torch.no_grad(), self._mixed():
                fake = self._full(self.G(codes, **kw))
            with self._mixed():
                d_real = self._full(D(augment.diff_augment(real, self.augment, self.augment_p), **kw))
                d_fake = self._full(D(augment.diff_augment(fake, self.augment, self.augment_p), **kw))
            loss_d = self.objective.critic_loss(D, real, fake, d_real, d_fake, draw_eps=self._interpolation_weights,
                                                critic_step=self.d_steps, **kw)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
            self.d_steps += 1
            self.images_seen += self.config.batch
            self._adapt_augment(d_real)
        self.D.requires_grad_(False)
        if paired:
            target, codes = (t.to(self.device) for t in next(self.batches))
        else:
            codes = self._latents()
        with self._mixed():
            if fresh:       # one pass: the paired codes for the L1, fresh ones for the discriminator's verdict
                fake, judged = self._full(G(torch.cat([codes, self._latents()]), **kw)).split(len(codes))
            else:
                fake = judged = self._full(G(codes, **kw))
            d_fake = self._full(self.D(augment.diff_augment(judged, self.augment, self.augment_p), **kw))
        loss_g = self.objective.generator_loss(d_fake)
        if paired:
            if level is not None:
                target = downscale_reals(target, level, alpha)
            loss_g = loss_g + self._paired_loss(fake, target)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        update_ema(self.G_ema, self.G, ema_beta(self.config.batch, self.config.ema_kimg, self.kimg,
                                                self.settings["ema_rampup"]))
        self.steps += 1
        return self._finish_step(loss_d, loss_g)

    @property
    def augment_p(self) -> float:
        """The share of images each augmentation applies to: adapted with ada_target, else all of them."""
        return self.ada.p if self.ada is not None else 1.0

    def _adapt_augment(self, d_real: torch.Tensor) -> None:
        """Feed D's outputs on the reals to the adaptive augmentation; every few steps move its strength, from
        the signs summed over all ranks so that every rank keeps the same p."""
        if self.ada is None:
            return
        self.ada.observe(d_real)
        if self.ada.due():
            both = torch.stack([torch.as_tensor(self.ada.signs, dtype=torch.float64).cpu(),
                                torch.tensor(float(self.ada.count), dtype=torch.float64)])
            distributed.all_sum(both)
            self.ada.update(float(both[0]), float(both[1]))

    def _regression_step(self) -> dict:
        """Distillation without a discriminator: G(code) regressed onto the served image (L1).

        About three times cheaper per image than an adversarial step, it gets the copy close fast; the
        adversarial term added afterwards removes the blur that regression leaves where G is unsure.
        """
        kw = {}
        level, alpha = self.level_alpha()
        if level is not None:
            kw = {"level": level, "alpha": alpha}
        self.G.train()
        target, codes = (t.to(self.device) for t in next(self.batches))
        if level is not None:
            target = downscale_reals(target, level, alpha)
        with self._mixed():
            fake = self._full(self.G_train(codes, **kw))
        paired_loss = self._paired_loss(fake, target)
        self.opt_G.zero_grad(set_to_none=True)
        paired_loss.backward()
        self.opt_G.step()
        self.images_seen += self.config.batch
        update_ema(self.G_ema, self.G, ema_beta(self.config.batch, self.config.ema_kimg, self.kimg,
                                                self.settings["ema_rampup"]))
        self.steps += 1
        return self._finish_step(torch.zeros((), device=paired_loss.device), paired_loss)

    def _paired_loss(self, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted distillation loss: L1 between copy and served image, plus the perceptual distance
        where it is set and the images are at least 32 pixels wide (a growing PGGAN starts smaller). The
        perceptual distance is a mean over images, so on part of the batch (perceptual_images) it estimates
        the same term with more noise, for that part of its cost. The unweighted L1 is kept for the progress
        bar and the curve (last_paired)."""
        l1 = losses.paired_l1(fake, target)
        self.last_paired = float(l1.detach())
        loss = self.config.distill * l1
        if self.features is not None and fake.shape[-1] >= 32:
            k = self.config.perceptual_images or fake.shape[0]     # batches are shuffled: the first k are a sample
            with self._mixed():             # the feature network is a forward pass like the others
                distance = self._full(self.features.distance(fake[:k], target[:k]))
            loss = loss + self.config.perceptual * distance
        return loss

    def _finish_step(self, loss_d: torch.Tensor, loss_g: torch.Tensor) -> dict:
        """Average the losses over ranks for reporting and stop on NaN/inf."""
        both = torch.stack([loss_d.detach(), loss_g.detach()]).float().cpu()
        distributed.all_mean_([both])
        out = {"loss_D": both[0].item(), "loss_G": both[1].item()}
        if not all(math.isfinite(v) for v in out.values()):
            raise TrainingDiverged(
                f"training diverged at {self.kimg:.1f} kimg (loss_D={out['loss_D']}, loss_G={out['loss_G']}); "
                f"the last good checkpoint {self.checkpoint_path} is kept; lower --lr or change --seed")
        self.last_losses = out
        return out

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        level, alpha = self.level_alpha()
        cfg = self.settings | {"data_source": self.data.source}
        return {
            "config": cfg,
            "data_fingerprint": self.data.fingerprint,
            "progress": {"images_seen": self.images_seen, "steps": self.steps, "kimg": self.kimg,
                         "level": level, "alpha": alpha, "train_seconds": self.train_seconds, "d_steps": self.d_steps,
                         "thread_seconds": self.thread_seconds,
                         "stopped": self.stopped(), **self.last_losses},
            **({"adaptive_augment": self.ada.state()} if self.ada is not None else {}),
            "curve": self.curve,
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
            "optim_G": self.opt_G.state_dict(), "optim_D": self.opt_D.state_dict(),
            "loader": self.batches.state(), "rng": torch.get_rng_state(),
        }

    def save(self) -> Path:
        state = self.state_dict()   # built on every rank (cheap), written by rank 0
        return distributed.on_main(save_checkpoint, state, self.checkpoint_path)

    def init_weights(self, path) -> None:
        """Start from another run's G, EMA-G and D (fine-tuning, transfer); optimisers start fresh."""
        state = load_checkpoint(path)
        for key in ("arch", "resolution", "channels", "latent_dim", "width"):
            if state["config"][key] != self.settings[key]:
                raise CheckpointError(f"{path}: has {key}={state['config'][key]}, this run needs "
                                      f"{key}={self.settings[key]}")
        self.G.load_state_dict(float_state(state.get("G", state["G_ema"])))
        self.G_ema.load_state_dict(float_state(state["G_ema"]))
        self.D.load_state_dict(float_state(state["D"]))

    def resume(self, path) -> None:
        """Continue a run from its checkpoint: the data and every setting but the length and snapshot interval
        must match (a run resumed with another learning rate or batch would be a different experiment)."""
        state = load_checkpoint(path)
        if "optim_G" not in state:
            raise CheckpointError(f"{path}: has no optimiser state (a slimmed/built-in file); cannot resume")
        stored = state["config"]
        for key, now in self.settings.items():
            if key in RESUMABLE_CHANGES or key == "phase_kimg" or key not in stored:   # absent: an older file
                continue
            then = list(stored[key]) if isinstance(stored[key], tuple) else stored[key]
            if then != now:
                raise CheckpointError(f"{path}: was trained with {key}={then}, now {key}={now}; "
                                      f"use the same options to resume")
        if self.settings["arch"] == "pggan" and self.config.grow:     # the phases that were run, not the option
            then = stored.get("phase_kimg") or stored["kimg"] / (2 * self.levels)
            now = self.config.phase_kimg or self.config.kimg / (2 * self.levels)
            if abs(then - now) > 1e-9:
                raise CheckpointError(f"{path}: its growth phases last {then:g} kimg, the new length would make "
                                      f"them {now:g}; pass --phase-kimg {then:g} to train it longer")
        if state.get("data_fingerprint") != self.data.fingerprint:
            raise CheckpointError(f"{path}: was trained on different data (fingerprint mismatch)")
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["optim_G"])
        self.opt_D.load_state_dict(state["optim_D"])
        self.batches.load_state(state["loader"])
        torch.set_rng_state(state["rng"])
        self.images_seen = int(state["progress"]["images_seen"])
        self.steps = int(state["progress"]["steps"])
        self.d_steps = int(state["progress"].get("d_steps", self.steps * self.settings["n_dis"]))
        self.train_seconds = float(state["progress"].get("train_seconds", 0.0))
        self.thread_seconds = float(state["progress"].get("thread_seconds", 0.0))
        self.curve = list(state.get("curve", []))
        if self.ada is not None:
            if "adaptive_augment" not in state:
                raise CheckpointError(f"{path}: was trained without the adaptive augmentation; resume it without "
                                      f"ada_target, or start over")
            self.ada.load_state(state["adaptive_augment"])

    # ----- samples --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        level, alpha = self.level_alpha()
        kw = {} if level is None else {"level": level, "alpha": alpha}
        x = self.G_ema(self.grid_z.to(self.device), **kw).clamp(-1, 1).cpu()
        if x.shape[-1] != self.config.resolution:
            x = F.interpolate(x, size=self.config.resolution, mode="nearest")
        return to_uint8(x)

    def snapshot(self) -> None:
        self.save()
        if self.run_dir is not None:
            grid = self.sample_grid()
            distributed.on_main(save_grid, grid, self.run_dir / "grids" / f"grid-{self.kimg:07.1f}kimg.png")
            distributed.on_main(save_grid, grid, self.run_dir / "grid.png")

    # ----- the loop -------------------------------------------------------------------------------
    def run(self, probe=None, probe_kimg: float | None = None) -> dict:
        """Train to ``config.kimg`` (or ``config.minutes``). With ``probe`` (a callable scoring the EMA
        generator, see attack/curve.py) a point is added to ``self.curve`` every ``probe_kimg`` and at the end;
        under a time budget a probe (and a snapshot) also comes at the same fraction of the minutes, whichever
        is first. The time spent probing is not counted as training time."""
        total = int(self.config.kimg * 1000)
        length = max(self.config.kimg, 1e-9)
        snap_every = self.config.snapshot_kimg / length                 # marks as fractions of the run
        next_snap = self._next_mark(snap_every)
        next_probe = probe_every = None
        if probe is not None:
            probe_every = (probe_kimg or max(self.config.kimg / 8, 0.001)) / length
            next_probe = self._next_mark(probe_every)
            if not self.curve:
                self._probe(probe)
        if self.device.type == "cpu":
            allocator.keep_freed_memory()       # a step's buffers are reused, not faulted in again each time
        bar = tqdm(total=total, initial=self.images_seen, unit="img", unit_scale=True, disable=not self.progress,
                   desc=f"train {self.config.arch}", dynamic_ncols=True, smoothing=0.05)
        start, start_seen = time.perf_counter(), self.images_seen
        while self.images_seen < total and not self.out_of_time():
            before = self.images_seen
            tick = time.perf_counter()
            out = self.step()
            took = time.perf_counter() - tick
            self.train_seconds += took     # probes and snapshots are not training time
            if self.device.type == "cpu":
                self.thread_seconds += torch.get_num_threads() * took
            if self.config.minutes and distributed.active():
                self.train_seconds = self._main_clock()
            bar.update(self.images_seen - before)
            level, alpha = self.level_alpha()
            post = {"D": f"{out['loss_D']:.3f}", "G": f"{out['loss_G']:.3f}"}
            if self.last_paired is not None:
                post["L1"] = f"{float(self.last_paired):.3f}"
            if level is not None:
                post["res"] = f"{2 ** (level + 2)}" + (f" a={alpha:.2f}" if alpha < 1 else "")
            if self.ada is not None:
                post["p"] = f"{self.ada.p:.2f}"
            if self.curve:
                post["fid@" + str(probe.n if probe is not None else "")] = f"{self.curve[-1]['fidelity_fid']:.1f}"
                if "held_out_l1" in self.curve[-1]:     # the paired L1 on codes never bought
                    post["L1 fresh"] = f"{self.curve[-1]['held_out_l1']:.3f}"
            bar.set_postfix(post, refresh=False)
            cpu.adapt()       # re-fit torch's threads to what other processes leave free (unless pinned)
            running = self.images_seen < total and not self.out_of_time()     # else the end probes and saves
            if next_probe is not None and self._reached(next_probe) and running:
                self._probe(probe)
                next_probe = self._next_mark(probe_every)
            if self._reached(next_snap) and running:
                self.snapshot()
                next_snap = self._next_mark(snap_every)
        if probe is not None and (not self.curve or self.curve[-1]["images_seen"] < self.images_seen):
            self._probe(probe)
        bar.close()
        self.snapshot()
        elapsed = time.perf_counter() - start
        return {"kimg": self.kimg, "steps": self.steps, "seconds": elapsed, "train_seconds": self.train_seconds,
                "images_per_s": (self.images_seen - start_seen) / max(elapsed, 1e-9), "stopped": self.stopped(),
                **self.last_losses}

    def _reached(self, mark: float) -> bool:
        return self.run_progress() >= mark - 1e-9

    def _next_mark(self, every: float) -> float:
        """The next multiple of ``every`` (a fraction of the run) after the progress so far. Probes and snapshots
        are spaced this way so that a time budget spaces them in minutes: a run the clock stops at a tenth of
        its kimg cap still gets its curve points and its checkpoints to resume from."""
        return (math.floor(self.run_progress() / every + 1e-9) + 1) * every

    @property
    def mean_threads(self) -> float | None:
        """Torch CPU threads averaged over training time: what the thread governor gave this run, the first
        thing to look at when a run trained fewer images than its budget promised. None on a GPU."""
        return mean_threads(self.thread_seconds, self.train_seconds)

    def stopped(self) -> str | None:
        """Why training ended: "kimg" (the length was reached), "minutes" (the time budget ran out), or None."""
        if self.images_seen >= int(self.config.kimg * 1000):
            return "kimg"
        return "minutes" if self.out_of_time() else None

    def _probe(self, probe) -> None:
        self.G_ema.eval()
        point = {"images_seen": self.images_seen, "kimg": self.kimg, "train_seconds": round(self.train_seconds, 2),
                 **probe(self.G_ema)}
        if self.last_paired is not None:
            point["paired_l1"] = float(self.last_paired)
        if self.ada is not None:
            point["augment_p"] = round(self.ada.p, 4)
            point["d_real_sign"] = None if math.isnan(self.ada.last_r) else round(self.ada.last_r, 4)
        self.curve.append(point)

