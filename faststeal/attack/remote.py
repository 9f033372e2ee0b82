"""Measuring a target the thief only reaches over HTTP (a URL of `faststeal serve`).

Against a URL the attack side never loads the target: its shape comes from the server's /v1/info, fidelity
is measured against the served images the adversary bought (the only view of the target it has), and the
target's FID and the accuracy need real data given with --eval-data, else they are reported as n/a.
"""
from __future__ import annotations

from faststeal.evaluate import coverage, fid, generator_stats, image_stats, real_data_for, real_stats

NO_BASELINE = ("no undefended view of the target: pass --baseline (the undefended checkpoint or a server "
               "without --defense)")


class ServedEvaluator:
    """The Evaluator's interface for an HTTP target: the reference sample is the images a server sent.

    ``served`` is what the thief bought (extract) or an undefended server's images (defend's baseline);
    with ``served=None`` there is no reference at all and fidelity is n/a (``target_error`` says why)."""

    def __init__(self, served, fid_n: int, eval_data: str | None, config: dict, progress: bool = True,
                 target_error: str = NO_BASELINE):
        self.fid_n, self.progress = fid_n, progress
        self.target_stats, self.target_error = None, target_error
        if served is not None:
            self.target_stats = image_stats(served.images[:fid_n], "served images", progress=progress)
        self.real, self.real_error = None, "an HTTP target does not reveal its training data; pass --eval-data"
        if eval_data:
            self.real = real_data_for({**config, "data_source": None}, eval_data)
        self.real_stats = real_stats(self.real, fid_n, progress) if self.real is not None else None

    def target_fid(self) -> float | None:
        if self.target_stats is None or self.real_stats is None:
            return None
        return fid(self.target_stats, self.real_stats)

    def fid_floor(self) -> None:
        """n/a: a floor needs a second independent sample of the target, which the adversary did not buy."""
        return None

    def attack(self, checkpoint, against: dict | None = None) -> dict:
        stats = generator_stats(checkpoint, self.fid_n, name="attack", progress=self.progress)
        return {"fidelity": fid(stats, self.target_stats) if self.target_stats is not None else None,
                "accuracy": fid(stats, self.real_stats) if self.real_stats is not None else None,
                **{k: fid(stats, ref) for k, ref in (against or {}).items()},
                "vs_target": coverage(self.target_stats, stats), "vs_real": coverage(self.real_stats, stats)}
