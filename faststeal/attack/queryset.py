"""Query sets on disk: the images an adversary bought, kept so several attacks can reuse them.

Layout of a query-set folder::

    meta.json          {"count", "chunks": [names], "chunk_size", "shape", "prior", "seed", "target",
                        "knowledge", ...}
    chunk-00000.npy    uint8 (n, C, R, R)
    codes-00000.npy    float32 (n, latent_dim): with knowledge "latents", the codes the adversary chose

A chunk is written to a temp file and renamed, then meta.json is rewritten the same way; only chunks named
in meta.json count. A collection killed at any point resumes from meta.json without losing or duplicating
queries (the oracle's code stream is positional, so the next chunk starts where the last one ended). Every
chunk's request carries an id derived from the set's identity and position (``request_id``): against an
HTTP target a retried chunk, bought but never written, is served again without a second charge.

Under torch.distributed every rank generates its share of each chunk (``TargetOracle.query_shard``), the
shares are gathered in rank order and rank 0 writes; the files are the same as one process would write.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faststeal import distributed
from faststeal.data import DataError, ImageSet
from faststeal.fileio import UnreadableFile, atomic_write, read_numpy, write_json

META = "meta.json"
KNOWLEDGE = ("images", "latents")


def chosen_codes(seed: int, start: int, n: int, dim: int, block: int = 1000) -> torch.Tensor:
    """Codes start..start+n of the adversary's own N(0, I) stream (positional, so collection resumes)."""
    out, pos = [], start
    while pos < start + n:
        b = pos // block
        codes = torch.randn(block, dim, generator=torch.Generator().manual_seed(seed * 999_983 + 17 + b))
        lo, hi = pos - b * block, min(block, start + n - b * block)
        out.append(codes[lo:hi])
        pos = b * block + hi
    return torch.cat(out)


def read_meta(folder: Path) -> dict | None:
    path = Path(folder) / META
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable query-set metadata ({exc}); delete the folder to start over") from None


def collect(oracle, folder, n: int, *, chunk_size: int = 1000, target: str = "", progress: bool = True,
            knowledge: str = "images") -> dict:
    """Query the oracle until ``folder`` holds n images; resumes whatever is already there.

    knowledge "images": the owner draws the codes from its prior (the adversary sees images only).
    knowledge "latents": the adversary chooses the codes (N(0, I) from its seed) and keeps them beside the
    images. Returns the metadata. A folder holding queries from another target, prior, seed or knowledge
    level is refused. Under torch.distributed every rank must call it with the same arguments (prior draws
    are split across ranks; chosen codes are served whole on every rank, so every budget is charged alike).
    """
    if knowledge not in KNOWLEDGE:
        raise ValueError(f"knowledge must be one of {KNOWLEDGE}, got {knowledge!r}")
    if knowledge == "latents" and not getattr(oracle, "accepts_latents", True):
        raise DataError("the target does not accept latent codes (it serves images for a count only); "
                        "use --knowledge images")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sharded = distributed.active()
    identity = {"target": target, "target_sha256": getattr(oracle, "model_id", None),
                "prior": str(oracle.prior), "seed": oracle.seed,
                "shape": [oracle.channels, oracle.resolution, oracle.resolution], "knowledge": knowledge}
    # rank 0's reading decides for every rank (errors included), so all ranks take the same branch
    meta = distributed.on_main(read_meta, folder) or {**identity, "count": 0, "chunks": [], "chunk_size": chunk_size}
    meta.setdefault("knowledge", "images")          # sets written before knowledge levels existed
    for key, value in identity.items():
        if meta.get(key) != value:
            raise DataError(f"{folder}: holds queries with {key}={meta.get(key)!r}, this run has {value!r}; "
                            f"use another --query-set folder")
    distributed.on_main(_remove_unrecorded, folder, meta)
    if sharded and not hasattr(oracle, "query_shard"):
        raise DataError("an HTTP target is queried from one process; run without torchrun")
    oracle.account(meta["count"])                       # what is on disk was bought from this budget
    scope = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    with tqdm(total=n, initial=min(meta["count"], n), desc="querying target", unit="img",
              disable=not progress or not distributed.is_main(), dynamic_ncols=True) as bar:
        while meta["count"] < n:
            take = min(chunk_size, n - meta["count"])
            name = f"chunk-{len(meta['chunks']):05d}.npy"
            if knowledge == "latents":
                codes = chosen_codes(oracle.seed, meta["count"], take, oracle.latent_dim)
                # under torchrun every rank is charged and serves the same
                images = oracle.query(codes, request_id=request_id(scope, meta["count"], take))
                distributed.on_main(_save_array, folder / code_file(name), codes.numpy())
            elif sharded:   # only rank 0 writes the chunk, so only rank 0 receives the other shares
                shares = distributed.gather_to_main(oracle.query_shard(take, offset=meta["count"]))
                images = torch.cat(shares) if shares is not None else None
            else:
                images = oracle.query(take, offset=meta["count"], request_id=request_id(scope, meta["count"], take))
            distributed.on_main(_save_array, folder / name, images)   # rank 0 holds every share
            meta = {**meta, "count": meta["count"] + take, "chunks": meta["chunks"] + [name]}
            distributed.on_main(write_json, folder / META, meta)
            bar.update(take)
    return meta


def _remove_unrecorded(folder: Path, meta: dict) -> None:
    """Chunks a killed run wrote but never recorded in meta.json are not part of the set."""
    recorded = set(meta["chunks"]) | {code_file(name) for name in meta["chunks"]}
    for stray in [*folder.glob("chunk-*.npy"), *folder.glob("codes-*.npy")]:
        if stray.name not in recorded:
            stray.unlink()


def _save_array(path: Path, array) -> Path:
    array = array.numpy() if isinstance(array, torch.Tensor) else array
    return atomic_write(path, lambda f: np.save(f, array))


def request_id(scope: str, position: int, n: int) -> str:
    """The id of the request for images position..position+n of the query set whose identity hashes to scope."""
    return f"qs-{scope}-{position}-{n}"


def code_file(chunk_name: str) -> str:
    return chunk_name.replace("chunk-", "codes-", 1)


def load(folder, limit: int | None = None) -> ImageSet:
    """The first ``limit`` images of a query set (all by default) as an ImageSet for training."""
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise DataError(f"{folder}: not a query set (no {META}); create one with `faststeal extract`")
    want = meta["count"] if limit is None else min(limit, meta["count"])
    with_codes = meta.get("knowledge", "images") == "latents"
    parts, code_parts, have = [], [], 0
    for name in meta["chunks"]:
        if have >= want:
            break
        files = (name, code_file(name)) if with_codes else (name,)
        arrays = [_load_array(folder / f)[: want - have] for f in files]
        parts.append(arrays[0])
        code_parts.extend(arrays[1:])
        have += parts[-1].shape[0]
    images = torch.from_numpy(np.concatenate(parts)) if parts else torch.empty(0, *meta["shape"], dtype=torch.uint8)
    codes = torch.from_numpy(np.concatenate(code_parts)).float() if code_parts else None
    fingerprint = (f"queries:{meta['target']}@{meta.get('target_sha256')}:{meta['prior']}:{meta['seed']}:"
                   f"{meta.get('knowledge', 'images')}:{want}")
    return ImageSet(images=images, labels=None, fingerprint=fingerprint, source=str(folder), codes=codes)


def _load_array(path: Path) -> np.ndarray:
    try:
        return read_numpy(path)
    except UnreadableFile as exc:
        raise DataError(f"{exc}; delete the folder and query again") from None

