"""Per-key usage over time, read from the ledger's audit table."""
from __future__ import annotations

import time
from collections import defaultdict

OUTCOMES = ("charged", "served", "replayed", "refunded", "refused")


def usage_over_time(rows: list[dict], every_s: float) -> list[dict]:
    """Audit rows -> one row per (key, time bucket of every_s seconds): requests and images by outcome."""
    if every_s <= 0:
        raise ValueError(f"the bucket must be > 0 seconds, got {every_s}")
    buckets: dict[tuple, dict] = defaultdict(lambda: {o: 0 for o in OUTCOMES} | {"requests": 0})
    for r in rows:
        b = buckets[(r["key"], int(r["time"] // every_s))]
        b[r["outcome"]] += r["n"]
        b["requests"] += r["outcome"] in ("charged", "replayed", "refused")
    out = []
    for (key, slot), counts in sorted(buckets.items()):
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(slot * every_s))
        out.append({"key": key, "from_utc": start, **counts})
    return out


def format_table(rows: list[dict]) -> str:
    cols = ["key", "from_utc", "requests", *OUTCOMES]
    if not rows:
        return "no requests recorded"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
