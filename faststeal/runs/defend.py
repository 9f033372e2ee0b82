"""The utility/security trade-off of defended serving, measured end to end.

For every defense setting (and the undefended baseline, in the same run): the owner serves ``queries``
images through the defended oracle; utility = FID(served, real) is what an honest user sees; an attack GAN
trained on exactly those images gives security = its fidelity FID(attack, undefended target) and accuracy
FID(attack, real). Fidelity is always against the undefended target, since that is what the owner protects.

Against a URL (``faststeal serve``) the defense is the server's own ``--defense``: the client cannot choose it,
so the run measures the one served setting, bought with the owner's key, against an undefended baseline
given as ``baseline`` (a checkpoint sampled here, or a second server without a defense). Without a baseline
there is no undefended view, and fidelity is n/a; the rest is measured as above.

Three phases, one module each: the plan (defend_plan: settings checked before any query is bought), the
rows (defend_rows: bought, trained, measured, each stored and resumable), the report (defend_report).
"""
from __future__ import annotations

from faststeal.report import Stopwatch
from faststeal.targets import open_target

from .defend_plan import BASELINE, SERVED, plan_defend, slug
from .defend_report import NO_EFFECT, report_defend
from .defend_rows import measure_rows
from .options import DefendOptions

__all__ = ["BASELINE", "NO_EFFECT", "SERVED", "run_defend", "slug"]


def run_defend(opts: DefendOptions, run=None, target=None, baseline=None) -> dict:
    """Measure every defense setting against the undefended baseline; writes the run folder, returns metrics.

    A URL target measures the one setting its server serves (see the module docstring). ``target`` and
    ``baseline``: Targets opened once by the caller (with hints and keys); default: opened from ``opts``."""
    clock = Stopwatch()
    target = open_target(target if target is not None else opts.target, hints=opts.target_hints)
    if baseline is None and opts.baseline:
        baseline = open_target(opts.baseline)
    opts.sized_for(target.resolution, target.arch)
    plan = plan_defend(opts, target, baseline, run)
    clock.lap("checks before buying")
    rows, measured_now = measure_rows(plan, clock)
    return report_defend(plan, rows, redraw=measured_now, clock=clock)
