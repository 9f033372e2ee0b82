"""Query sets on disk: the images an adversary bought, kept so several attacks can reuse them.

Layout of a query-set folder::

    meta.json          {"count", "chunks": [names], "chunk_size", "shape", "prior", "seed", "target", ...}
    chunk-00000.npy    uint8 (n, C, R, R)

A chunk is written to a temp file and renamed, then meta.json is rewritten the same way; only chunks named
in meta.json count. A collection killed at any point resumes from meta.json without losing or duplicating
queries (the oracle's code stream is positional, so the next chunk starts where the last one ended).

Under torch.distributed every rank generates its share of each chunk (``TargetOracle.query_shard``), the
shares are gathered in rank order and rank 0 writes; the files are the same as one process would write.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from faststeal import distributed
from faststeal.data import DataError, ImageSet
from faststeal.fileio import atomic_write, write_json

META = "meta.json"


def read_meta(folder: Path) -> dict | None:
    path = Path(folder) / META
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable query-set metadata ({exc}); delete the folder to start over") from None


def _read_meta_everywhere(folder: Path) -> dict | None:
    """Rank 0's reading of meta.json on every rank, errors included, so all ranks take the same branch."""
    got = None
    if distributed.is_main():
        try:
            got = ("ok", read_meta(folder))
        except DataError as exc:
            got = ("error", str(exc))
    kind, value = distributed.from_main(got)
    if kind == "error":
        raise DataError(value)
    return value


def collect(oracle, folder, n: int, *, chunk_size: int = 1000, target: str = "", progress: bool = True) -> dict:
    """Query the oracle until ``folder`` holds n images; resumes whatever is already there.

    Returns the metadata. A folder holding queries from another target, prior or seed is refused. Under
    torch.distributed every rank must call it with the same arguments (each chunk is split across ranks).
    """
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sharded = distributed.active()
    identity = {"target": target, "prior": str(oracle.prior), "seed": oracle.seed,
                "shape": [oracle.channels, oracle.resolution, oracle.resolution]}
    meta = _read_meta_everywhere(folder) or {**identity, "count": 0, "chunks": [], "chunk_size": chunk_size}
    for key, value in identity.items():
        if meta.get(key) != value:
            raise DataError(f"{folder}: holds queries with {key}={meta.get(key)!r}, this run has {value!r}; "
                            f"use another --query-set folder")
    if distributed.is_main():
        for stray in folder.glob("chunk-*.npy"):        # written but never recorded: not part of the set
            if stray.name not in meta["chunks"]:
                stray.unlink()
    if oracle.served < meta["count"]:
        oracle._reserve(meta["count"] - oracle.served)  # what is on disk was bought from this budget
    with tqdm(total=n, initial=min(meta["count"], n), desc="querying target", unit="img",
              disable=not progress or not distributed.is_main(), dynamic_ncols=True) as bar:
        while meta["count"] < n:
            take = min(chunk_size, n - meta["count"])
            if sharded:   # only rank 0 writes the chunk, so only rank 0 receives the other shares
                shares = distributed.gather_to_main(oracle.query_shard(take, offset=meta["count"]))
                images = torch.cat(shares) if shares is not None else None
            else:
                images = oracle.query(take, offset=meta["count"])
            name = f"chunk-{len(meta['chunks']):05d}.npy"
            atomic_write(folder / name, lambda f: np.save(f, images.numpy()))
            meta = {**meta, "count": meta["count"] + take, "chunks": meta["chunks"] + [name]}
            write_json(folder / META, meta)     # under torchrun: rank 0 writes, then every rank waits here
            bar.update(take)
    return meta


def load(folder, limit: int | None = None) -> ImageSet:
    """The first ``limit`` images of a query set (all by default) as an ImageSet for training."""
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise DataError(f"{folder}: not a query set (no {META}); create one with `faststeal extract`")
    want = meta["count"] if limit is None else min(limit, meta["count"])
    parts, have = [], 0
    for name in meta["chunks"]:
        if have >= want:
            break
        try:
            arr = np.load(folder / name, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder / name}: unreadable chunk ({exc}); delete the folder and query again") from None
        parts.append(arr[: want - have])
        have += parts[-1].shape[0]
    images = torch.from_numpy(np.concatenate(parts)) if parts else torch.empty(0, *meta["shape"], dtype=torch.uint8)
    fingerprint = f"queries:{meta['target']}:{meta['prior']}:{meta['seed']}:{want}"
    return ImageSet(images=images, labels=None, fingerprint=fingerprint, source=str(folder))
