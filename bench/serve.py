"""Serving overhead: images/s and latency through `faststeal serve` over HTTP, next to the in-process oracle.

    python bench/serve.py [--target builtin:pggan-fmnist32] [--clients 1,8,32] [--batches 64,256]
                          [--images 2048] [--rounds 3] [--workers 1] [--threads 1] [--out FILE.json]

For each batch size the in-process ``TargetOracle`` serves --images images in one thread (the reference), then
a real server (one uvicorn worker process per --workers, --threads torch threads each, SQLite ledger) serves
the same number of images to 1, 8 and 32 concurrent ``HttpOracle`` clients on loopback. Every HTTP request is
charged in the ledger and answered as .npy bytes, which the client decodes: the whole path a thief pays for.
The whole sequence runs --rounds times, interleaved, so that a busy neighbour slows both sides alike; the
table gives median images/s over rounds and p50/p99 over all requests. Prints the ratio HTTP / in-process
images/s (1.0 = no overhead); writes a JSON file under bench/results/ unless --out names one. Run nothing
else meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402

from faststeal.targets.oracle import TargetOracle  # noqa: E402


def percentiles(latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def in_process(target: str, batch: int, images: int) -> dict:
    oracle = TargetOracle(target, budget=images + batch, seed=0)
    oracle.query(batch)                                # warm-up, not timed
    lat, done, start = [], 0, time.perf_counter()   # lat: seconds per request
    while done < images:
        tick = time.perf_counter()
        oracle.query(batch)
        lat.append(time.perf_counter() - tick)
        done += batch
    seconds = time.perf_counter() - start
    return {"mode": "in-process", "clients": 1, "batch": batch, "images": done, "seconds": seconds,
            "images_per_s": done / seconds, "latencies": lat}


def over_http(url: str, token: str, batch: int, clients: int, images: int) -> dict:
    from faststeal.targets.http import HttpOracle

    oracles = [HttpOracle(url, token) for _ in range(clients)]
    for o in oracles[:1]:
        o.query(batch)                                 # warm-up, not timed
    lat, lock, left = [], threading.Lock(), [images]

    def client(oracle):
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= batch
            tick = time.perf_counter()
            oracle.query(batch)
            with lock:
                lat.append(time.perf_counter() - tick)

    threads = [threading.Thread(target=client, args=(o,)) for o in oracles]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    done = len(lat) * batch
    return {"mode": "http", "clients": clients, "batch": batch, "images": done, "seconds": seconds,
            "images_per_s": done / seconds, "latencies": lat}


def start_server(target: str, db: Path, workers: int, threads: int, max_batch: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "faststeal", "serve", "--target", target, "--db", str(db),
                             "--port", str(port), "--workers", str(workers), "--threads", str(threads),
                             "--max-batch", str(max_batch)],
                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import httpx

    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v1/info", timeout=2).status_code in (200, 401):    # up (info needs a key)
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the server did not answer within 120 s")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="builtin:pggan-fmnist32")
    p.add_argument("--clients", default="1,8,32", help="comma-separated numbers of concurrent HTTP clients")
    p.add_argument("--batches", default="64,256", help="comma-separated images per request")
    p.add_argument("--images", type=int, default=2048, help="images served per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of the whole sequence")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads, in-process and per server worker")
    p.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    a = p.parse_args(argv)
    clients = [int(c) for c in a.clients.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    if (min(clients) < 1 or min(batches) < 1 or a.images < max(batches) or a.workers < 1 or a.threads < 1
            or a.rounds < 1):
        p.error("clients, batches, workers and threads must be >= 1 and --images >= the largest batch")
    torch.set_num_threads(a.threads)

    runs: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from faststeal.serve.ledger import Ledger

        ledger = Ledger(Path(tmp) / "ledger.sqlite")
        token = ledger.add_key("bench", 10 ** 12)
        ledger.dispose()
        proc, url = start_server(a.target, Path(tmp) / "ledger.sqlite", a.workers, a.threads, max(batches))
        try:
            for _ in range(a.rounds):
                for batch in batches:
                    runs.setdefault(("in-process", 1, batch), []).append(in_process(a.target, batch, a.images))
                    for c in clients:
                        runs.setdefault(("http", c, batch), []).append(over_http(url, token, batch, c, a.images))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)

    rows = []
    for (mode, c, batch), got in runs.items():
        rate = float(np.median([g["images_per_s"] for g in got]))
        base = float(np.median([g["images_per_s"] for g in runs[("in-process", 1, batch)]]))
        rows.append({"mode": mode, "clients": c, "batch": batch, "images_per_s": rate,
                     "images_per_s_rounds": [g["images_per_s"] for g in got], "ratio": rate / base,
                     **percentiles([x for g in got for x in g["latencies"]])})
    rows.sort(key=lambda r: (r["batch"], r["mode"] != "in-process", r["clients"]))
    print(f"{'mode':<11} {'clients':>7} {'batch':>5} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs in-process':>13}")
    for r in rows:
        print(f"{r['mode']:<11} {r['clients']:>7} {r['batch']:>5} {r['images_per_s']:>9.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['ratio']:>13.2f}")
    report = {"benchmark": "serve", "target": a.target, "images": a.images, "rounds": a.rounds, "workers": a.workers,
              "threads": a.threads, "rows": rows, "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__}
    out = results_path("serve", a.out)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
