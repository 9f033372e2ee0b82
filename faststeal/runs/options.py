"""The options of the commands, each object checking itself once before any work starts.

The CLI builds these from click's parameters (``from_params``) and calls ``check()``; library callers
do the same. Every rule about which values a run takes lives with its options object, once: a bad value
raises OptionError naming the flag, which the CLI prints as one line. The attack commands (extract, sweep,
defend), fid and verify keep theirs here; train-target, transfer and verify-eval beside their runners.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from faststeal import distributed
from faststeal.augment import parse_policy
from faststeal.defense import DefenseError, Family, parse_family
from faststeal.errors import OptionError
from faststeal.fileio import UnwritablePath, check_writable_folder
from faststeal.targets import Hints, TargetError, detect_kind
from faststeal.targets.oracle import LatentPrior
from faststeal.train import ARCH_DEFAULTS, TrainConfig, native_bf16

# How long the thief trains, for every attack and knowledge level. When neither length is given, each attack
# GAN also stops after DEFAULT_MINUTES of training, so that a run ends in a predictable time on any machine.
# The measurements behind both numbers: docs/results/extraction.md ("Why 80 kimg for images", "How long").
DEFAULT_ATTACK_KIMG = 80.0
DEFAULT_MINUTES = 20.0


@dataclass(frozen=True)
class ThiefSize:
    """The attack GAN's architecture, width, batch and length cap when the flags leave them open."""
    attack: str
    width: int
    batch: int
    kimg: float = DEFAULT_ATTACK_KIMG
    bf16: bool = False      # train under bf16 autocast where the hardware runs it natively (train.native_bf16)
    distill_lr: float | None = None     # chosen latents: the paired phase's learning rate; None: the attack's
    distill_only: float = 0.75          # chosen latents: the share of training on the paired loss alone
    images_augment: str | None = None   # images only: the DiffAugment policy; None: the architecture's
    images_ada_target: float = 0.0      # images only, with images_augment: the adaptive strength's target


# By architecture: the sizes each trains with unless told otherwise (fast: batch 16, more steps per image).
ARCH_SIZES = {"fast": ThiefSize("fast", 64, 16), "pggan": ThiefSize("pggan", 64, 32),
              "sngan": ThiefSize("sngan", 64, 32), "dcgan": ThiefSize("dcgan", 32, 64, 400.0)}
# dcgan's cap is far: on a 2-core CPU its 20 minutes end at ~160 kimg, and its copies were still improving there
# The default thief (docs/guides/steal.md, "The thief at each target size", has the measurements): up to
# SMALL_TARGET pixels wide the fast thief; above, the thief of the target's own family when faststeal trained it
# (the fast thief copied the 64x64 icons PGGAN far better than a DCGAN did), else a DCGAN (it copied a foreign
# 64x64 DCGAN far better than the fast thief did).
SMALL_TARGET = 32
LARGE_THIEF = {"pggan": "fast", "fast": "fast", "sngan": "fast", "dcgan": "dcgan"}   # by the target's arch
FOREIGN_THIEF = "dcgan"


def default_attack(resolution: int, target_arch: str | None = None) -> str:
    """The attack GAN's architecture when --attack is not given, from the target's size and family."""
    if resolution <= SMALL_TARGET:
        return "fast"
    return LARGE_THIEF.get(target_arch, FOREIGN_THIEF)


# The default fast thief above SMALL_TARGET gets a farther cap: with chosen latents its 20 minutes reached 175 kimg
# against the 64x64 icons PGGAN on a 2-core CPU, still improving (80 kimg is the 32x32 default's length).
# It also trains under bf16 autocast where that is native: 1.4-1.7x the images per second on an AMX CPU (1.36x with
# AVX-512 BF16 alone), and no worse per image seen against the icons PGGAN (docs/results/extraction.md).
# With chosen latents its paired phase steps at twice the adversarial rate: on a CPU without AMX, where a budget
# ends with the regression far from done, the copy ended 12 and 18 FID closer in the same minutes (two seeds;
# docs/results/extraction.md). And the discriminator joins halfway instead of at three quarters: the copy ended
# closer in every seed measured, in bf16 on an AMX CPU and in float32 without (docs/results/extraction.md).
# From images alone its discriminator sees translation, colour and cutout, each on a share of the images that
# ADA steers to target 0.6, where translating every image let the copy lose the target's variety in some seeds:
# alone on both cores for 25 minutes against the icons PGGAN, 31.53 and 20.71 against 16.63 and 17.81 (seeds 0
# and 1; docs/results/extraction.md).
LARGE_SIZES = {"fast": ThiefSize("fast", 64, 16, 200.0, bf16=True, distill_lr=4e-3, distill_only=0.5,
                                  images_augment="translation,color,cutout", images_ada_target=0.6),
               "dcgan": ARCH_SIZES["dcgan"]}


def thief_size(resolution: int, attack: str | None = None, target_arch: str | None = None) -> ThiefSize:
    """The sizes an attack GAN trains with against a target of this resolution and architecture (``attack``:
    the one asked for, with its own sizes; None: the default thief for that target)."""
    if attack:
        return ARCH_SIZES[attack]
    chosen = default_attack(resolution, target_arch)
    return LARGE_SIZES[chosen] if resolution > SMALL_TARGET else ARCH_SIZES[chosen]


def at_least(value, low, flag: str, note: str = "") -> None:
    """A count below its minimum is refused; None means not given."""
    if value is not None and value < low:
        raise OptionError(f"must be >= {low}{note}, got {value}", flag)


def positive(value, flag: str) -> None:
    """A length, rate or strength must be above zero; None means not given."""
    if value is not None and not value > 0:
        raise OptionError(f"must be > 0, got {value:g}", flag)


class FromParams:
    """Options built from click's parameters: the fields a class names are taken, the rest ignored; the
    foreign-target hints (--latent-dim, --output-range, --num-classes) are gathered into one dict."""

    @classmethod
    def from_params(cls, params: dict, **overrides):
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in names}
        if "target_hints" in names:
            values["target_hints"] = hints_dict(params.get("target_latent_dim"), params.get("output_range"),
                                                params.get("num_classes") or 0)
        return cls(**(values | overrides))


def hints_dict(latent_dim=None, output_range=None, num_classes=0) -> dict | None:
    """The foreign-target flags as targets.Hints fields, or None when none was given."""
    hints = Hints(latent_dim, output_range, num_classes)
    return None if hints == Hints() else hints.as_dict()


def check_out_folder(out, flag: str = "--out") -> None:
    """A run folder exists (created now) and takes files; one line naming the option otherwise."""
    try:
        check_writable_folder(out)
    except UnwritablePath as exc:
        raise OptionError(str(exc), flag) from None


def check_out_file(out, force: bool, suffixes: tuple[str, ...], flag: str = "--out") -> None:
    """An output file: a known suffix, a writable folder, and no existing file unless --force."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise OptionError(f"{out}: use one of {', '.join(suffixes)}", flag)
    if out.exists() and not force:
        raise OptionError(f"{out} exists; pass --force to overwrite it", flag)
    check_out_folder(out.parent if str(out.parent) else ".", flag)


@dataclass
class AttackOptions(FromParams):
    """What every attack run shares (extract, sweep, defend): the target, the attack GAN's size, the budget,
    the evaluation size and where the run folder goes."""

    target: str
    attack: str | None = None           # None, like the width, batch and length: sized for the target (sized_for)
    queries: int = 10_000
    attack_kimg: float | None = None    # None: the thief's cap (ThiefSize.kimg), under DEFAULT_MINUTES
    minutes: float | None = None        # also stop each attack GAN after this many minutes of training
    knowledge: str = "images"           # "latents": the adversary chooses the codes and distils on the pairs
    distill: float = 10.0               # weight of the paired L1 loss with knowledge "latents"
    distill_only: float | None = None   # fraction of training on the paired loss alone (no D); None: sized_for
    distill_lr: float | None = None     # the copy's learning rate in that paired phase; None: the attack's
    perceptual: float = 0.0             # weight of the perceptual distance beside the paired L1 (latents only)
    perceptual_images: int = 0          # images per batch the perceptual distance is taken on; 0: the batch
    fresh_fakes: bool | None = None     # latents: D judges fakes from fresh codes, not the paired; None: sized_for
    curve_n: int = 128                  # samples per fidelity probe during training (0: no curve)
    curve_points: int = 6               # probes spread over training (plus one at the start and the end)
    attack_width: int | None = None
    attack_latent_dim: int = 128
    batch: int | None = None
    attack_lr: float | None = None      # the attack GAN's training knobs; None: its architecture's default
    lr_decay: float = 0.0               # fraction the learning rate falls by over each phase (cosine); 0: flat
    r1_gamma: float | None = None       # (train.ARCH_DEFAULTS); R1 is the fast thief's regulariser only
    augment: str | None = None          # DiffAugment policy: "translation,color,cutout" or "none"
    ada_target: float | None = None     # > 0: the policy's strength adapts to D's sureness on reals; 0: fixed;
                                        # None: sized_for (the size's own, with its policy, when --augment is open)
    ema_kimg: float = 5.0               # half-life of the copy's weight average, thousands of images
    attack_precision: str | None = None  # "bf16": forward passes under bfloat16 autocast; None: sized_for
    fid_n: int = 2000
    eval_data: str | None = None        # default: the target's own training data
    target_hints: dict | None = None    # what a foreign target's probe cannot find (targets.Hints fields)
    prior: str = "normal"
    seed: int = 0
    out: str = "runs/extract"
    progress: bool = True
    fresh: bool = False                 # start over: drop the run folder's queries, attacks and results

    @property
    def sized(self) -> bool:
        return (None not in (self.attack, self.attack_width, self.batch, self.attack_kimg, self.attack_precision,
                             self.ada_target)
                and (self.knowledge != "latents" or None not in (self.distill_only, self.fresh_fakes)))

    def sized_for(self, resolution: int, target_arch: str | None = None) -> None:
        """Fill what the flags left open from the target's resolution and architecture (thief_size; a foreign
        target's is its format): the attack GAN's architecture, width, batch, length cap and precision (bf16
        where the thief was measured with it and this machine runs it natively), with chosen latents the
        paired phase's learning rate and share, with images only the augmentation (when neither --augment nor
        --ada-target was given), and the default time budget when no length was given. Idempotent."""
        if self.sized:
            return
        size = thief_size(resolution, self.attack, target_arch)
        if self.attack_kimg is None and self.minutes is None:
            self.minutes = DEFAULT_MINUTES
        self.attack = size.attack
        self.attack_width = self.attack_width if self.attack_width is not None else size.width
        self.batch = self.batch if self.batch is not None else size.batch
        self.attack_kimg = self.attack_kimg if self.attack_kimg is not None else size.kimg
        if self.attack_precision is None:
            self.attack_precision = "bf16" if size.bf16 and native_bf16(distributed.device()) else "float32"
        if self.knowledge == "latents":
            self.distill_lr = self.distill_lr if self.distill_lr is not None else size.distill_lr
            self.distill_only = self.distill_only if self.distill_only is not None else size.distill_only
            self.fresh_fakes = bool(self.fresh_fakes)       # measured without gain: no size turns it on
        elif self.augment is None and self.ada_target is None:
            self.augment, self.ada_target = size.images_augment, size.images_ada_target
        self.ada_target = self.ada_target if self.ada_target is not None else 0.0

    def check(self) -> None:
        """Refuse bad sizes before any query is bought or any image trained on: one line each."""
        at_least(self.queries, 1, "--queries")
        at_least(self.attack_width, 1, "--attack-width")
        at_least(self.batch, 1, "--batch")
        at_least(self.fid_n, 2, "--fid-n")
        positive(self.attack_kimg, "--attack-kimg")
        positive(self.minutes, "--minutes")
        at_least(self.distill, 0, "--distill")
        if self.distill_only is not None and not 0 <= self.distill_only <= 1:
            raise OptionError(f"is the fraction of training spent on the paired loss alone: between 0 (adversarial "
                              f"from the start) and 1 (no discriminator at all), got {self.distill_only}",
                              "--distill-only")
        if self.distill_only is not None and self.knowledge != "latents":
            raise OptionError("sets the share of training on distillation's paired loss, which only chosen latents "
                              "have: give --knowledge latents too, or leave it out", "--distill-only")
        positive(self.distill_lr, "--distill-lr")
        if self.fresh_fakes is not None and self.knowledge != "latents":
            raise OptionError("chooses the codes of distillation's adversarial fakes, which only chosen latents "
                              "have: give --knowledge latents too, or leave it out",
                              "--fresh-fakes" if self.fresh_fakes else "--paired-fakes")
        if self.distill_lr is not None and self.knowledge != "latents":
            raise OptionError("sets the learning rate of distillation's paired phase, which only chosen latents "
                              "have: give --knowledge latents too, or leave it out", "--distill-lr")
        at_least(self.perceptual, 0, "--perceptual")
        if self.perceptual > 0 and self.knowledge != "latents":
            raise OptionError("the perceptual term compares the copy's image with the served one for the same "
                              "code: it needs --knowledge latents", "--perceptual")
        at_least(self.perceptual_images, 0, "--perceptual-images")
        if self.perceptual_images and not self.perceptual:
            raise OptionError("sets how many images of each batch the perceptual term sees: give --perceptual W "
                              "too, or leave it out", "--perceptual-images")
        if self.perceptual_images and self.batch and self.perceptual_images > self.batch:
            raise OptionError(f"{self.perceptual_images} is more than the batch ({self.batch}); give at most "
                              f"the batch, or 0 for all of it", "--perceptual-images")
        positive(self.attack_lr, "--attack-lr")
        if not 0 <= self.lr_decay <= 1:
            raise OptionError(f"is the fraction the learning rate falls by: between 0 (flat) and 1 (to zero), "
                              f"got {self.lr_decay}", "--lr-decay")
        positive(self.ema_kimg, "--ema-kimg")
        at_least(self.r1_gamma, 0, "--r1-gamma")
        if self.r1_gamma is not None and self.attack and ARCH_DEFAULTS[self.attack]["loss"] != "logistic-r1":
            raise OptionError(f"R1 regularises the logistic-loss thieves (fast, dcgan) only; --attack {self.attack} "
                              f"has no R1 term",
                              "--r1-gamma")
        try:
            policy = parse_policy(self.augment)
        except ValueError as exc:
            raise OptionError(str(exc), "--augment") from None
        if self.ada_target is not None and not 0 <= self.ada_target < 1:
            raise OptionError(f"is the share of real images the discriminator may call real before the "
                              f"augmentation strengthens: between 0 and 1 (0.6 is usual; 0: off), got "
                              f"{self.ada_target}", "--ada-target")
        no_policy = self.augment is not None and not policy or (
            self.augment is None and self.attack and not parse_policy(ARCH_DEFAULTS[self.attack]["augment"]))
        if self.ada_target and no_policy:
            raise OptionError("adapts how often the --augment policy applies, and this thief has none: give "
                              "--augment too, e.g. translation,color,cutout", "--ada-target")
        if self.curve_n == 1 or self.curve_n < 0:
            raise OptionError(f"must be 0 (no curve) or >= 2, got {self.curve_n}", "--curve-n")
        try:
            LatentPrior.parse(self.prior)
        except ValueError as exc:
            raise OptionError(str(exc), "--prior") from None


@dataclass
class ExtractOptions(AttackOptions):
    real: str | None = None             # adversary's real data (accuracy extraction)
    real_count: int = 0
    target_discriminator: bool = False
    drs_rate: float = 0.5               # fraction of queries DRS keeps
    finetune_kimg: float | None = None  # default: attack_kimg / 3
    query_set: str | None = None        # reuse a query-set folder

    def check(self) -> None:
        super().check()
        at_least(self.real_count, 0, "--real-count")
        if self.real and self.real_count <= 0:
            raise OptionError("give --real-count K with --real", "--real-count")
        positive(self.finetune_kimg, "--finetune-kimg")
        if not 0 < self.drs_rate <= 1:
            raise OptionError(f"must be in (0, 1], got {self.drs_rate:g}", "--drs-rate")


@dataclass
class DefendOptions(AttackOptions):
    defenses: list[str] = field(default_factory=list)   # one --defense value each (a family, maybe a sweep)
    out: str = "runs/defend"
    baseline: str | None = None    # URL target only: the undefended model, a file or a second URL

    def check(self, remote: bool | None = None) -> list[Family]:
        """Also: which defenses and baseline this target takes (``remote``: served over HTTP; default: read
        from the target's spec); returns the parsed defense families."""
        super().check()
        remote = detect_kind(self.target) == "http" if remote is None else remote
        check_sources(remote, self.defenses, bool(self.baseline))
        try:
            families = [parse_family(text, seed=self.seed) for text in self.defenses]
        except DefenseError as exc:
            raise OptionError(str(exc), "--defense") from None
        specs = [s.spec() for f in families for s in f.settings]
        dupes = sorted({s for s in specs if specs.count(s) > 1})
        if dupes:
            raise OptionError(f"defense setting {dupes[0]!r} is given twice", "--defense")
        return families


def check_sources(remote: bool, defenses: list[str], baseline_given: bool) -> None:
    """Which defenses and baseline a defend run may take; the one place these rules live. A server applies
    its own defense (so --defense is refused for a URL) and is measured against an undefended baseline given
    apart; an in-process target is its own baseline and needs a --defense."""
    if remote:
        if defenses:
            raise TargetError("defenses of an http:// target are set on the server (`faststeal serve --defense "
                              "SPEC`); drop --defense: defend measures the defense the server runs", flag="--defense")
        return
    if baseline_given:
        raise TargetError("only with an http:// --target; an in-process target is its own undefended baseline",
                          flag="--baseline")
    if not defenses:
        raise TargetError("give at least one --defense SPEC (e.g. noise:sigma=0.05,0.1; see --help), or an "
                          "http:// --target to measure a server's own defense", flag="--defense")


def attack_config(opts: AttackOptions, resolution: int, channels: int, kimg: float, *, grow: bool = True,
                  seed_offset: int = 0, latent_dim: int | None = None, distill: float = 0.0,
                  distill_only_kimg: float = 0.0, distill_lr: float | None = None, perceptual: float = 0.0,
                  perceptual_images: int = 0, fresh_fakes: bool = False) -> TrainConfig:
    """The attack GAN's TrainConfig for these options at the target's shape."""
    opts.sized_for(resolution)
    return TrainConfig(arch=opts.attack, resolution=resolution, channels=channels,
                       latent_dim=latent_dim or opts.attack_latent_dim, width=opts.attack_width, batch=opts.batch,
                       kimg=kimg, snapshot_kimg=max(kimg / 4, 0.001), seed=opts.seed + seed_offset, grow=grow,
                       distill=distill, distill_only_kimg=distill_only_kimg, distill_lr=distill_lr,
                       perceptual=perceptual,
                       perceptual_images=perceptual_images, fresh_fakes=fresh_fakes,
                       minutes=opts.minutes, lr=opts.attack_lr, lr_decay=opts.lr_decay,
                       r1_gamma=opts.r1_gamma, augment=opts.augment, ada_target=opts.ada_target,
                       ema_kimg=opts.ema_kimg,
                       precision=opts.attack_precision)


def knowledge_settings(opts: AttackOptions, target_config: dict) -> dict:
    """attack_config keywords for the adversary's knowledge: a distilled copy takes the target's code size."""
    opts.sized_for(target_config["resolution"], target_config.get("arch"))
    if opts.knowledge == "latents":
        return {"latent_dim": target_config["latent_dim"], "distill": opts.distill,
                "distill_only_kimg": opts.distill_only * opts.attack_kimg, "distill_lr": opts.distill_lr,
                "perceptual": opts.perceptual,
                "perceptual_images": opts.perceptual_images, "fresh_fakes": opts.fresh_fakes}
    return {}


@dataclass
class FidOptions(FromParams):
    """`faststeal fid A B`: which distance between two sources, on how many images, on what hardware."""

    a: str
    b: str
    n: int | None = None
    batch: int = 64
    metric: str = "fid"
    ci: float | None = None              # bootstrap interval level, e.g. 0.95
    resamples: int = 200
    seed: int = 0
    loader: str = "auto"
    precision: str = "float32"
    device: str | None = None
    no_cache: bool = False
    as_json: bool = False
    target_hints: dict | None = None

    def check(self) -> None:
        at_least(self.n, 2, "--n")
        at_least(self.batch, 1, "--batch")
        at_least(self.resamples, 2, "--bootstrap")
        if self.ci is not None and not 0 < self.ci < 1:
            raise OptionError(f"must be between 0 and 1 (e.g. 0.95), got {self.ci}", "--ci")
        if self.ci is not None and self.metric == "prdc":
            raise OptionError("intervals are for FID and KID; use --metric all with --ci", "--ci")


@dataclass
class VerifyOptions(FromParams):
    """`faststeal verify`: the suspect, the owner's key and the detector's band and sample size."""

    suspect: str
    key: str | None = None
    n: int = 5000
    reference: str | None = None
    low: float = 1.0
    high: float = 8.0
    null_keys: int = 0
    seed: int = 0
    exact_draws: int = 10_000
    api_key: str | None = None
    target_hints: dict | None = None

    def check(self, min_images: int) -> None:
        """``min_images``: the fewest images the detector decides on (ownership.verify.MIN_IMAGES)."""
        if not self.key:
            raise OptionError("give the owner's key, e.g. --key SECRET", "--key")
        at_least(self.n, min_images, "--n", " for a decision")
        at_least(self.null_keys, 0, "--null-keys")
        at_least(self.exact_draws, 0, "--exact-draws", " (0: normal approximation)")
        if not 0 <= self.low < self.high:
            raise OptionError(f"need 0 <= --low < --high, got {self.low:g} and {self.high:g}", "--low")

    def verify_kwargs(self) -> dict:
        """The keywords of ownership.verify.verify besides the suspect and the key."""
        return {"n": self.n, "reference": self.reference, "low": self.low, "high": self.high,
                "null_keys": self.null_keys, "seed": self.seed, "exact_draws": self.exact_draws,
                "api_key": self.api_key, "hints": self.target_hints}
