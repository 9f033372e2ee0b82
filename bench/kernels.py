"""Benchmark faststeal's kernels per layer shape and per training step, side by side in one run.

    python bench/kernels.py [--batch 16] [--width 64] [--out bench/kernels.json] [--compile-budget 45]

Runs in ~1.5-4 minutes on a 2-core CPU (most of it torch.compile). Single-threaded by default: see --threads.

For every distinct layer of the 32x32 and 64x64 PGGAN generator/discriminator and SNGAN discriminator
(shapes recorded from the real models), forward+backward time of
  (a) plain PyTorch modules written the usual way: nn.Conv2d/nn.Linear with a forward pre-hook that
      scales the weight (equalized LR), nn.Upsample, nn.AvgPool2d, nn.LeakyReLU, a PixelNorm module;
      torch.nn.utils.spectral_norm for SNGAN layers;
  (b) the faststeal torch reference (impl="torch");
  (c) torch.compile of (b), while --compile-budget seconds of compile time last;
  (d) the Triton kernels (CUDA only; "n/a" without a GPU);
then one full Trainer.step() of PGGAN and SNGAN with the model layers switched to (a) or (b)
(and, with --compile-steps, torch.compile'd G and D).
Variants are timed in interleaved rounds (best of), so ratios against (a) come from the same conditions.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import results_path  # noqa: E402

from faststeal import kernels
from faststeal.data import ImageSet
from faststeal.models import build_discriminator, build_generator, sngan
from faststeal.models.layers import EqualizedConv2d, EqualizedLinear, SNConv2d, SNLinear, SpectralNormed
from faststeal.train import TrainConfig, Trainer

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----- (a): the usual way --------------------------------------------------------------------------------
class EqualLRHook:
    """Forward pre-hook: weight = weight_orig * gain / sqrt(fan_in) (the classic equalized-LR recipe)."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, module, inputs):
        module.weight = module.weight_orig * self.scale


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Scale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * self.c


def plain_equalized(layer: nn.Module) -> nn.Module:
    """A usual-way module sharing ``layer``'s Parameters (so an optimiser on the layer still trains it)."""
    o = dict(layer.options)
    w = layer.weight
    if isinstance(layer, EqualizedConv2d):
        k = w.shape[-1]
        pad = kernels.default_padding(k) if o.get("padding") is None else o["padding"]
        core = nn.Conv2d(w.shape[1], w.shape[0], k, padding=pad)
    else:
        core = nn.Linear(w.shape[1], w.shape[0])
    del core.weight
    core.weight_orig = w
    core.bias = layer.bias
    core.register_forward_pre_hook(EqualLRHook(kernels.he_scale(w, o["gain"])))
    mods = [nn.Upsample(scale_factor=2, mode="nearest")] if o.get("up", 1) == 2 else []
    mods.append(core)
    if o.get("down", 1) == 2:
        mods.append(nn.AvgPool2d(2))
    if o.get("activation", "lrelu") == "lrelu":
        mods.append(nn.LeakyReLU(0.2))
    if o.get("act_gain", 1.0) != 1.0:
        mods.append(Scale(o["act_gain"]))
    if o.get("pixelnorm"):
        mods.append(PixelNorm())
    return nn.Sequential(*mods)


def plain_spectral(layer: SpectralNormed) -> nn.Module:
    """nn.Conv2d/nn.Linear + torch.nn.utils.spectral_norm, sharing ``layer``'s Parameters."""
    w = layer.weight
    if isinstance(layer, SNConv2d):
        core = nn.Conv2d(w.shape[1], w.shape[0], w.shape[-1], padding=layer.padding)
    else:
        core = nn.Linear(w.shape[1], w.shape[0])
    del core.weight
    core.weight = w
    core.bias = layer.bias
    return torch.nn.utils.spectral_norm(core).to(w.device)


# ----- (b): the faststeal reference, per layer -------------------------------------------------------------
def reference_fn(layer: nn.Module, impl: str):
    if isinstance(layer, EqualizedConv2d):
        return lambda x: kernels.eqlr_conv2d(x, layer.weight, layer.bias, impl=impl, **layer.options)
    if isinstance(layer, EqualizedLinear):
        return lambda x: kernels.eqlr_linear(x, layer.weight, layer.bias, impl=impl, **layer.options)
    conv = isinstance(layer, SNConv2d)

    def sn_layer(x):
        w_sn, _, u = kernels.spectral_norm(layer.weight, layer.u, impl=impl)
        return F.conv2d(x, w_sn, layer.bias, padding=layer.padding) if conv else F.linear(x, w_sn, layer.bias)
    return sn_layer


# ----- shapes of the real models ---------------------------------------------------------------------------
def describe(layer: nn.Module, shape) -> str:
    w = layer.weight
    if isinstance(layer, (EqualizedConv2d, SNConv2d)):
        k = w.shape[-1]
        tag = "eqlr" if isinstance(layer, EqualizedConv2d) else "sn"
        extra = ""
        if tag == "eqlr":
            o = layer.options
            extra = ("+up" if o.get("up", 1) == 2 else "") + ("+down" if o.get("down", 1) == 2 else "") + \
                    ("+pn" if o.get("pixelnorm") else "") + ("" if o.get("activation") == "lrelu" else "+lin")
        return f"{tag} conv{k}x{k}{extra} {w.shape[1]}->{w.shape[0]} @{shape[-1]}"
    tag = "eqlr" if isinstance(layer, EqualizedLinear) else "sn"
    return f"{tag} linear {w.shape[1]}->{w.shape[0]}"


def collect_layers(width: int, batch: int):
    """[(model, name, layer, input shape)] for each distinct layer config in the 32x32 and 64x64 models."""
    seen, found = set(), []
    kinds = (EqualizedConv2d, EqualizedLinear, SNConv2d, SNLinear)
    for res in (32, 64):
        ch = 1 if res == 32 else 3
        nets = {f"pggan-G{res}": build_generator("pggan", res, ch, 128, width),
                f"pggan-D{res}": build_discriminator("pggan", res, ch, width),
                f"sngan-D{res}": build_discriminator("sngan", res, ch, width)}
        for model_name, net in nets.items():
            net.to(DEVICE)
            hooks = []
            for m in net.modules():
                if isinstance(m, kinds):
                    def rec(mod, inputs, output, model_name=model_name):
                        key = (describe(mod, inputs[0].shape), tuple(inputs[0].shape))
                        if key not in seen:
                            seen.add(key)
                            found.append((model_name, key[0], mod, tuple(inputs[0].shape)))
                    hooks.append(m.register_forward_hook(rec))
            with torch.no_grad():
                if "-G" in model_name:
                    net(torch.randn(batch, 128, device=DEVICE))
                else:
                    net(torch.randn(batch, ch, res, res, device=DEVICE))
            for h in hooks:
                h.remove()
    return found


# ----- wall-clock budget -----------------------------------------------------------------------------------
DEADLINE = [float("inf")]  # set by main() from --time-limit


def time_left() -> float:
    return DEADLINE[0] - time.perf_counter()


def time_limit_s() -> float:
    return DEADLINE[1] if len(DEADLINE) > 1 else float("inf")


# ----- timing ----------------------------------------------------------------------------------------------
def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def fwd_bwd(fn, x, params, grad_out):
    for p in params:
        p.grad = None
    x.grad = None
    y = fn(x)
    y.backward(grad_out)


# On a CPU, the process's CPU time: the machine is shared with other jobs, and wall time would charge their
# time slices to whichever variant happened to be running. On CUDA, wall time after synchronising.
CLOCK = time.perf_counter if DEVICE.type == "cuda" else time.process_time


def time_round(fns: dict, args: dict) -> dict:
    out = {}
    for name, fn in fns.items():
        _sync()
        t = CLOCK()
        fn(*args[name])
        _sync()
        out[name] = CLOCK() - t
    return out


def interleaved(fns: dict, args: dict, rounds: int, warmup: int = 2) -> dict:
    """Best seconds per variant over ``rounds`` rounds, each running every variant once in turn.

    The minimum, not the median: on a CPU shared with other jobs, interference only ever adds time.
    """
    for _ in range(warmup):
        time_round(fns, args)
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, v in time_round(fns, args).items():
            samples[k].append(v)
    return {k: min(v) for k, v in samples.items()}


def _allow_many_compiles() -> None:
    """Every layer's closure shares one code object; let dynamo keep one specialisation per layer."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 256))


def compile_layers(cases, budget: float, log, reserve: float = 0.0) -> None:
    """Add a "c_compile" variant to as many cases as ``budget`` seconds of compiling allow.

    One layer of each kind first (so a short budget still covers every kind), then the rest.
    """
    if not hasattr(torch, "compile"):
        for case in cases:
            case["row"]["c_note"] = "torch.compile unavailable"
        return
    _allow_many_compiles()
    kinds, first, rest = set(), [], []
    for case in cases:
        kind = case["row"]["layer"].split(" @")[0].rsplit(" ", 1)[0]  # e.g. "eqlr conv3x3+up+pn"
        (rest if kind in kinds else first).append(case)
        kinds.add(kind)
    left, failure = budget, None
    for case in first + rest:
        row = case["row"]
        if failure is None and time_left() < reserve:
            failure = "not compiled: --time-limit nearly reached (a loaded CPU)"
        if failure is not None or left <= 0:
            row["c_note"] = failure or "not compiled: --compile-budget (or --time-limit) spent"
            continue
        try:
            compiled = torch.compile(reference_fn(case["layer"], "torch"), dynamic=False)
            t0 = time.perf_counter()
            fwd_bwd(compiled, case["x"], case["params"], case["g"])
            spent = time.perf_counter() - t0
        except Exception as exc:  # a missing C++ toolchain, an unsupported op, ...
            failure = f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            row["c_note"] = failure
            continue
        left -= spent
        row["compile_s"] = round(spent, 2)
        case["variants"]["c_compile"] = compiled
    n = sum("c_compile" in c["variants"] for c in cases)
    log(f"# torch.compile: {n}/{len(cases)} layers compiled in {budget - left:.0f} s")


def layer_cases(layers):
    cases = []
    for model_name, desc, layer, shape in layers:
        x = torch.randn(shape, device=DEVICE, requires_grad=True)
        variants = {"a_plain": plain_equalized(layer) if not isinstance(layer, SpectralNormed)
                    else plain_spectral(layer),
                    "b_reference": reference_fn(layer, "torch")}
        if DEVICE.type == "cuda":
            variants["d_triton"] = reference_fn(layer, "triton")
        with torch.no_grad():
            g = torch.randn_like(variants["b_reference"](x))
        cases.append({"row": {"model": model_name, "layer": desc, "input": list(shape)}, "layer": layer, "x": x,
                      "params": [layer.weight, layer.bias], "g": g, "variants": variants})
    return cases


def time_cases(cases, rounds: int, log) -> None:
    """Time every variant of each case in interleaved rounds; fills the rows (ms)."""
    for case in cases:
        x, params, g = case["x"], case["params"], case["g"]
        fns = {k: (lambda f: (lambda: fwd_bwd(f, x, params, g)))(f) for k, f in case["variants"].items()}
        n = rounds if time_left() > 0.5 * time_limit_s() else 3  # fewer rounds when running late
        times = interleaved(fns, {k: () for k in fns}, n)
        case["row"].update({k: v * 1e3 for k, v in times.items()})
        log(format_row(case["row"]))


# ----- full training step ----------------------------------------------------------------------------------
def install_plain_layers(trainer: Trainer) -> None:
    """Route every faststeal layer of the trainer's networks through the usual-way modules of (a).

    Built once per trainer (sharing Parameters, so its optimisers train them); torch's spectral-norm hooks
    keep their own u across steps.
    """
    for net in (trainer.G, trainer.D, trainer.G_ema):
        for m in net.modules():
            if isinstance(m, (EqualizedConv2d, EqualizedLinear)):
                plain = plain_equalized(m)
            elif isinstance(m, SpectralNormed):
                plain = plain_spectral(m)
            else:
                continue
            object.__setattr__(m, "_plain", plain)  # keep it alive without registering a submodule
            m.forward = plain.forward


@contextlib.contextmanager
def no_faststeal_spectral_norm():
    """During (a) steps the SNGAN discriminator must not also run faststeal's multi-layer spectral norm."""
    original = sngan.apply_spectral_norm
    sngan.apply_spectral_norm = lambda model: None
    try:
        yield
    finally:
        sngan.apply_spectral_norm = original


def make_trainer(arch: str, res: int, width: int, batch: int, tmp: Path) -> Trainer:
    ch = 1 if res == 32 else 3
    images = torch.randint(0, 256, (4 * batch, ch, res, res), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(arch=arch, resolution=res, channels=ch, latent_dim=128, width=width, batch=batch,
                      kimg=1.0, n_dis=1, seed=0)
    t = Trainer(cfg, ImageSet(images, None, "bench", "random"), checkpoint_path=tmp / f"{arch}{res}.pt",
                progress=False)
    t.images_seen = 10 ** 6  # past the growing schedule: PGGAN runs at full resolution, alpha 1
    return t


STEP_COMPILE_NOTE = ("not run by default (--compile-steps tries it): on this CPU compiling SNGAN's G and D took "
                     "~195 s before the first step and the compiled step was not faster; PGGAN's gradient "
                     "penalty fails with 'torch.compile with aot_autograd does not currently support double "
                     "backward'")


def bench_steps(width: int, batch: int, rounds: int, compile_steps: bool, log):
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("pggan", "sngan"):
            for res in (32, 64):
                if time_left() < (30 if res == 32 else 60):
                    row = {"model": f"{arch}{res}", "layer": f"Trainer.step() {arch} {res}x{res} (n_dis=1)",
                           "input": [batch], "skipped": "--time-limit reached (a loaded CPU)"}
                    rows.append(row)
                    log(f"{row['model']:9} {row['layer']:42} skipped: {row['skipped']}")
                    continue
                plain_t = make_trainer(arch, res, width, batch, Path(tmp))
                install_plain_layers(plain_t)
                ref_t = make_trainer(arch, res, width, batch, Path(tmp))

                def step_plain():
                    with no_faststeal_spectral_norm():
                        plain_t.step()

                def step_ref():
                    with kernels_forced("torch"):
                        ref_t.step()
                fns = {"a_plain": step_plain, "b_reference": step_ref}
                row = {"model": f"{arch}{res}", "layer": f"Trainer.step() {arch} {res}x{res} (n_dis=1)",
                       "input": [batch], "c_note": STEP_COMPILE_NOTE}
                if compile_steps:
                    comp_t = make_trainer(arch, res, width, batch, Path(tmp))
                    comp_t.G, comp_t.D = torch.compile(comp_t.G), torch.compile(comp_t.D)
                    t0 = time.perf_counter()
                    try:
                        with kernels_forced("torch"):
                            comp_t.step()
                        row["compile_s"] = round(time.perf_counter() - t0, 1)
                        row.pop("c_note")

                        def step_compiled():
                            with kernels_forced("torch"):
                                comp_t.step()
                        fns["c_compile"] = step_compiled
                    except Exception as exc:
                        row["c_note"] = (f"torch.compile failed after {time.perf_counter() - t0:.0f} s: "
                                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                tri_t = make_trainer(arch, res, width, batch, Path(tmp)) if DEVICE.type == "cuda" else None
                if tri_t is not None and next(tri_t.G.parameters()).is_cuda:
                    def step_triton():
                        with kernels_forced("triton"):
                            tri_t.step()
                    fns["d_triton"] = step_triton
                times = interleaved(fns, {k: () for k in fns}, rounds, warmup=1)
                row.update({k: v * 1e3 for k, v in times.items()})
                rows.append(row)
                log(format_row(row))
    return rows


@contextlib.contextmanager
def kernels_forced(impl: str):
    import os
    old = os.environ.get("FASTSTEAL_KERNELS")
    os.environ["FASTSTEAL_KERNELS"] = impl
    try:
        yield
    finally:
        if old is None:
            del os.environ["FASTSTEAL_KERNELS"]
        else:
            os.environ["FASTSTEAL_KERNELS"] = old


# ----- report ----------------------------------------------------------------------------------------------
HEADER = (f"{'model':9} {'layer':42} {'(a) ms':>9} {'(b) ms':>9} {'b/a':>6} {'(c) ms':>9} {'c/a':>6} "
          f"{'(d) ms':>9} {'d/a':>6}")


def _cell(row, key):
    if key not in row:
        return f"{'-':>9} {'-':>6}"
    return f"{row[key]:9.2f} {row[key] / row['a_plain']:6.2f}"


def format_row(row) -> str:
    d = _cell(row, "d_triton") if "d_triton" in row else f"{'n/a':>9} {'':>6}"
    return f"{row['model']:9} {row['layer'][:42]:42} {row['a_plain']:9.2f} {_cell(row, 'b_reference')} " \
           f"{_cell(row, 'c_compile')} {d}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds per layer (best of)")
    ap.add_argument("--step-rounds", type=int, default=2, help="timed rounds per training step (best of)")
    ap.add_argument("--compile-budget", type=float, default=60.0, help="seconds of torch.compile time")
    ap.add_argument("--compile-steps", action="store_true",
                    help="also torch.compile whole training steps (minutes of compiling on a CPU)")
    ap.add_argument("--time-limit", type=float, default=220.0,
                    help="wall seconds: past fractions of it, compiling stops, rounds shrink, steps are skipped")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads; 1 by default because on a CPU shared with other jobs, OpenMP "
                         "barriers of a descheduled thread add 100x outliers")
    ap.add_argument("--out", default=None, help="JSON file to write (default: a new file under bench/results/)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    DEADLINE[:] = [start + args.time_limit, args.time_limit]
    log = lambda s: print(s, flush=True)  # noqa: E731
    hw = torch.cuda.get_device_name() if DEVICE.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {args.threads} threads, no GPU"
    log(f"faststeal kernel benchmark on {hw}; torch {torch.__version__}; batch {args.batch}, width {args.width}")
    clock = "wall" if DEVICE.type == "cuda" else "process CPU"
    log(f"times: best-of-rounds forward+backward ms ({clock} time); ratios are time / (a), < 1 is faster than "
        "plain PyTorch")
    log("(a) plain modules  (b) faststeal reference  (c) torch.compile(b)  (d) Triton (GPU only)")
    # Most important first, so a loaded CPU's --time-limit only trims the last phase (torch.compile).
    cases = layer_cases(collect_layers(args.width, args.batch))
    log(HEADER)
    time_cases(cases, args.rounds, log)
    step_rows = bench_steps(args.width, args.batch, args.step_rounds, args.compile_steps, log)
    compile_layers(cases, min(args.compile_budget, max(time_left() - 30, 0)), log, reserve=30)
    compiled_cases = [c for c in cases if "c_compile" in c["variants"]]
    if compiled_cases:
        log("# (a), (b) and (c) re-timed together on the compiled layers:")
        time_cases(compiled_cases, args.rounds, log)
    layer_rows = [c["row"] for c in cases]
    log("# ratio table")
    log(HEADER)
    for row in layer_rows + [r for r in step_rows if "a_plain" in r]:
        log(format_row(row))
    total = time.perf_counter() - start
    def geo(rows, k):
        vals = [math.log(r[k] / r["a_plain"]) for r in rows if k in r]
        return math.exp(statistics.mean(vals)) if vals else float("nan")
    summary = {"layers_geomean_b_over_a": geo(layer_rows, "b_reference"),
               "steps_geomean_b_over_a": geo(step_rows, "b_reference")}
    compiled = [r for r in layer_rows if "c_compile" in r]
    if compiled:
        summary["layers_geomean_c_over_a"] = geo(compiled, "c_compile")
        summary["layers_compiled"] = len(compiled)
    log(f"geometric mean (b)/(a): layers {summary['layers_geomean_b_over_a']:.2f}, "
        f"training steps {summary['steps_geomean_b_over_a']:.2f}"
        + (f"; (c)/(a) over {len(compiled)} compiled layers {summary['layers_geomean_c_over_a']:.2f}"
           if compiled else ""))
    if DEVICE.type != "cuda":
        log("(d) Triton: not measured, no GPU on this machine (the kernels are tested in interpreter mode)")
    for n in sorted({r["c_note"] for r in layer_rows if "c_note" in r}):
        log(f"(c) layers: {n}")
    for n in sorted({r["c_note"] for r in step_rows if "c_note" in r}):
        log(f"(c) steps: {n}")
    log(f"total {total:.0f} s")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "hardware": hw,
              "torch": torch.__version__, "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
              "batch": args.batch, "width": args.width, "units": "ms, forward+backward, best of interleaved rounds, "
             + ("wall time" if DEVICE.type == "cuda" else "process CPU time"),
              "layers": layer_rows, "training_steps": step_rows, "summary": summary, "total_s": total}
    args.out = results_path("kernels", args.out)
    Path(args.out).write_text(json.dumps(report, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
