"""Command line: `faststeal COMMAND --help`. Thin: parse options, call the library, print results."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import click
import torch
from click.core import ParameterSource

from . import cpu, distributed
from .attack.curve import plot_curves
from .checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint
from .defense import describe_defenses
from .errors import FaststealError
from .grid import save_grid
from .metrics import compute_metric
from .metrics.sources import open_source
from .ownership import verify as ownership_verify
from .report import stage_line
from .runs.defend import NO_EFFECT, run_defend
from .runs.extract import coverage_line, run_extract, summary_line
from .runs.options import (
    DefendOptions,
    ExtractOptions,
    FidOptions,
    VerifyOptions,
    at_least,
    check_out_file,
    check_out_folder,
    hints_dict,
)
from .runs.sweep import run_sweep
from .runs.train_target import TrainTargetOptions, run_train_target
from .runs.transfer import TransferOptions, run_transfer
from .runs.verify_eval import EvalOptions, default_plan, run_eval
from .serve.commands import keys, serve
from .targets import OUTPUT_RANGES, Hints, detect_kind, open_target
from .train import PRECISIONS


class FriendlyGroup(click.Group):
    """Turn the library's input errors into one-line messages instead of tracebacks."""
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FaststealError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            # Input the checks above did not foresee: still one line, the traceback only on request.
            if os.environ.get("FASTSTEAL_DEBUG"):
                raise
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            click.echo(f"error: {text} (set FASTSTEAL_DEBUG=1 for the traceback)", err=True)
            sys.exit(2)
        except click.MissingParameter as exc:    # a required option left out: click's own words, one line
            click.echo(f"error: {exc.format_message().splitlines()[0]}", err=True)
            sys.exit(2)
        except click.BadParameter as exc:        # a bad value: one line that names the option, no usage dump
            hint = exc.param_hint if isinstance(exc.param_hint, str) else None
            click.echo(f"error: {hint + ': ' if hint else ''}{exc.message}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            if isinstance(exc, click.UsageError):   # a missing option or unknown flag: click's usage help
                raise
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=FriendlyGroup)
@click.version_option(package_name="faststeal")
@click.pass_context
def main(ctx):
    """faststeal: steal a GAN through its outputs, measure fidelity and accuracy, test defenses.

    Every command also runs under `torchrun --nproc_per_node K -m faststeal ...` (docs/guides/torchrun.md).
    """
    # Warnings reach CLI users as one plain line, not with the source line that raised them.
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    if distributed.setup():
        ctx.call_on_close(distributed.teardown)
        if not distributed.is_main():          # one voice: rank 0 prints results, the others stay quiet
            sys.stdout = open(os.devnull, "w")


@main.command("train-target")
@click.option("--arch", type=click.Choice(["pggan", "sngan"]), default="pggan", show_default=True)
@click.option("--data", default="fashion-mnist", show_default=True,
              help="fashion-mnist[:train|test], an image folder, or a uint8 .npy/.npz file")
@click.option("--classes", default=None, help="keep only these labels, e.g. 0,1,2")
@click.option("--resolution", type=click.Choice(["32", "64"]), default="32", show_default=True)
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="1 or 3; default: what the data has")
@click.option("--latent-dim", type=int, default=128, show_default=True)
@click.option("--width", type=int, default=64, show_default=True, help="feature maps (PGGAN: up to 16x16)")
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--kimg", type=float, default=100.0, show_default=True, help="thousands of real images shown to D")
@click.option("--lr", type=float, default=None, help="default: PGGAN 1e-3, SNGAN 2e-4")
@click.option("--n-dis", type=int, default=None, help="critic steps per G step; default PGGAN 1, SNGAN 5")
@click.option("--phase-kimg", type=float, default=None, help="PGGAN kimg per fade/stable phase")
@click.option("--ema-kimg", type=float, default=5.0, show_default=True)
@click.option("--snapshot-kimg", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="pin torch CPU threads (default: adapt to the free cores)")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="checkpoint file (.pt)")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="sample grids go here; default runs/<out name>")
@click.option("--resume", is_flag=True, help="continue from --out if it exists")
@click.option("--force", is_flag=True, help="start over even if --out exists (it is replaced)")
def train_target(threads, **params):
    """Train a target GAN on real data and write a checkpoint."""
    opts = TrainTargetOptions.from_params(params)
    opts.check()
    _set_threads(threads)
    result = run_train_target(opts, log=click.echo)
    click.echo(f"done: {result['kimg']:.1f} kimg in {result['seconds']:.0f} s "
               f"({result['images_per_s']:.1f} img/s); checkpoint {opts.out}; grids in {opts.grid_folder()}")


TARGET_HELP = ("the generator: a faststeal checkpoint or builtin:NAME, a TorchScript file, a torch.export .pt2, an "
               "ONNX .onnx, py:FILE.py:FACTORY or py:package.module:FACTORY (runs that Python code), or the URL "
               "of `faststeal serve`")
LOCAL_TARGET_HELP = TARGET_HELP.replace(", or the URL of `faststeal serve`", "")


def target_options(f):
    """What a foreign generator's probe cannot find, shared by every command that opens a target."""
    for opt in reversed([
        click.option("--latent-dim", "target_latent_dim", type=int, default=None,
                     help="foreign generator: its code size d, fed as (N, d) or (N, d, 1, 1) [default: probed]"),
        click.option("--output-range", type=click.Choice(OUTPUT_RANGES), default=None,
                     help="foreign generator: the range of its images [default: probed]"),
        click.option("--num-classes", type=int, default=0, show_default=True,
                     help="foreign class-conditional generator: K classes, a label drawn uniformly per code"),
    ]):
        f = opt(f)
    return f


def _open_target(spec, hints: dict | None = None, api_key=None, say=True):
    """Open the target once, with the hints given on the command line (one-line errors from TargetError);
    says on stderr what was found, since a probe may guess what a user should check."""
    target = open_target(spec, api_key=api_key, hints=Hints(**(hints or {})))
    if say and target.kind != "faststeal":
        click.echo(target.summary(), err=True)
    return target


@main.command()
@click.option("--target", required=True, help=LOCAL_TARGET_HELP)
@target_options
@click.option("-n", "--n", type=int, default=64, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="grid.png", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nrow", type=int, default=None, help="images per row (default: square)")
@click.option("--force", is_flag=True, help="overwrite --out if it exists")
def sample(target, target_latent_dim, output_range, num_classes, n, out, seed, nrow, force):
    """Write a grid of generated images from any in-process generator."""
    at_least(n, 1, "--n")
    at_least(nrow, 1, "--nrow")
    check_out_file(out, force, (".png", ".jpg", ".jpeg", ".webp"))
    opened = _open_target(target, hints_dict(target_latent_dim, output_range, num_classes))
    start = time.perf_counter()
    images = opened.sample(n, seed=seed)
    distributed.on_main(save_grid, images, out, nrow=nrow)
    click.echo(f"wrote {out}: {n} samples of {target} ({opened.resolution}x{opened.resolution}, "
               f"{time.perf_counter() - start:.2f} s)")


@main.command("info")
@click.argument("target")
@target_options
@click.option("--api-key", default=None, envvar="FASTSTEAL_API_KEY",
              help="bearer token for an http:// TARGET (or $FASTSTEAL_API_KEY)")
def info(target, target_latent_dim, output_range, num_classes, api_key):
    """Print what faststeal knows of TARGET as JSON: its kind, shape, id and what was probed; for a faststeal
    checkpoint also its config and training progress. TARGET is any target (see `extract --help`)."""
    opened = _open_target(target, hints_dict(target_latent_dim, output_range, num_classes), api_key, say=False)
    out = opened.describe()
    if opened.kind == "faststeal":
        state = load_checkpoint(target)
        out.update({k: state.get(k) for k in ("faststeal_version", "config", "progress", "data_fingerprint")})
    click.echo(json.dumps(out, indent=2, default=str))



@main.command("export")
@click.argument("checkpoint")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option("--force", is_flag=True, help="overwrite OUT if it exists")
def export(checkpoint, out, dtype, force):
    """Write a small copy of CHECKPOINT for serving: EMA generator and discriminator only, no resume state."""
    check_out_file(out, force, (".pt", ".pth", ".ckpt"), flag="OUT")
    state = slim_checkpoint(load_checkpoint(checkpoint), getattr(torch, dtype))
    path = distributed.on_main(save_checkpoint, state, out)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {dtype})")


@main.command("fid")
@click.argument("a")
@click.argument("b")
@click.option("-n", "--n", type=int, default=None,
              help="images per side (default: all of a data set; 10000 samples of a generator)")
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--metric", type=click.Choice(["fid", "kid", "prdc", "all", "fid-inf"]), default="fid",
              show_default=True,
              help="prdc: precision/recall (k=3), density/coverage (k=5) of B against A; all: FID, KID and PRDC "
                   "from one feature pass; fid-inf: FID and its extrapolation to unlimited n (Chong & Forsyth), "
                   "fitted over 15 subset sizes from a fifth of n to n")
@click.option("--ci", type=float, default=None,
              help="add a bootstrap interval of FID/KID at this level, e.g. 0.95 (resamples the features)")
@click.option("--bootstrap", "resamples", type=int, default=200, show_default=True,
              help="bootstrap resamples for --ci")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the bootstrap and fid-inf draws")
@click.option("--loader", type=click.Choice(["auto", "dali", "torch"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["float32", "bf16", "tf32"]), default="float32",
              show_default=True)
@click.option("--device", default=None, help="cpu or cuda[:i]; default: cuda if available")
@click.option("--no-cache", is_flag=True, help="recompute real-data statistics even if cached")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on the last line")
@target_options
def fid(**params):
    """FID, KID or precision/recall/density/coverage between two sources A (the reference) and B.

    A source is fashion-mnist[:train|test], an image folder, a uint8 .npy/.npz, a statistics .npz
    (mu, sigma), a generator checkpoint (.pt / builtin:NAME), or gen:SPEC for any in-process generator
    (gen:model.onnx, gen:g.ts, gen:py:my.py:make; the --latent-dim/--output-range/--num-classes hints apply
    to it).
    """
    o = FidOptions.from_params(params)
    o.check()
    a, b = open_source(o.a, o.target_hints), open_source(o.b, o.target_hints)
    start = time.perf_counter()
    result = compute_metric(a, b, n=o.n, batch=o.batch, metric=o.metric, device=o.device, precision=o.precision,
                            loader=o.loader, cache=not o.no_cache, progress=not o.as_json, ci=o.ci,
                            bootstrap=o.resamples, seed=o.seed)
    result["seconds"] = round(time.perf_counter() - start, 2)
    for name in ("fid", "kid"):
        if name in result:
            interval = result.get(f"{name}_ci")
            shown = f"  [{o.ci:.0%} bootstrap {interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
            click.echo(f"{name.upper()} {result[name]:.4f}{shown}")
    if "fid_inf" in result:
        click.echo(f"FID-infinity {result['fid_inf']:.4f} +- {result['fid_inf_se']:.4f} (fit over "
                   f"{len(result['fid_inf_sizes'])} subset sizes, {result['fid_inf_sizes'][0]}-"
                   f"{result['fid_inf_sizes'][-1]} per side; +- the fit's standard error)")
    if "prdc" in result:
        click.echo("precision {precision:.4f}  recall {recall:.4f}  density {density:.4f}  "
                   "coverage {coverage:.4f}".format(**result["prdc"]))
    click.echo(f"(n1={result['n1']}, n2={result['n2']}, protocol {result['protocol']}, {result['seconds']:.1f} s)")
    if o.as_json:
        click.echo(json.dumps(result))


def attack_size_options(f):
    """The size flags shared by extract, sweep and defend."""
    for opt in reversed([
        click.option("--attack", type=click.Choice(["fast", "pggan", "sngan", "dcgan"]), default=None,
                     help="the adversary's GAN (independent of the target's): fast = PGGAN networks at full "
                          "resolution, logistic loss, lazy R1, DiffAugment; pggan/sngan = the paper's attackers; "
                          "dcgan = transposed convolutions with batch norm [default: fast up to 32x32 targets and "
                          "for a larger faststeal PGGAN/SNGAN, dcgan for a larger DCGAN or foreign generator]"),
        click.option("--attack-kimg", type=float, default=None,
                     help="thousands of images the attack GAN trains on [default: 80; 200 for the default fast "
                          "thief above 32x32; 400 for dcgan]"),
        click.option("--minutes", type=float, default=None,
                     help="also stop each attack GAN after this many minutes of training (whichever of this and "
                          "--attack-kimg comes first; the report says which); runs then differ across machines "
                          "[default: 20 when --attack-kimg is not given, none when it is: exact reproduction]"),
        click.option("--knowledge", type=click.Choice(["images", "latents"]), default="images", show_default=True,
                     help="images: the owner draws the codes; latents: the adversary chooses them and distils "
                          "its copy on (code, image) pairs"),
        click.option("--attack-precision", type=click.Choice(PRECISIONS), default=None,
                     help="bf16: the attack GAN's forward passes under bfloat16 autocast (weights, losses and "
                          "penalties stay float32) [default: bf16 for the default thief above 32x32 where it is "
                          "native (a CPU with AMX or AVX-512 BF16, a CUDA GPU with bf16), else float32]"),
        click.option("--attack-width", type=int, default=None,
                     help="the attack GAN's base width [default: 64; 32 for dcgan]"),
        click.option("--batch", type=int, default=None,
                     help="the attack GAN's batch [default: 16 for fast, 32 for pggan/sngan, 64 for dcgan]"),
        click.option("--attack-lr", type=float, default=None,
                     help="the attack GAN's learning rate [default: 0.002 fast, 0.001 pggan, 0.0002 sngan]"),
        click.option("--lr-decay", type=float, default=0.0, show_default=True,
                     help="let the attack's learning rate fall by this fraction over training, along a half "
                          "cosine (with --knowledge latents: over each of its two phases); 0: flat"),
        click.option("--r1-gamma", type=float, default=None,
                     help="weight of the fast thief's R1 penalty on real images [default: 0.1]"),
        click.option("--augment", default=None,
                     help="DiffAugment policy for the attack's discriminator: a comma list of translation, color, "
                          "cutout, or none [default: translation for fast (above 32x32 on images alone: "
                          "translation,color,cutout, adapted by --ada-target 0.6), none for pggan/sngan/dcgan]"),
        click.option("--ada-target", type=float, default=None,
                     help="adapt the --augment policy's strength: each transform applies to a share p of the "
                          "images, raised while the discriminator calls more than this share of the real images "
                          "real and lowered otherwise (0.6 as in ADA); 0: every image, always [default: 0.6 with "
                          "translation,color,cutout for the fast thief above 32x32 on images alone, else 0]"),
        click.option("--ema-kimg", type=float, default=5.0, show_default=True,
                     help="half-life of the copy's weight average (EMA), thousands of images"),
        click.option("--fid-n", type=int, default=2000, show_default=True, help="images per side for each FID"),
        click.option("--prior", default="normal", show_default=True,
                     help="owner's latent prior: normal, uniform, truncated[:T]"),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--eval-data", default=None, help="real data for accuracy; default: the target's own"),
        click.option("--threads", type=int, default=None,
                     help="pin torch CPU threads (default: adapt to the free cores)"),
        click.option("--fresh", is_flag=True,
                     help="start over: delete the run folder's queries, attack checkpoints and results first"),
        click.option("--api-key", default=None, envvar="FASTSTEAL_API_KEY",
                     help="bearer token for an http:// --target (or $FASTSTEAL_API_KEY)"),
    ]):
        f = opt(f)
    return f


def _target_name(target) -> str:
    """A short name for default run folders."""
    if target.kind == "http":
        return target.spec.split("://", 1)[1].strip("/").replace(":", "-").replace("/", "-")
    if target.kind == "python":
        return target.spec.rsplit(":", 1)[-1]
    return Path(target.spec.replace("builtin:", "")).stem


def _thief_line(opts, target) -> str:
    """What the thief will train, sized to the target (said before the long work starts)."""
    r, c = target.resolution, target.channels
    paired = (f", the first {opts.distill_only:.0%} on the paired loss alone"
              f"{', then fakes from fresh codes' if opts.fresh_fakes else ''}" if opts.knowledge == "latents" else "")
    adaptive = (f", {opts.augment or 'its'} augmentation adapted to {opts.ada_target:g}" if opts.ada_target
                else "")
    return (f"thief: {opts.attack} GAN at {r}x{r}x{c}, width {opts.attack_width}, batch {opts.batch}, "
            f"{opts.attack_kimg:g} kimg, {opts.attack_precision} on {opts.queries} queries "
            f"(knowledge: {opts.knowledge}{paired}{adaptive})")


def _set_threads(threads):
    """--threads pins the count; without it the count follows the cores other processes leave free."""
    at_least(threads, 1, "--threads")
    _, warning = cpu.configure(threads)
    if warning:
        click.echo(f"warning: {warning}", err=True)


@main.command()
@click.option("--target", required=True, help=TARGET_HELP)
@target_options
@click.option("--queries", type=int, default=10_000, show_default=True, help="query budget (images)")
@attack_size_options
@click.option("--real", default=None, help="real data the adversary holds (accuracy extraction)")
@click.option("--real-count", type=int, default=0, show_default=True, help="how many real images it holds")
@click.option("--target-discriminator", is_flag=True,
              help="adversary holds the target's discriminator: rejection-sample the queries with it")
@click.option("--drs-rate", type=float, default=0.5, show_default=True, help="fraction of queries DRS keeps")
@click.option("--finetune-kimg", type=float, default=None, help="fine-tuning length on real data")
@click.option("--query-set", default=None, help="reuse (or create) this query-set folder")
@click.option("--distill", type=float, default=10.0, show_default=True,
              help="weight of the paired L1 loss with --knowledge latents")
@click.option("--distill-only", type=float, default=None,
              help="with --knowledge latents: the fraction of training (of --attack-kimg, or of --minutes, "
                   "whichever ends first) spent on the paired loss alone, before the discriminator joins "
                   "[default: 0.5 for the default thief above 32x32 against a faststeal PGGAN or SNGAN, else 0.75]")
@click.option("--distill-lr", type=float, default=None,
              help="with --knowledge latents: the copy's learning rate while it trains on the paired loss alone "
                   "(the adversarial phase keeps --attack-lr) [default: 0.004 for the default thief above "
                   "32x32 against a faststeal PGGAN or SNGAN, else --attack-lr's]")
@click.option("--fresh-fakes/--paired-fakes", default=None,
              help="with --knowledge latents, once the discriminator joins: it judges fakes made from fresh "
                   "codes of the prior (--fresh-fakes) or from the codes the queries bought (--paired-fakes); "
                   "the paired L1 keeps the bought pairs either way [default: --paired-fakes]")
@click.option("--perceptual", type=float, default=0.0, show_default=True,
              help="with --knowledge latents: weight of a perceptual distance (the FID Inception's first "
                   "layers, channel-normalised) beside the paired L1; 0: off")
@click.option("--perceptual-images", type=int, default=0, show_default=True,
              help="with --perceptual: take the perceptual distance on this many images of each batch, a "
                   "cheaper estimate of the same term (0: the whole batch)")
@click.option("--curve-n", type=int, default=128, show_default=True,
              help="samples per fidelity probe during training (0: no curve)")
@click.option("--out", default=None, help="run folder; default runs/extract-<target>-<attack>-<queries>")
def extract(**params):
    """Steal a target GAN through its images; report fidelity and accuracy."""
    opts = ExtractOptions.from_params(params)
    opts.check()
    opened = _open_target(opts.target, api_key=params["api_key"], hints=opts.target_hints)
    opts.sized_for(opened.resolution, opened.arch)
    opts.out = opts.out or _default_out("extract", opened, opts, opts.queries)
    check_out_folder(opts.out)
    _set_threads(params["threads"])
    click.echo(_thief_line(opts, opened), err=True)
    m = run_extract(opts, target=opened)
    for v in m["variants"]:
        click.echo(f"{v['variant']:<45} fidelity {v['fidelity']:8.2f}   accuracy "
                   f"{'n/a' if v['accuracy'] is None else format(v['accuracy'], '8.2f')}")
    click.echo(coverage_line(m))
    _echo_stages(m)
    click.echo(f"{summary_line(m)}; report: {opts.out}/report.md")


def _echo_stages(metrics: dict) -> None:
    """Where a run's wall time went, on stderr beside the progress bars (its report.md has the same line)."""
    click.echo(f"wall time by stage: {stage_line(metrics['stage_seconds'])}", err=True)


def _default_out(command: str, target, opts, *parts) -> str:
    """runs/<command>-<target>-<attack>[-<parts>][-latents]: one folder per setting a user is likely to vary."""
    name = "-".join([command, _target_name(target), opts.attack, *map(str, parts)])
    return f"runs/{name}" + ("-latents" if opts.knowledge == "latents" else "")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option("--label", "labels", multiple=True, help="one legend label per run (default: folder name)")
@click.option("--title", default=None, help="the plot's title (default: 'extraction of TARGET')")
def curves(runs, out, labels, title):
    """Draw the fidelity curves of several extract runs on one plot (e.g. both knowledge levels).

    Runs must share the target and the curve's sample size, so that the reference lines are the same.
    """
    if labels and len(labels) != len(runs):
        raise click.BadParameter(f"give one --label per run ({len(runs)}), got {len(labels)}", param_hint="--label")
    loaded, reference, target = {}, None, None
    for i, run in enumerate(runs):
        path = Path(run) / "metrics.json"
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"{path}: not a finished extract run ({exc})") from None
        if not m.get("curve") or not m.get("curve_reference"):
            raise click.ClickException(f"{run}: has no fidelity curve (run extract with --curve-n > 0)")
        if reference is not None and (m["curve_reference"]["n"] != reference["n"] or m["target"] != target):
            raise click.ClickException(f"{run}: another target or curve size than {runs[0]}; plot them apart")
        reference, target = reference or m["curve_reference"], m["target"]
        loaded[labels[i] if labels else f"{Path(run).name} ({m.get('knowledge', 'images')})"] = m["curve"]
    distributed.on_main(plot_curves, loaded, reference, out, title=title or f"extraction of {target}")
    click.echo(f"wrote {out}")


@main.command()
@click.option("--target", required=True, help=TARGET_HELP)
@target_options
@click.option("--queries", default="1000,5000,10000", show_default=True, help="comma-separated budgets")
@attack_size_options
@click.option("--query-set", default=None, help="reuse (or create) this query-set folder")
@click.option("--out", default=None, help="run folder; default runs/sweep-<target>-<attack>")
def sweep(**params):
    """Train one attack per query budget; plot fidelity and accuracy against queries."""
    text = params["queries"]
    try:
        budgets = [int(q) for q in text.split(",") if q.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--queries") from None
    if not budgets or min(budgets) < 1:
        raise click.BadParameter(f"every budget must be >= 1, got {text!r}", param_hint="--queries")
    opts = ExtractOptions.from_params(params, queries=max(budgets))
    opts.check()
    opened = _open_target(opts.target, api_key=params["api_key"], hints=opts.target_hints)
    opts.sized_for(opened.resolution, opened.arch)
    opts.out = opts.out or _default_out("sweep", opened, opts)
    check_out_folder(opts.out)
    _set_threads(params["threads"])
    m = run_sweep(opts, budgets, target=opened)
    click.echo(f"{'queries':>8}  {'fidelity':>9}  {'accuracy':>9}  {'trained':>12}")
    for r in m["sweep"]:
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        click.echo(f"{r['queries']:>8}  {r['fidelity']:>9.2f}  {acc:>9}  {r['attack_kimg_reached']:>7.1f} kimg")
    _echo_stages(m)
    click.echo(f"plot: {opts.out}/sweep.png  report: {opts.out}/report.md")


@main.command()
@click.option("--source", required=True, help="the stolen (or any) checkpoint to start from")
@click.option("--data", required=True, help="new-domain data: fashion-mnist, a folder or an array file")
@click.option("--classes", default=None, help="class subset of --data, e.g. 5,7,9 (footwear)")
@click.option("--kimg", type=float, default=20.0, show_default=True)
@click.option("--evals", type=int, default=4, show_default=True, help="FID points along the way")
@click.option("--fid-n", type=int, default=1000, show_default=True)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="pin torch CPU threads (default: adapt to the free cores)")
@click.option("--out", default="runs/transfer", show_default=True)
def transfer(threads, **params):
    """Fine-tune a stolen model on a new domain vs training from scratch (FID curves)."""
    opts = TransferOptions(**params)
    opts.check()
    check_out_folder(opts.out)
    _set_threads(threads)
    m = run_transfer(opts)
    _echo_stages(m)
    click.echo(f"after {opts.kimg} kimg: fine-tuned FID {m['final_finetuned_fid']:.2f}, from scratch "
               f"{m['final_scratch_fid']:.2f}; plot {opts.out}/transfer.png")


def _defense_table() -> str:
    """The defend command's epilog, generated from the defense registry so it never drifts from the code."""
    rows = "\n".join("  " + line for line in describe_defenses().splitlines())
    return f"\b\nDefenses (name, side, key=default: meaning):\n{rows}"


@main.command(epilog=_defense_table())
@click.option("--target", required=True, help=TARGET_HELP)
@target_options
@click.option("--defense", "defenses", multiple=True, metavar="SPEC",
              help="one defense family per flag (repeatable; in-process targets only); syntax below")
@click.option("--queries", type=int, default=10_000, show_default=True, help="query budget per setting (images)")
@attack_size_options
@click.option("--baseline", default=None, metavar="TARGET",
              help="URL target: the undefended model fidelity is measured against (its file, or a server "
                   "without --defense)")
@click.option("--baseline-api-key", default=None, envvar="FASTSTEAL_BASELINE_API_KEY",
              help="bearer token for an http:// --baseline (or $FASTSTEAL_BASELINE_API_KEY)")
@click.option("--out", default=None, help="run folder; default runs/defend-<target>-<attack>-<queries>")
def defend(**params):
    """Serve the target through defenses; measure utility against what an attack still steals.

    For the undefended baseline and every defense setting: utility = FID(served images, real data);
    an attack GAN trained on the served images gives fidelity = FID(attack, UNdefended target) and
    accuracy = FID(attack, real data). Writes metrics.json (list "settings"), report.md, trade-off plots
    (utility on x) and served-vs-undefended sample pictures.

    With --target http://HOST:PORT --api-key KEY the defense is the server's own (`faststeal serve
    --defense`), so --defense is refused: the run buys --queries images from the server and measures that
    one setting against --baseline (the undefended checkpoint, or a second server's URL with
    --baseline-api-key). Without --baseline, fidelity is n/a; utility and accuracy need --eval-data.

    \b
    SPEC syntax:  NAME[:KEY=VALUE[,KEY=VALUE...]][+NAME[:...]]
      jpeg:quality=50                 one setting
      noise:sigma=0.05,0.1,0.2        several values after one key = a sweep (one line on the plot)
      truncate:psi=0.8+blur:sigma=1   '+' chains defenses into one setting
    Only one key per --defense may be swept; repeat --defense for more families.
    """
    opts = DefendOptions.from_params(params, defenses=list(params["defenses"]))
    opts.check()
    base = _open_baseline(opts.baseline, params["baseline_api_key"])
    opened = _open_target(opts.target, api_key=params["api_key"], hints=opts.target_hints)
    opts.sized_for(opened.resolution, opened.arch)
    opts.out = opts.out or _default_out("defend", opened, opts, opts.queries)
    check_out_folder(opts.out)
    _set_threads(params["threads"])
    _print_defend(run_defend(opts, target=opened, baseline=base), opts.out)


def _open_baseline(baseline, baseline_api_key):
    """The undefended model of a URL target's defend run; its key goes with it, not through the environment."""
    key_given = click.get_current_context().get_parameter_source("baseline_api_key") == ParameterSource.COMMANDLINE
    if baseline is None or detect_kind(baseline) != "http":
        if key_given:
            raise click.BadParameter("only for an http:// --baseline", param_hint="--baseline-api-key")
        return _open_target(baseline) if baseline else None
    if not baseline_api_key:
        raise click.BadParameter("an http:// baseline needs its own key from `faststeal keys add`",
                                 param_hint="--baseline-api-key")
    return _open_target(baseline, api_key=baseline_api_key)


def _print_defend(m: dict, out: str) -> None:
    def f(v):
        return "n/a" if v is None else f"{v:9.2f}"

    if m.get("served_defense"):
        baseline = m["baseline_source"] or "none (fidelity n/a)"
        click.echo(f"server's defense: {m['served_defense']}; baseline: {baseline}")
    click.echo(f"{'defense':<40} {'utility':>9} {'fidelity':>9} {'accuracy':>9} {'changed':>8}")
    for r in m["settings"]:
        changed = "n/a" if r["changed_pixels"] is None else f"{r['changed_pixels']:8.1%}"
        click.echo(f"{r['defense']:<40} {f(r['utility'])} {f(r['fidelity'])} {f(r['accuracy'])} {changed:>8}")
    idle = [r["defense"] for r in m["settings"][1:]
            if r["changed_pixels"] is not None and r["changed_pixels"] < NO_EFFECT]
    if idle:
        click.echo(f"no effect on this target (served the undefended images): {', '.join(idle)}")
    notes = {r.get("target_note") for r in m["settings"]} | {r.get("real_note") for r in m["settings"]}
    for note in sorted(n for n in notes if n):
        click.echo(f"n/a: {note}")
    _echo_stages(m)
    click.echo(f"report: {out}/report.md")


def _register_serving():
    main.add_command(serve)
    main.add_command(keys)


_register_serving()


@main.command()
@click.option("--suspect", required=True,
              help="a generator of any target kind (see `extract --help`; a URL is asked for --n images with "
                   "--api-key), an image folder or a uint8 .npy/.npz")
@target_options
@click.option("--api-key", default=None, envvar="FASTSTEAL_API_KEY",
              help="bearer token for an http:// --suspect (or $FASTSTEAL_API_KEY)")
@click.option("--key", default=None, help="the owner's watermark key (as in --defense watermark:key=KEY)")
@click.option("-n", "--n", type=int, default=5000, show_default=True,
              help="images to sample (or read) from the suspect")
@click.option("--reference", default=None,
              help="the owner's UNmarked model or images; its moment image is subtracted (more power, same null)")
@click.option("--low", type=float, default=1.0, show_default=True, help="band of the mark (as in the defense)")
@click.option("--high", type=float, default=8.0, show_default=True, help="band edge of the mark (as in the defense)")
@click.option("--null-keys", type=int, default=0, show_default=True,
              help="also test this many random wrong keys and report whether their p-values are uniform (KS)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the suspect's samples")
@click.option("--exact-draws", type=int, default=10_000, show_default=True,
              help="random sign vectors of the exact (rank) null behind the p-value; 0: normal approximation")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on the last line")
def verify(threads, as_json, **params):
    """Does SUSPECT carry the owner's watermark? One-line verdict with a p-value calibrated over keys.

    p < 0.001: marked (the suspect learned from images served with this key); p > 0.01: no evidence.
    """
    opts = VerifyOptions.from_params(params)
    opts.check(min_images=ownership_verify.MIN_IMAGES)
    _set_threads(threads)
    result = ownership_verify.verify(opts.suspect, opts.key, **opts.verify_kwargs())
    click.echo(result["line"])
    if as_json:
        click.echo(json.dumps(result))


@main.command("verify-eval")
@click.option("--target", default="builtin:pggan-fmnist32", show_default=True, help="the owner's target")
@click.option("--key", default=None, help="the owner's watermark key")
@click.option("--strength", type=float, default=4.0, show_default=True, help="mark strength (RMS pixel levels)")
@click.option("--kimg", type=float, default=80.0, show_default=True, help="training length of every model")
@click.option("--verify-n", type=int, default=5000, show_default=True, help="samples per model for the detector")
@click.option("--null-keys", type=int, default=1000, show_default=True, help="wrong keys per model")
@click.option("--fid-n", type=int, default=1000, show_default=True, help="images per side of the fidelity FIDs")
@click.option("--utility-n", type=int, default=2000, show_default=True,
              help="images per side of the utility FIDs (served with and without the mark)")
@click.option("--limit", type=int, default=None, help="build only the first N models of the plan (resumable)")
@click.option("--member", "members", multiple=True,
              help="build only this member (a name from --list-members; repeatable): split a population "
                   "over processes, then run once more without it for the full report")
@click.option("--list-members", is_flag=True, help="print the plan's member names and exit")
@click.option("--no-utility", is_flag=True, help="skip the utility FIDs (served with and without the mark)")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--out", default="runs/verify-eval", show_default=True, help="run folder (finished models are reused)")
def verify_eval(list_members, no_utility, threads, **params):
    """Build stolen, carefully stolen and innocent models and verify each with the owner's key.

    Reports TPR at FPR 1% and 0.1%, every model's p-value, the wrong-key null, the utility cost of the
    mark and the thief's fidelity (report-sS.md, results-sS.json, statistic-sS.png, served-sS.png in --out,
    S the strength).
    """
    if list_members:
        for i, m in enumerate(default_plan(), 1):
            click.echo(f"{i:3d}  {m.group:<8} {m.name}")
        return
    opts = EvalOptions.from_params(params, members=tuple(params["members"]), measure_utility=not no_utility,
                                   progress=True)
    opts.check()
    check_out_folder(opts.out)
    _set_threads(threads)
    r = run_eval(opts, log=click.echo)
    s = r["summary"]
    click.echo(f"TPR stolen at p<0.001: {s['tpr_stolen_at_0.001']}; innocent below p=0.01: "
               f"{s['fpr_innocent_at_0.01']}; wrong-key KS p = {s.get('wrong_key_ks_p', float('nan')):.3f}; "
               f"report: {opts.out}/report-s{opts.strength:g}.md")


if __name__ == "__main__":
    main()
