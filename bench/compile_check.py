"""Compile every Triton launch the models can make for real GPUs, on a machine without one, and check the fit.

    python bench/compile_check.py [--arch 80,86,89,90] [--jobs N] [--json FILE]

Triton's CPU interpreter runs the kernels but never meets a GPU's limits. The triton wheel ships ptxas, so
``triton.compile`` can build the cubin for any architecture here and report its shared memory; ptxas reports
registers and spills. The launches come from the same functions the kernels launch with (fwd_launches,
bwd_launch, sn_launch, i.e. kernels/launch_settings.py) over every equalized-LR and spectral-norm layer of
PGGAN (also the fast thief's networks) and SNGAN at 32/64/128 px, 1 or 3 channels, widths 8-512. Identical
configurations are compiled once per architecture. A launch fits when its shared memory is within the
architecture's per-block limit and its registers times threads are within the 64K registers of one SM.

Runs in its own process: kernels imported after TRITON_INTERPRET=1 are interpreted and cannot be compiled.
Exit status: 0 all fit, 1 some do not, 3 ptxas (or triton) is missing (the reason is printed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

ARCHS = (80, 86, 89, 90)
RESOLUTIONS = (32, 64, 128)
WIDTHS = (8, 16, 32, 64, 128, 256, 512)
REGISTERS_PER_SM = 64 * 1024
EXIT_MISSING = 3


def layer_specs(resolutions=RESOLUTIONS, widths=WIDTHS, channels=(1, 3), latent_dim=128) -> tuple[set, int]:
    """(distinct equalized-LR layer options, number of spectral-norm layers) over the models' sizes.

    Models are built on the meta device: only shapes and options are read, no memory is allocated.
    """
    import torch
    from faststeal.kernels.reference import default_padding

    from faststeal.models import build_discriminator, build_generator
    from faststeal.models.layers import EqualizedConv2d, EqualizedLinear, SpectralNormed

    specs, n_sn = set(), 0
    with torch.device("meta"):
        for arch in ("pggan", "sngan"):
            for res in resolutions:
                for ch in channels:
                    for width in widths:
                        for net in (build_generator(arch, res, ch, latent_dim, width),
                                    build_discriminator(arch, res, ch, width)):
                            for m in net.modules():
                                if isinstance(m, SpectralNormed):
                                    n_sn += 1
                                elif isinstance(m, (EqualizedConv2d, EqualizedLinear)):
                                    o = m.options
                                    co, c = m.weight.shape[:2]
                                    ks = m.weight.shape[-1] if m.weight.dim() == 4 else 1
                                    pad = o.get("padding")
                                    specs.add((c, co, ks, 1, default_padding(ks) if pad is None else pad,
                                               o.get("up", 1), o.get("down", 1), m.bias is not None,
                                               o["activation"], bool(o["pixelnorm"])))
    return specs, n_sn


def launches(arch: int, specs, n_sn: int) -> dict:
    """{key: (Launch, example arguments)}: the distinct launches for ``arch``, deduplicated."""
    import torch
    from faststeal.kernels import triton_conv, triton_sn

    f32 = torch.empty(16, dtype=torch.float32)  # aligned, as every launcher guarantees (triton_conv._aligned)
    i64 = torch.empty(16, dtype=torch.int64)
    example = {  # runtime arguments: only their types matter (shape integers are never specialised)
        "_eqlr_conv_fwd": (f32, f32, f32, f32, f32, 64, 64, 16, 16, 64, 16, 16, 0.5, 0.2, 1.0, 1e-8),
        "_pixelnorm_finish": (f32, f32, f32, 4096, 256, 64, 2, 1e-8),
        "_bias_act_bwd": (f32, f32, f32, f32, 4096, 256, 64, 0.2, 1.0),
        "_sn_power_multi": (i64, i64, i64, i64, i64, f32, f32, f32, 1, 1e-12),
    }
    found = {}

    def add(launch):
        name = launch.kernel.__name__
        key = (name, tuple(sorted(launch.constexprs.items())), tuple(sorted(launch.options.items())))
        found.setdefault(key, (launch, example[name]))

    for c, co, ks, stride, pad, up, down, has_bias, activation, pixelnorm in sorted(specs):
        for launch in triton_conv.fwd_launches(c, co, ks, stride, pad, up, down, has_bias, activation, pixelnorm,
                                               arch):
            add(launch)
        add(triton_conv.bwd_launch(co, activation, pixelnorm, arch))
    if n_sn:
        add(triton_sn.sn_launch(arch))
    return found


_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def compile_one(launch, args, arch: int) -> dict:
    """Compile ``launch`` for sm_<arch> the way its JIT launch would; shared memory, registers and spills."""
    import triton
    from faststeal.kernels.launch_settings import SHARED_MEMORY_LIMIT
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = launch.kernel
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    # The JIT's own binding: the same signature, constexprs and specialisation attributes a launch compiles.
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, opts = binder(*args, **launch.constexprs, **launch.options)
    _, signature, constexprs, attrs = fn._pack_args(backend, dict(launch.options), bound, spec, opts)
    log = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG=1 prints ptxas -v here
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=launch.options)
    seconds = time.perf_counter() - t0
    text = log.getvalue()
    regs = _REGS.search(text)
    spills = _SPILLS.search(text)
    threads = 32 * launch.options["num_warps"]
    row = {"arch": f"sm_{arch}", "kernel": fn.__name__, "constexprs": launch.constexprs,
           "num_warps": launch.options["num_warps"], "num_stages": launch.options["num_stages"],
           "shared_bytes": int(kernel.metadata.shared), "shared_limit_bytes": SHARED_MEMORY_LIMIT[arch],
           "registers": int(regs.group(1)) if regs else None,
           "spill_store_bytes": int(spills.group(1)) if spills else None,
           "spill_load_bytes": int(spills.group(2)) if spills else None,
           "enable_fp_fusion": getattr(kernel.metadata, "enable_fp_fusion", None),
           "compile_s": round(seconds, 2)}
    problems = []
    if row["shared_bytes"] > row["shared_limit_bytes"]:
        problems.append(f"shared memory {row['shared_bytes']} > {row['shared_limit_bytes']} bytes")
    if row["registers"] is not None and row["registers"] * threads > REGISTERS_PER_SM:
        problems.append(f"{row['registers']} registers x {threads} threads > {REGISTERS_PER_SM}")
    row["fits"] = not problems
    row["problems"] = problems
    return row


def missing_tools(archs) -> str | None:
    """Why compiling cannot run here, or None."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas
    except Exception as exc:  # no triton, or a triton without the NVIDIA backend
        return f"triton with its NVIDIA backend is not importable ({type(exc).__name__}: {exc})"
    for arch in archs:
        tool = get_ptxas(arch)
        if tool is None or not os.path.isfile(tool.path):
            return f"ptxas for sm_{arch} not found (the triton wheel ships it; set TRITON_PTXAS_PATH)"
    return None


def arch_rows(arch: int, specs, n_sn: int) -> list[dict]:
    """Compile every distinct launch of the layers ``specs`` (layer_specs) for one architecture; its rows."""
    return [compile_one(launch, args, arch) for launch, args in launches(arch, specs, n_sn).values()]


def run(archs=ARCHS, resolutions=RESOLUTIONS, widths=WIDTHS, jobs: int = 1, log=print) -> list[dict]:
    """The rows of the report, architecture by architecture. Each compile is one thread of work, so with
    jobs > 1 the architectures compile side by side in fresh processes (spawned: no Triton or OpenMP state is
    inherited); the rows come back in the order of ``archs`` either way."""
    specs, n_sn = layer_specs(resolutions, widths)     # plain tuples: read once, sent to every process
    if jobs <= 1 or len(archs) == 1:
        results = (arch_rows(arch, specs, n_sn) for arch in archs)
    else:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(archs)), mp_context=spawn) as pool:
            results = list(pool.map(arch_rows, archs, [specs] * len(archs), [n_sn] * len(archs)))
    rows = []
    for arch_part in results:
        for row in arch_part:
            rows.append(row)
            log(format_row(row))
    return rows


def format_row(row) -> str:
    k = row["constexprs"]
    brief = ",".join(f"{n}={v}" for n, v in k.items() if n not in ("DOT_PREC",))
    spills = "-" if row["spill_store_bytes"] is None else f"{row['spill_store_bytes']}/{row['spill_load_bytes']}"
    return (f"{row['arch']:6} {row['kernel']:18} w{row['num_warps']} s{row['num_stages']} "
            f"smem {row['shared_bytes'] / 1024:6.1f}/{row['shared_limit_bytes'] / 1024:.0f} KiB "
            f"regs {row['registers']} spills {spills} {row['compile_s']:5.1f}s "
            f"{'ok' if row['fits'] else 'DOES NOT FIT: ' + '; '.join(row['problems'])}  {brief}")


def _archs(text: str) -> list[int]:
    from faststeal.kernels.launch_settings import SHARED_MEMORY_LIMIT

    archs = [int(a.strip().removeprefix("sm_")) for a in text.split(",") if a.strip()]
    bad = [a for a in archs if a not in SHARED_MEMORY_LIMIT]
    if bad or not archs:
        raise argparse.ArgumentTypeError(f"architectures must be among {sorted(SHARED_MEMORY_LIMIT)}, got {text!r}")
    return archs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=_archs, default=list(ARCHS), help="comma-separated, e.g. 80,86,89,90")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="architectures compiled side by side, one process each (default: one per core)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: TRITON_INTERPRET=1 makes the kernels interpreted; unset it to compile them", file=sys.stderr)
        return 2
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    why = missing_tools(args.arch)
    if why:
        print(f"SKIP: {why}")
        return EXIT_MISSING
    os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="faststeal-compile-"))
    t0 = time.perf_counter()
    rows = run(args.arch, jobs=args.jobs)
    bad = [r for r in rows if not r["fits"]]
    print(f"{len(rows)} launches compiled for {', '.join(f'sm_{a}' for a in args.arch)} in "
          f"{time.perf_counter() - t0:.0f} s; {len(bad)} do not fit")
    if args.json:
        from faststeal.fileio import write_json
        write_json(args.json, rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
