"""Run folders: every command writes runs/<name>/ with config.json, metrics.json, pictures and report.md.

config.json records the resolved options plus versions and seeds, so a run can be repeated; all files are
written atomically, so a killed run never leaves a half-written report.
"""
from __future__ import annotations

import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__, distributed
from .fileio import atomic_write, remove_stale_temps, write_json, write_text
from .grid import make_grid, save_png


def versions() -> dict:
    return {"faststeal": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "platform": platform.platform(),
            "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                       else f"cpu ({torch.get_num_threads()} threads)")}


SECRET_FLAGS = ("--api-key", "--baseline-api-key", "--key")     # API keys and the owner's watermark key
SECRET_PARAMS = ("key",)                                        # defense parameters whose values are secrets
REDACTED = "REDACTED"
# A secret parameter inside a defense spec: its value runs to the next ',' '+' ':' or the end (spaces and quotes
# included), and a sweep's further values (',' then a token without '=') are secret too.
_SPEC_SECRET = re.compile(r"\b((?:%s)=)[^,+:]*(?:,[^,+:=]*(?=[,+]|$))*" % "|".join(SECRET_PARAMS))
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")   # scheme://user:PASSWORD@host


def redact(text, secrets=()) -> str:
    """Text with every secret replaced by REDACTED: watermark keys inside defense specs (spaces, quotes and
    sweeps included), passwords inside database URLs, and each of ``secrets`` (API keys, seeds) wherever it
    stands. The one redaction every log line, error, run folder and metrics file goes through."""
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", _SPEC_SECRET.sub(rf"\1{REDACTED}", str(text)))
    for s in sorted((str(s) for s in secrets if s is not None and str(s)), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


def redacted_value(swept: str | None, value):
    """A swept defense value as recorded (metrics.json ``value``): REDACTED where the swept parameter is secret."""
    if swept and swept.rpartition(".")[2] in SECRET_PARAMS and value is not None:
        return REDACTED
    return value


def redacted(argv: list[str]) -> list[str]:
    """The command line with secrets replaced (API keys, watermark keys): run folders are shared, keys are not."""
    out, hide = [], False
    for a in argv:
        flag, eq, _ = a.partition("=")
        if hide:
            out.append(REDACTED)
        elif eq and flag in SECRET_FLAGS:
            out.append(f"{flag}={REDACTED}")
        else:
            out.append(redact(a))
        hide = a in SECRET_FLAGS
    return out


def shown_command(argv: list[str]) -> str:
    """The command line as a reader would type it again: secrets redacted, the program by its name
    (`python -m faststeal` runs as .../faststeal/__main__.py)."""
    args = redacted(argv)
    program = "faststeal" if Path(args[0]).name == "__main__.py" else Path(args[0]).name
    return " ".join([program, *args[1:]])


def redacted_options(value):
    """Options as recorded in config.json: every string with a watermark key in it redacted, at any depth."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted_options(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted_options(v) for v in value]
    return value


class RunFolder:
    """One experiment's output folder."""

    def __init__(self, path, command: str, options: dict):
        self.path = Path(path)
        self.decide(self._prepare)
        self.started = time.time()
        self.command = command
        self.config = {"command": command, "argv": redacted(sys.argv),
                       "options": redacted_options(options), "versions": versions(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.write(write_json, self.path / "config.json", self.config)

    # Rank logic for everything a command does with its run folder: one rank decides and writes, every
    # rank gets the answer. Library code under attack/ and defense/ goes through these two.
    @staticmethod
    def decide(fn, *args, **kwargs):
        """``fn``'s result as rank 0 computes it (a file's existence, a cached result), on every rank."""
        return distributed.on_main(fn, *args, **kwargs)

    write = decide   # a write is a decision with a side effect: rank 0 performs it, every rank waits for it

    def _prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)      # leftovers of a run that was killed mid-write

    def file(self, name: str) -> Path:
        return self.path / name

    # What attack runs (extract, sweep, defend) write here besides config.json: what --fresh removes. A
    # --query-set folder the user named elsewhere is theirs to keep.
    PRODUCTS = ("queries*", "attack*", "metrics.json", "report.md", "*.png")

    def start_over(self, fresh: bool) -> list[str]:
        """With ``fresh``: delete what an earlier run left here (PRODUCTS only; other files stay).

        Rank 0 deletes; every rank waits until it has.
        """
        if not fresh:
            return []
        def remove() -> list[str]:
            gone = sorted({p for pattern in self.PRODUCTS for p in self.path.glob(pattern)})
            for p in gone:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            return [p.name for p in gone]

        return self.decide(remove)

    def write_metrics(self, metrics: dict) -> Path:
        metrics = {**metrics, "wall_seconds": round(time.time() - self.started, 1)}
        return self.write(write_json, self.path / "metrics.json", metrics)

    def side_by_side(self, left: torch.Tensor, right: torch.Tensor, name: str, nrow: int = 6) -> Path:
        """Two uint8 sample sets as one picture: left block | white gap | right block (e.g. target | attack)."""
        a, b = make_grid(left, nrow), make_grid(right, nrow)
        h = max(a.shape[0], b.shape[0])
        a, b = (np.pad(g, ((0, h - g.shape[0]), (0, 0), (0, 0))) for g in (a, b))
        gap = np.full((h, 8, a.shape[2]), 255, dtype=np.uint8)
        upscale = 2 if left.shape[-1] < 64 else 1
        return self.write(save_png, np.concatenate([a, gap, b], axis=1), self.path / name, upscale=upscale)

    def grid(self, images: torch.Tensor, name: str, nrow: int = 6) -> Path:
        """One uint8 sample set as a picture (small images upscaled 2x, as in side_by_side)."""
        upscale = 2 if images.shape[-1] < 64 else 1
        return self.write(save_png, make_grid(images, nrow), self.path / name, upscale=upscale)

    def write_report(self, title: str, sections: list[tuple[str, str]]) -> Path:
        """report.md: a title, the command line, then (heading, markdown) sections."""
        command = shown_command(sys.argv)
        lines = [f"# {title}", "", f"Command: `{command}`",
                 "", f"Wall time: {time.time() - self.started:.0f} s on {self.config['versions']['device']}", ""]
        for heading, body in sections:
            lines += [f"## {heading}", "", body.rstrip(), ""]
        return self.write(write_text, self.path / "report.md", "\n".join(lines))


class Stopwatch:
    """Wall seconds of one run by stage, in order: a time budget (--minutes) bounds the training steps only, so a
    report says where the rest of the wall time went (queries, probes, the final FID)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap (or the start) to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 1)
        self._last = now


def stage_line(seconds: dict[str, float]) -> str:
    """A Stopwatch's stages in one phrase: 'queries 70 s, training 1530 s, ...'."""
    return ", ".join(f"{stage} {s:.0f} s" for stage, s in seconds.items())


def fmt(v, spec: str = ".2f") -> str:
    """A measured number as reports print it; "n/a" where it was not measured."""
    return "n/a" if v is None else format(v, spec)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def line_plot(path, series: dict[str, tuple], xlabel: str, ylabel: str, title: str,
              logx: bool = False) -> Path:
    """A small PNG line chart (matplotlib, headless), written atomically. A series is (xs, ys), or
    (xs, ys, errors) for error bars (None where a point has no spread)."""
    from matplotlib.figure import Figure  # on use: matplotlib adds ~0.7 s to every command's start

    fig = Figure(figsize=(6, 4), dpi=110)       # no pyplot: no backend or global state, safe in any process
    ax = fig.subplots()
    for label, (xs, ys, *errors) in series.items():
        if errors and any(e is not None for e in errors[0]):
            ax.errorbar(xs, ys, yerr=[e or 0.0 for e in errors[0]], marker="o", capsize=3, label=label)
        else:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


def flat_measures(row: dict) -> dict:
    """A measured row with the nested measures flattened for a report's table: the fidelity interval as
    fidelity_lo/fidelity_hi and the copy's precision, recall, density and coverage against the target."""
    ci, quality = row.get("fidelity_ci"), row.get("vs_target") or {}
    flat = {"fidelity_lo": ci[0] if ci else None, "fidelity_hi": ci[1] if ci else None}
    flat.update({f"copy_{k}": quality.get(k) for k in ("precision", "recall", "density", "coverage")})
    return {**row, **flat}
