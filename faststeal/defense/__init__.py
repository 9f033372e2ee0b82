"""Countermeasures against model extraction, applied where the owner serves images.

Latent defenses (truncate, region, anchors) change which codes reach the generator; image defenses (noise,
blur, jpeg, adv) change the served pixels. ``parse_family`` reads the CLI syntax, ``DefensePipeline`` hands
the two hook functions to TargetOracle; ``faststeal.runs.defend`` measures utility against security.
"""
from . import adversarial, image, latent, watermark  # noqa: F401  (registers the defenses)
from .base import REGISTRY, Defense, DefenseError, Param
from .pipeline import DefensePipeline, Family, build, describe_defenses, parse_family, parse_pipeline

__all__ = ["REGISTRY", "Defense", "DefenseError", "DefensePipeline", "Family", "Param", "build",
           "describe_defenses", "parse_family", "parse_pipeline"]
