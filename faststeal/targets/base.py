"""What every command sees of a target generator, whatever its format: the ``Target``.

A target is resolved once from the ``--target`` string (``open_target``) and then answers every question a
command asks: its image shape, its latent size when known, a query oracle, samples, the id results are keyed
on, whether its weights are reachable here, and its discriminator when the format has one. Commands branch on
``in_process`` (weights here, or only a URL), never on the spelling of the spec.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from faststeal.errors import FaststealError
from faststeal.sampling import SAMPLE_SEED, generate

from .oracle import TargetOracle

OUTPUT_RANGES = ("-1,1", "0,1", "0,255")
RESOLUTIONS = (32, 64, 128)


class TargetError(FaststealError, ValueError):
    """A target that cannot be opened or measured; the message is one line that says what to do.

    ``flag``: the command-line option to blame, when one is (the CLI prints ``error: FLAG: message``)."""

    def __init__(self, message: str, flag: str | None = None):
        super().__init__(message)
        self.flag = flag

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.flag}: {text}" if self.flag else text


@dataclass(frozen=True)
class Hints:
    """What the user declared about a foreign generator; anything left None is probed.

    latent_dim: the code size d (the code is fed as (N, d) or (N, d, 1, 1), whichever the model takes).
    output_range: "-1,1", "0,1" or "0,255" (float or uint8 outputs alike).
    num_classes: K > 0 for a class-conditional generator: a label is drawn uniformly with each code.
    """

    latent_dim: int | None = None
    output_range: str | None = None
    num_classes: int = 0

    def __post_init__(self):
        if self.latent_dim is not None and self.latent_dim < 1:
            raise TargetError(f"--latent-dim must be >= 1, got {self.latent_dim}")
        if self.output_range is not None and self.output_range not in OUTPUT_RANGES:
            raise TargetError(f"--output-range must be one of {', '.join(OUTPUT_RANGES)}, got "
                              f"{self.output_range!r}")
        if self.num_classes < 0:
            raise TargetError(f"--num-classes must be >= 0, got {self.num_classes}")

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict | None) -> "Hints":
        return Hints(**(d or {}))


class Target:
    """A target generator, opened once (see the module docstring).

    kind: faststeal, torchscript, export, onnx, python or http. model_id: a digest of what produced the images
    (file bytes and the declared/probed settings that change them); results derived from the target are keyed
    on it. probed: what was declared or found by probing (latent layout, output range, ...), for `info` and run
    folders. loaded: the in-process generator (a LoadedTarget) or None for a URL.
    """

    def __init__(self, spec: str, kind: str, *, config: dict, model_id: str, probed: dict | None = None,
                 loaded=None, discriminator_loader=None, remote_factory=None, accepts_latents: bool = True):
        self.spec, self.kind, self.config, self.model_id = str(spec), kind, dict(config), model_id
        self.probed = dict(probed or {})
        self.loaded = loaded
        self._discriminator_loader = discriminator_loader
        self._remote_factory = remote_factory
        self.accepts_latents = bool(accepts_latents)

    def __repr__(self) -> str:
        return f"Target({self.kind}: {self.spec})"

    # -- shape --------------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])

    @property
    def arch(self) -> str | None:
        """The generator's architecture as faststeal names it (pggan, sngan, dcgan), a foreign file's format
        (torchscript, onnx, ...), or None when the target does not say."""
        return self.config.get("arch")

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def latent_dim(self) -> int | None:
        return self.config.get("latent_dim")

    @property
    def in_process(self) -> bool:
        """Weights (and so latents, samples, the FID floor and pictures) are reachable from here."""
        return self.loaded is not None

    @property
    def generator(self):
        """z (N, latent_dim) -> images in [-1, 1]; only for an in-process target."""
        return self._need_weights("its generator").generator

    @property
    def has_discriminator(self) -> bool:
        return self._discriminator_loader is not None

    def discriminator(self):
        if self._discriminator_loader is None:
            raise TargetError(f"{self.spec}: a {self.kind} target has no discriminator; --target-discriminator "
                              f"needs a faststeal checkpoint")
        return self._discriminator_loader()

    # -- access --------------------------------------------------------------------------------------------
    def oracle(self, budget: int, prior="normal", seed: int = 0, **hooks):
        """Query access as the adversary has it: an in-process TargetOracle, or the HTTP client of a URL.

        Over HTTP the server holds the budget, prior and defenses: ``hooks`` (defenses) are refused there."""
        if self._remote_factory is not None:
            if any(v is not None for v in hooks.values()):
                raise TargetError("defenses of an http:// target are set on the server (faststeal serve "
                                  "--defense SPEC)")
            return self._remote_factory(seed)
        return TargetOracle(self.loaded, budget=budget, prior=prior, seed=seed, **hooks)

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n uint8 samples from N(0, I) codes (the one sampler every measurement uses)."""
        return generate(self.generator, n, seed=SAMPLE_SEED if seed is None else seed)

    def describe(self) -> dict:
        """What `faststeal info` prints and run folders record: kind, shape, id and what was probed."""
        return {"target": self.spec, "kind": self.kind, "model_id": self.model_id,
                "resolution": self.resolution, "channels": self.channels, "latent_dim": self.latent_dim,
                "in_process": self.in_process, "accepts_latents": self.accepts_latents,
                "discriminator": self.has_discriminator, **({"probed": self.probed} if self.probed else {})}

    def summary(self) -> str:
        """One line for reports and the start of a run: kind, shape, latent layout, output range, id."""
        p = self.probed
        latent = p.get("latent_shape", "(N, d)").replace("d", str(p.get("model_latent_dim", self.latent_dim)))
        parts = [f"{self.kind} target {self.spec}", f"{self.channels}x{self.resolution}x{self.resolution}",
                 f"codes {latent}" if self.latent_dim is not None else "codes not revealed"]
        if p.get("num_classes"):
            parts.append(f"{p['num_classes']} classes (label in the last code coordinate)")
        if p.get("output_range"):
            parts.append(f"output range {p['output_range']}")
        if p.get("fixed_batch"):
            parts.append(f"fixed batch {p['fixed_batch']}")
        return ", ".join(parts) + f", id {self.model_id}"

    def _need_weights(self, what: str):
        if self.loaded is None:
            raise TargetError(f"{self.spec}: an http:// target's weights are not reachable; {what} needs an "
                              f"in-process target (a file or py: entry point)")
        return self.loaded
