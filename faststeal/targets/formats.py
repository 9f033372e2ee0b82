"""Each target format, opened into a ``Target``: faststeal checkpoints and built-ins, TorchScript, torch.export
programs, ONNX (onnxruntime), Python entry points (``py:``) and `faststeal serve` URLs.

The kind comes from the spec's scheme (``builtin:``, ``py:``, ``http(s)://``) or from the file itself (the
entries of a torch zip archive, the ONNX suffix), never from trust in a file name alone. Nothing here runs
pickled Python code: faststeal checkpoints load with ``weights_only=True``, TorchScript and export archives
with their own loaders. A ``py:`` spec runs the user's own code, which is what it is for.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from faststeal.checkpoint import CheckpointError, LoadedTarget, load_discriminator, load_target

from .base import Hints, Target, TargetError
from .foreign import ForeignGenerator, probe
from .http import HttpOracle, is_url

KINDS = ("faststeal", "torchscript", "export", "onnx", "python", "http")


def detect_kind(spec) -> str:
    """Which format a spec names; a one-line TargetError for a missing file or one of no known format."""
    text = str(spec)
    if is_url(text):
        return "http"
    if text.startswith("py:"):
        return "python"
    if text.startswith("builtin:"):
        return "faststeal"
    path = Path(text)
    if not path.exists():
        raise TargetError(f"{text}: no such file (a target is a generator file, builtin:NAME, py:FILE.py:FUNC "
                          f"or an http:// URL)")
    if path.is_dir():
        raise TargetError(f"{text}: is a folder; a target is one generator file (images are not a generator)")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise TargetError(f"{text}: a damaged archive ({exc})") from None
        if any(n.endswith("/archive_format") for n in names):
            return "export"
        if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "faststeal"
    with open(path, "rb") as f:
        head = f.read(256)
    if head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head):
        return "onnx"
    raise TargetError(f"{text}: not a generator format faststeal reads (faststeal checkpoint, TorchScript, "
                      f"torch.export .pt2, ONNX .onnx); for Python code use py:FILE.py:FUNC")


def file_digest(path, extra: dict | None = None) -> str:
    """First 16 hex digits of SHA-256 over a file's bytes (and the settings that change its images)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if extra:
        h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()[:16]


# -- faststeal's own ----------------------------------------------------------------------------------------
def open_faststeal(spec: str, hints: Hints) -> Target:
    if hints != Hints():
        raise TargetError(f"{spec}: a faststeal checkpoint declares its own shape; drop --latent-dim, "
                          f"--output-range and --num-classes")
    try:
        loaded = load_target(spec)
    except CheckpointError as exc:
        if "no 'faststeal-checkpoint' marker" in str(exc):
            raise TargetError(f"{exc}. A state dict alone is not a generator: save the model with torch.jit.save "
                              f"or torch.export.save, export ONNX, or point at code with py:FILE.py:FUNC") from None
        raise
    cfg = loaded.config
    return Target(spec, "faststeal", config=cfg, model_id=loaded.model_id, loaded=loaded,
                  discriminator_loader=lambda: load_discriminator(loaded.path),
                  probed={"arch": cfg.get("arch"), "output_range": "-1,1", "latent_shape": "(N, d)"})


# -- foreign in-process formats -------------------------------------------------------------------------------
def _foreign(spec: str, kind: str, call, hints: Hints, digest_of, *, module=None, input_shape=None,
             cpu_only=False) -> Target:
    """Probe a foreign model and wrap it as an in-process Target."""
    first = None
    if module is not None:
        first = next((p.shape for p in module.parameters()), None)
    layout, res, ch = probe(call, hints, spec, input_shape=input_shape, first_weight_shape=first)
    generator = ForeignGenerator(call, layout, res, ch, module=module, cpu_only=cpu_only).eval()
    model_id = digest_of(layout.describe())
    config = {"arch": kind, "resolution": res, "channels": ch, "latent_dim": generator.latent_dim,
              "data_source": None, "probe": layout.describe()}
    loaded = LoadedTarget(spec, config, generator.requires_grad_(False), model_id)
    return Target(spec, kind, config=config, model_id=model_id, loaded=loaded, probed=layout.describe())


def _module_call(module: nn.Module):
    def call(*args):
        device = next((p.device for p in module.parameters()), None)
        return module(*(a.to(device) for a in args) if device is not None else args)

    return call


def open_torchscript(spec: str, hints: Hints) -> Target:
    try:
        module = torch.jit.load(spec, map_location="cpu").eval()
    except Exception as exc:
        raise TargetError(f"{spec}: not a loadable TorchScript file ({_first_line(exc)})") from None
    return _foreign(spec, "torchscript", _module_call(module), hints,
                    lambda extra: file_digest(spec, extra), module=module)


def open_export(spec: str, hints: Hints) -> Target:
    try:
        program = torch.export.load(spec)
    except Exception as exc:
        raise TargetError(f"{spec}: not a loadable torch.export program ({_first_line(exc)})") from None
    module = program.module()
    return _foreign(spec, "export", _module_call(module), hints, lambda extra: file_digest(spec, extra),
                    module=module, input_shape=_export_input_shape(program))


def _export_input_shape(program) -> list | None:
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            val = node.meta.get("val")
            if val is None:
                return None
            return [int(s) if isinstance(s, int) else None for s in val.shape]
    return None


def open_onnx(spec: str, hints: Hints) -> Target:
    try:
        import onnxruntime as ort  # the [onnx] extra
    except ImportError:
        raise TargetError("ONNX targets need onnxruntime: pip install 'faststeal[onnx]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(spec), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TargetError(f"{spec}: not a loadable ONNX model ({_first_line(exc)})") from None
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
    types = [i.type for i in inputs]

    def call(*args):
        feed = {}
        for name, kind, a in zip(names, types, args):
            a = a.detach().cpu()
            a = a.long() if "int64" in kind else a.int() if "int32" in kind else a.float()
            feed[name] = a.numpy()
        return torch.from_numpy(session.run(None, feed)[0])

    return _foreign(spec, "onnx", call, hints, lambda extra: file_digest(spec, extra), input_shape=shape,
                    cpu_only=True)


def open_python(spec: str, hints: Hints) -> Target:
    """``py:path/to/file.py:FACTORY`` or ``py:package.module:FACTORY``: runs the user's code (by design).

    FACTORY is called with no arguments and returns an nn.Module or a callable; an nn.Module instance named
    directly is used as it is."""
    body = spec[len("py:"):]
    where, _, attr = body.rpartition(":")
    if not where or not attr:
        raise TargetError(f"{spec}: write py:path/to/file.py:FACTORY or py:package.module:FACTORY")
    source = None
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise TargetError(f"{spec}: no such file {where}")
        name = f"faststeal_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        loader = importlib.util.spec_from_file_location(name, path)
        module_obj = importlib.util.module_from_spec(loader)
        sys.modules[name] = module_obj
        try:
            loader.loader.exec_module(module_obj)
        except Exception as exc:
            raise TargetError(f"{spec}: importing {where} failed ({type(exc).__name__}: {_first_line(exc)})") from None
        source = path
    else:
        try:
            module_obj = importlib.import_module(where)
        except Exception as exc:
            raise TargetError(f"{spec}: cannot import {where} ({type(exc).__name__}: {_first_line(exc)})") from None
        source = Path(module_obj.__file__) if getattr(module_obj, "__file__", None) else None
    obj = module_obj
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{spec}: {where} has no attribute {attr}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise TargetError(f"{spec}: {attr} is a {type(obj).__name__}, not a factory or an nn.Module")
        try:
            obj = obj()
        except Exception as exc:
            raise TargetError(f"{spec}: calling {attr}() failed ({type(exc).__name__}: {_first_line(exc)}); it "
                              f"must take no arguments and return the generator") from None
    if not callable(obj):
        raise TargetError(f"{spec}: {attr}() returned a {type(obj).__name__}, which is not callable")
    return from_object(obj, hints, spec=spec, source=source)


def from_object(obj, hints: Hints, *, spec: str | None = None, source: Path | None = None) -> Target:
    """An nn.Module or callable in this process as a target (what a py: spec and the library API both give).

    Its id digests the spec, the source file (when known) and the module's weights."""
    module = obj.eval() if isinstance(obj, nn.Module) else None
    spec = spec or f"py-object:{type(obj).__name__}"

    def digest(extra: dict) -> str:
        h = hashlib.sha256(spec.encode())
        if source is not None and source.is_file():
            h.update(source.read_bytes())
        if module is not None:
            for key, t in module.state_dict().items():
                h.update(key.encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        h.update(json.dumps(extra, sort_keys=True).encode())
        return h.hexdigest()[:16]

    call = _module_call(module) if module is not None else obj
    return _foreign(spec, "python", call, hints, digest, module=module)


# -- a served model ---------------------------------------------------------------------------------------------
def open_http(spec: str, hints: Hints, api_key: str | None) -> Target:

    if hints != Hints():
        raise TargetError(f"{spec}: a server declares its own shape; --latent-dim, --output-range and "
                          f"--num-classes are given to `faststeal serve` instead")
    if not api_key:
        raise TargetError("an http:// target needs a key from `faststeal keys add` (or $FASTSTEAL_API_KEY)",
                          flag="--api-key")
    first = HttpOracle(spec, api_key)                  # a wrong URL or key fails here, before any work
    probed = {"prior": str(first.prior), "defense": first.defense, "max_batch": first.max_batch}
    return Target(spec, "http", config=first.config(), model_id=first.model_id, probed=probed,
                  remote_factory=lambda seed: HttpOracle(spec, api_key, seed=seed),
                  accepts_latents=first.accepts_latents)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + " ..."
