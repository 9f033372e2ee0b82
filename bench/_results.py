"""Where benchmark scripts write: a new timestamped file under bench/results/, so a run never overwrites
the committed results another run produced."""
from __future__ import annotations

import datetime
import os

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def results_path(name: str, out: str | None = None) -> str:
    """``out`` when given, else bench/results/<name>-<UTC time>.json; the folder is created."""
    if out is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = os.path.join(RESULTS_DIR, f"{name}-{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return out
