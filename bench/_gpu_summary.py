"""Collect what bench/gpu_check.sh left in its output folder into one summary.json.

    python bench/_gpu_summary.py OUT_DIR ELAPSED_S BUDGET_S

GPU name and driver (nvidia-smi), software versions, each step's command, status, seconds and log tail,
test counts from the JUnit files, and the results each step produced (kernel and FID benchmarks, the FID of
the DALI and torch loaders side by side, the 64x64 extraction's metrics).
"""
from __future__ import annotations

import datetime
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faststeal.fileio import write_json  # noqa: E402


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_json_line(path: Path):
    try:
        lines = path.read_text().strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _junit(path: Path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    keys = ("tests", "failures", "errors", "skipped")
    return {k: int(suite.get(k, 0)) for k in keys} if suite is not None else None


def _gpu(out: Path) -> dict:
    try:
        name, driver, memory = [s.strip() for s in (out / "nvidia_smi.csv").read_text().splitlines()[0].split(",")]
        return {"name": name, "driver": driver, "memory": memory}
    except (OSError, IndexError, ValueError):
        return {"name": None, "driver": None, "note": "nvidia-smi gave no answer"}


def main(out_dir: str, elapsed: str, budget: str) -> None:
    out = Path(out_dir)
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, rc, seconds, command = line.split("\t", 4)
        log = out / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        steps.append({"name": name, "status": status, "exit_code": int(rc) if rc else None,
                      "seconds": int(seconds), "command": command, "log_tail": tail})
    dali, torch_fid = _last_json_line(out / "fid_dali.log"), _last_json_line(out / "fid_torch.log")
    results = {
        "tests_triton": _junit(out / "tests_triton.xml"),
        "tests_torch": _junit(out / "tests_torch.xml"),
        "kernels": _json(out / "kernels.json"),
        "fid_throughput": _json(out / "fid_throughput.json"),
        "fid_dali": dali,
        "fid_torch": torch_fid,
        "extract64": _json(out / "extract64" / "metrics.json"),
        "extract64rgb": _json(out / "extract64rgb" / "metrics.json"),
        "latents64rgb": _json(out / "latents64rgb" / "metrics.json"),
    }
    if dali and torch_fid and "fid" in dali and "fid" in torch_fid:
        results["fid_dali_vs_torch_rel_diff"] = abs(dali["fid"] - torch_fid["fid"]) / abs(torch_fid["fid"])
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "gpu": _gpu(out), "environment": _json(out / "env.json"), "elapsed_s": int(elapsed),
               "budget_s": int(budget), "steps": steps, "results": results}
    write_json(out / "summary.json", summary)


if __name__ == "__main__":
    main(*sys.argv[1:4])
