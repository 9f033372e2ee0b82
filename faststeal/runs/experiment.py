"""The run object every attack command (extract, sweep, defend) works through.

An experiment reads its target once (config, weights, content digest) and makes every oracle, picture and
measurement from that one copy; it builds the evaluator (target and real statistics) once; it keeps results
in its run folder keyed by everything that produced them, so a rerun reuses a result only when nothing
behind it changed. Under torch.distributed it alone decides on rank 0 and hands the answer to every rank
(through ``RunFolder.decide``/``write``): code below it does not ask which rank it runs on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from faststeal.checkpoint import LoadedTarget, content_digest
from faststeal.data import evaluation_data
from faststeal.evaluate import Evaluator
from faststeal.fileio import write_json
from faststeal.metrics.api import get_extractor
from faststeal.report import RunFolder
from faststeal.sampling import SAMPLER_ID
from faststeal.targets import Target, TargetError, detect_kind, open_target

MEASURES = "fid+ci+prdc+served-prdc"   # what a stored measurement holds: older results are measured again


@dataclass
class Measured:
    """What Experiment.measure found: one row per checkpoint, and the target's own FID to the real data, its
    FID floor (None over HTTP) and why there is no real data (None when there is)."""
    rows: list[dict]
    target_fid: float | None
    fid_floor: float | None
    real_error: str | None


class Experiment:
    """One command's run folder, target, oracles, evaluator and keyed results."""
    def __init__(self, folder: RunFolder, target, *, fid_n: int, eval_data: str | None = None,
                 progress: bool = True, baseline: Target | None = None):
        """``target``: a Target (opened once by the caller, with its hints and key), or a spec opened on first
        use without either. ``baseline``: for a URL target whose server applies a defense, the undefended
        model fidelity is measured against (defend's --baseline); in process, it is read like a target."""
        self.baseline = baseline
        self._target = target if isinstance(target, Target) else None
        self.folder, self.spec = folder, self._target.spec if self._target is not None else str(target)
        self.fid_n, self.eval_data, self.progress = fid_n, eval_data, progress
        # a URL: its weights are never reachable from here
        self.remote = not self._target.in_process if self._target is not None else detect_kind(target) == "http"
        self._evaluator, self._reference = None, None     # the reference: what fidelity is measured against

    # -- the run folder: one rank decides and writes, every rank gets the answer ---------------------------
    def file(self, name: str) -> Path:
        return self.folder.file(name)

    def decide(self, fn, *args, **kwargs):
        return self.folder.decide(fn, *args, **kwargs)

    def write(self, fn, *args, **kwargs):
        return self.folder.write(fn, *args, **kwargs)

    # -- the target, opened once ---------------------------------------------------------------------------
    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = open_target(self.spec)
        return self._target

    @property
    def loaded(self) -> LoadedTarget:
        """Config, generator and id of an in-process target (a TargetError for a URL)."""
        if self.remote:
            raise TargetError(f"{self.spec}: an http:// target's weights are not reachable; this needs a file")
        return self.target.loaded

    @property
    def config(self) -> dict:
        """The target's config (resolution, channels, latent_dim, data_source)."""
        return self.target.config

    def oracle(self, budget: int, prior: str = "normal", seed: int = 0, **hooks):
        """Query access to the target: in process on the loaded weights, or the HTTP client for a URL."""
        return self.target.oracle(budget, prior=prior, seed=seed, **hooks)

    def samples(self, n: int, seed: int) -> torch.Tensor:
        """n uint8 samples of the target (the owner's view, for pictures and probes)."""
        return self.target.sample(n, seed=seed)

    # -- measurement -----------------------------------------------------------------------------------------
    def evaluator(self, served=None):
        """Target and real statistics, built on first use and shared by every measurement of the run.

        The reference fidelity is measured against: the target itself when it is in process, else an in-process
        baseline, else images that stand in for the target (``served``, an ImageSet: what the thief bought, or
        a baseline server's images); with none of these (``served=None``) fidelity is n/a.
        """
        if self._evaluator is None:
            reference = self.target if not self.remote else self.baseline
            local = reference is not None and reference.in_process
            # an HTTP target's config is only needed to fit --eval-data to the served size
            config = reference.config if local else self.config if self.eval_data else {}
            real, why = evaluation_data(config, self.eval_data, served=not local)
            self._evaluator = Evaluator(self.fid_n, real, target=reference.loaded if local else None,
                                        served=None if local else served, progress=self.progress, real_error=why)
            self._reference = (reference.loaded.model_id if local
                               else f"{self.spec}:{served.fingerprint if served is not None else None}")
        return self._evaluator

    def measure(self, checkpoints: list, served=None) -> Measured:
        """Each attack checkpoint's {fidelity, accuracy, vs_target, vs_real, fidelity_ci} (FID, precision/recall/
        density/coverage against the target and the real data), stored beside it as ``<name>.measured.json``,
        with the target's own figures. ``served``: what the thief bought, the reference for a URL target.

        Keyed by the checkpoint's bytes, the target (or the served images standing in for it), fid_n, the
        evaluation data, the sampler and the feature extractor, so a rerun that retrains nothing measures nothing
        again.
        """
        evaluator = self.evaluator(served)
        rows = []
        for checkpoint in checkpoints:
            key = {"attack_sha256": content_digest(checkpoint), "target": self._reference, "fid_n": self.fid_n,
                   "eval_data": self.eval_data, "sampler": SAMPLER_ID, "extractor": get_extractor().id,
                   "measures": MEASURES}
            rows.append(self.cached(f"{Path(checkpoint).stem}.measured.json", key,
                                    lambda c=checkpoint: evaluator.attack(evaluator.copy_stats(c))))
        return Measured(rows, evaluator.target_fid(), evaluator.fid_floor(), evaluator.real_error)

    def stored(self, name: str, key: dict):
        """The result stored as ``name`` under exactly ``key``, or None (nothing is computed)."""
        found = self.decide(_stored_value, self.file(name), json.loads(json.dumps(key)), [])
        return found["value"] if found is not None else None

    def cached(self, name: str, key: dict, compute, *, requires: tuple[str, ...] = ()):
        """``compute()``'s JSON-able result, stored in the run folder as ``name`` beside the key that made it.

        A stored result is reused only if its key equals ``key`` and the files named in ``requires`` (e.g.
        the checkpoint it measured) still exist; otherwise it is computed again and stored over the old one.
        Rank 0 reads and writes; every rank returns the same value.
        """
        key = json.loads(json.dumps(key))          # tuples and the like compare as JSON gives them back
        path = self.file(name)
        stored = self.decide(_stored_value, path, key, [self.file(r) for r in requires])
        if stored is not None:
            return stored["value"]
        value = compute()
        self.write(write_json, path, {"key": key, "value": value})
        return value


def _stored_value(path: Path, key: dict, requires: list[Path]) -> dict | None:
    """{"value": ...} if ``path`` holds a result for exactly ``key`` and its inputs exist, else None."""
    if not path.exists() or not all(p.exists() for p in requires):
        return None
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None                                # a damaged entry is recomputed, never trusted
    if not isinstance(stored, dict) or stored.get("key") != key or "value" not in stored:
        return None
    return {"value": stored["value"]}

