"""Real image data: Fashion-MNIST IDX files, image folders and uint8 arrays, fitted to a model's shape.

Every loader returns an ``ImageSet``: uint8 images (N, C, H, W) in memory, optional labels, and a
fingerprint of the source so checkpoints and FID caches can tell which data they came from.
Bad input (missing path, empty folder, corrupt file, wrong shape) raises ``DataError`` with one line
that names the file and says what to do.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from faststeal.errors import FaststealError

from .fileio import UnreadableFile, read_numpy

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DataError(FaststealError, ValueError):
    """A data source cannot be used; the message names the file and the fix."""


@dataclass
class ImageSet:
    images: torch.Tensor          # uint8, (N, C, H, W)
    labels: torch.Tensor | None   # int64 (N,) or None
    fingerprint: str              # hex digest of the source and the transform applied
    source: str
    codes: torch.Tensor | None = None   # float32 (N, latent_dim): the latent code behind each image, when known

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]


def fashion_mnist_dir() -> Path:
    """Where the IDX files live: $FASHION_MNIST_DIR, else Debian's dataset-fashion-mnist location."""
    return Path(os.environ.get("FASHION_MNIST_DIR", FASHION_MNIST_DIR))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: not found; install it with `apt-get install dataset-fashion-mnist` "
                        f"or set FASHION_MNIST_DIR to the folder holding the IDX files") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is corrupt or truncated") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not a uint8 IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: holds {len(raw) - header} bytes of data, header promises {expected}; "
                        f"the file is truncated")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(split: str = "train", root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) for split 'train' (60K) or 'test' (10K)."""
    if split not in ("train", "test"):
        raise DataError(f"fashion-mnist split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else fashion_mnist_dir()
    prefix = "train" if split == "train" else "t10k"

    def find(stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (root / name).exists():
                return root / name
        return root / (stem + ".gz")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: Fashion-MNIST files disagree (images {images.shape}, labels {labels.shape})")
    return images, labels


GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")


def read_image_file(path: Path) -> np.ndarray:
    """One image file -> uint8 (H, W, C), C in {1, 3}: the one decoder behind training data and FID.

    Grey files stay 1-channel whatever their bit depth (16-bit and 32-bit grey are scaled to 8 bits, not
    clipped); everything else becomes RGB, transparency dropped.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in GREY_MODES and im.mode not in ("1", "L"):
                arr = _scale_to_uint8(np.asarray(im), im.mode)
            else:
                im = im.convert("L" if im.mode in GREY_MODES else "RGB")
                arr = np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc.__class__.__name__}); remove or replace the "
                        f"file") from None
    return np.ascontiguousarray(arr[:, :, None] if arr.ndim == 2 else arr)


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth grey to 8 bits: 16-bit (and 'I' files holding 16-bit values) by /257, floats in [0, 1]."""
    if mode == "F":
        return np.clip(np.round(arr.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    wide = arr.astype(np.int64)
    if mode == "I" and wide.max(initial=0) <= 255:
        return np.clip(wide, 0, 255).astype(np.uint8)   # an 8-bit image stored in a 32-bit mode
    return np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)


def image_files(folder: Path) -> list[Path]:
    """The image files under a folder, recursively, in sorted order (the order every reader uses)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(folder: Path, limit: int | None = None) -> tuple[list[np.ndarray], list[Path]]:
    """All PNG/JPEG/... images under a folder (recursively, sorted) as a list of HWC uint8 arrays."""
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        files = files[:limit]
    return [read_image_file(p) for p in files], files


def load_array_file(path: Path) -> np.ndarray:
    """A uint8 array (N, H, W), (N, H, W, C) or (N, C, H, W) from .npy or .npz (key 'images' or the only key)."""
    try:
        loaded = read_numpy(path)
    except UnreadableFile as exc:
        raise DataError(str(exc)) from None
    if isinstance(loaded, dict):
        keys = list(loaded)
        key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise DataError(f"{path}: .npz holds {keys}; name the image array 'images'")
        arr = loaded[key]
    else:
        arr = loaded
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: dtype is {arr.dtype}, expected uint8 images in [0, 255]")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: shape {arr.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if arr.shape[1] not in (1, 3) or arr.shape[2] != arr.shape[3] or arr.shape[0] == 0:
        raise DataError(f"{path}: shape {arr.shape}; expected N>0 square images with 1 or 3 channels")
    return np.ascontiguousarray(arr)


def fit_images(images: torch.Tensor, resolution: int | None, channels: int | None) -> torch.Tensor:
    """Bring uint8 (N, C, H, W) images to (N, channels, resolution, resolution).

    Square images a little smaller than the target (e.g. 28 -> 32) are zero-padded, keeping pixels intact;
    anything else is centre-cropped to a square and resized with antialiased bilinear interpolation.
    Grey -> RGB repeats the channel; RGB -> grey uses ITU-R 601 luma weights.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    if channels is not None and channels != images.shape[1]:
        if channels == 3 and images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        elif channels == 1 and images.shape[1] == 3:
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"cannot convert {images.shape[1]} channels to {channels}; use 1 or 3")
    if resolution is None:
        return images
    h, w = images.shape[-2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        images = images[:, :, top:top + s, left:left + s]
        h = w = s
    if h == resolution:
        return images.contiguous()
    if h < resolution <= h * 1.25:
        total = resolution - h
        before = total // 2
        return F.pad(images, (before, total - before, before, total - before)).contiguous()
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out).contiguous()


def parse_classes(classes) -> list[int] | None:
    """'0,2,5' or an iterable of ints -> sorted list; None stays None."""
    if classes is None or classes == "":
        return None
    if isinstance(classes, str):
        try:
            classes = [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            raise DataError(f"classes must be comma-separated integers, got {classes!r}") from None
    return sorted(set(int(c) for c in classes))


def _fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


GENERATOR_SUFFIXES = (".pt", ".pth", ".ckpt")
SOURCE_GRAMMAR = ("fashion-mnist[:train|test], an image folder, a uint8 .npy/.npz, a statistics .npz (mu, sigma) "
                  "or a generator checkpoint (.pt, builtin:NAME)")


def is_stats_file(path: str | Path) -> bool:
    """True for an .npz holding 'mu' and 'sigma'."""
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False   # not readable as statistics: the caller's array loader says what is wrong


def source_kind(spec: str) -> str:
    """The one grammar of image sources: 'fashion-mnist', 'folder', 'array', 'stats' or 'generator'.

    Training data accepts the first three; FID accepts all five (metrics.sources). Raises DataError for a
    string that names nothing usable.
    """
    spec = str(spec)
    if spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        return "fashion-mnist"
    if spec.startswith("builtin:"):
        return "generator"
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder; give {SOURCE_GRAMMAR}")
    if path.is_dir():
        return "folder"
    if path.suffix == ".npz":
        return "stats" if is_stats_file(path) else "array"
    if path.suffix == ".npy":
        return "array"
    if path.suffix in GENERATOR_SUFFIXES:
        return "generator"
    raise DataError(f"{spec}: unsupported file type; give {SOURCE_GRAMMAR}")


def folder_fingerprint(files: list[Path]) -> str:
    """Every file's name, size and modification time: any change to the folder changes the key."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_dataset(spec: str, resolution: int | None = None, channels: int | None = None,
                 classes=None, limit: int | None = None) -> ImageSet:
    """Load a data source by name.

    spec: ``fashion-mnist`` / ``fashion-mnist:train`` / ``fashion-mnist:test``, an image folder, or a
    uint8 ``.npy``/``.npz`` file. Folders use the first-level subfolder name as class label, when sorted
    subfolders exist. ``classes`` keeps only those labels; ``limit`` keeps the first N images.
    """
    spec = str(spec)
    classes = parse_classes(classes)
    labels = None
    kind = source_kind(spec)
    if kind == "fashion-mnist":
        split = spec.split(":", 1)[1] if ":" in spec else "train"
        arr, lab = load_fashion_mnist(split)
        images = torch.from_numpy(arr.copy()).unsqueeze(1)
        labels = torch.from_numpy(lab.astype(np.int64))
        ident = ("fashion-mnist", split, arr.shape, int(arr[:64].sum()), int(lab.sum()))
    elif kind == "folder":
        path = Path(spec)
        arrays, files = load_image_folder(path, limit=None if classes else limit)
        images = _stack_folder(arrays, files, resolution, channels)
        subdirs = sorted({f.relative_to(path).parts[0] for f in files if len(f.relative_to(path).parts) > 1})
        if subdirs and all(len(f.relative_to(path).parts) > 1 for f in files):
            index = {d: i for i, d in enumerate(subdirs)}
            labels = torch.tensor([index[f.relative_to(path).parts[0]] for f in files])
        ident = ("folder", str(path.resolve()), len(files), folder_fingerprint(files))
    elif kind == "array":
        path = Path(spec)
        arr = load_array_file(path)
        images = torch.from_numpy(arr)
        ident = ("array", arr.shape, hashlib.sha256(arr.tobytes()).hexdigest()[:16])   # content, not path
    else:
        raise DataError(f"{spec}: a {'statistics file' if kind == 'stats' else 'generator checkpoint'} is not "
                        f"image data; give fashion-mnist[:train|test], an image folder or a uint8 .npy/.npz file")
    if classes is not None:
        if labels is None:
            raise DataError(f"{spec}: class subsets need labels (Fashion-MNIST or a folder of class subfolders)")
        keep = torch.isin(labels, torch.tensor(classes))
        if not keep.any():
            raise DataError(f"{spec}: no images with classes {classes}")
        images, labels = images[keep], labels[keep]
    if limit is not None:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    images = fit_images(images, resolution, channels)
    fp = _fingerprint(ident, classes, limit, tuple(images.shape))
    return ImageSet(images=images, labels=labels, fingerprint=fp, source=spec)


def _stack_folder(arrays: list[np.ndarray], files: list[Path], resolution, channels) -> torch.Tensor:
    """Stack folder images of possibly different sizes by fitting each one first."""
    want_c = channels or max(a.shape[2] for a in arrays)
    sizes = {a.shape[:2] for a in arrays}
    target = resolution or (min(min(s) for s in sizes) if len(sizes) > 1 else None)
    out = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).unsqueeze(0)
        out.append(fit_images(t, target, want_c))
    return torch.cat(out)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range every generator works in (in torch's default float dtype,
    so a model built under float64 trains on float64 images)."""
    return images.to(torch.get_default_dtype()).div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] with rounding; values outside the range are clipped."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class InfiniteBatches:
    """Endless shuffled minibatches of float images from an ImageSet, reproducible from a seed.

    With ``pairs`` each batch comes with its latent codes (a set bought with chosen codes, for distillation).
    ``batch_size`` is the global batch. Under data parallelism each process passes ``take``: the positions
    of the global batch it trains on, so the processes together see exactly the single-process batch.
    ``state()``/``load_state()`` let training resume at the exact next batch.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, take: torch.Tensor | None = None,
                 pairs: bool = False):
        if len(data) < batch_size:
            raise DataError(f"{data.source}: {len(data)} images but batch size {batch_size}; lower --batch")
        if pairs and data.codes is None:
            raise DataError("this image set has no latent codes; pairs need a query set bought with codes")
        self.pairs = pairs
        self.images = data.images
        self.codes = data.codes
        self.batch_size = batch_size
        self.seed = seed
        self.take = take
        self.epoch = 0
        self.pos = 0
        self._order = self._perm()

    def _perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.images), generator=g)

    def __iter__(self):
        return self

    def _next_index(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self._order):
            self.epoch += 1
            self.pos = 0
            self._order = self._perm()
        idx = self._order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx if self.take is None else idx[self.take]

    def __next__(self):
        """The next batch of float images; with ``pairs``, (images, their latent codes)."""
        idx = self._next_index()
        if self.pairs:
            return to_float(self.images[idx]), self.codes[idx].to(torch.get_default_dtype())
        return to_float(self.images[idx])

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._perm()


def real_data_for(checkpoint_config: dict, spec: str | None = None) -> ImageSet:
    """The real data a target was trained on (or ``spec``), fitted to the target's resolution/channels."""
    trained_on = checkpoint_config.get("data_source")
    spec = spec or trained_on
    if not spec:
        raise ValueError("the target checkpoint does not record its training data; pass --eval-data")
    classes = (checkpoint_config.get("extra") or {}).get("classes") if spec == trained_on else None
    return load_dataset(spec, resolution=checkpoint_config["resolution"], channels=checkpoint_config["channels"],
                        classes=classes)


def evaluation_data(config: dict, spec: str | None = None, *,
                    served: bool = False) -> tuple[ImageSet | None, str | None]:
    """The real data a run measures accuracy and the target's FID against: ``spec`` (--eval-data), else the
    data the target's config records, fitted to its resolution and channels. (data, None), or (None, why) when
    there is none to use: an HTTP target (``served``) does not reveal its training data, and a foreign file
    does not record it. Data that was named but cannot be read is an error, not a missing value."""
    if served and not spec:
        return None, "an HTTP target does not reveal its training data; pass --eval-data"
    try:
        return real_data_for({**config, "data_source": None} if served else config, spec), None
    except (ValueError, OSError) as exc:
        if spec:
            raise
        return None, str(exc)


def concat_sets(a: ImageSet, b: ImageSet) -> ImageSet:
    """Two image sets as one (labels and codes dropped): e.g. the thief's queries with the real images it holds."""
    return ImageSet(torch.cat([a.images, b.images]), None, f"{a.fingerprint}+{b.fingerprint}",
                    f"{a.source}+{b.source}")
