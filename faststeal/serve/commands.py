"""`faststeal serve` and `faststeal keys ...`: the owner's side of the HTTP service."""
from __future__ import annotations

import json
import os

import click

DEFAULT_DB = "ledger.sqlite"
MISSING = "serving needs the [serve] extra: pip install 'faststeal[serve]'"


def _ledger(db):
    try:
        from .ledger import Ledger
    except ImportError:
        raise click.ClickException(MISSING) from None
    try:
        return Ledger(db)
    except Exception as exc:                           # a bad URL or an unreachable database: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise click.BadParameter(f"cannot open the ledger {db!r}: {type(exc).__name__}: {first}",
                                 param_hint="--db") from None


def settings_for(target, defense, accept_latents, db, max_batch, max_body, prior, seed, threads,
                 hints: dict | None = None) -> dict:
    """Check every serve option before a worker starts; the JSON-ready settings each worker builds from.

    ``hints``: what a foreign generator's probe cannot find (targets.Hints fields); every worker opens the
    target with them."""
    from faststeal.attack.oracle import LatentPrior
    from faststeal.targets import TargetError, open_target

    if max_batch < 1:
        raise click.BadParameter(f"must be >= 1, got {max_batch}", param_hint="--max-batch")
    if max_body < 1024:
        raise click.BadParameter(f"must be >= 1024 bytes, got {max_body}", param_hint="--max-body")
    if threads < 1:
        raise click.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
    try:
        LatentPrior.parse(prior)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prior") from None
    if defense:
        from faststeal.defense import DefenseError, parse_pipeline

        try:
            parse_pipeline(defense, seed=seed)
        except DefenseError as exc:
            raise click.BadParameter(str(exc), param_hint="--defense") from None
    opened = open_target(target, hints=hints)          # TargetError -> one line from the CLI
    if not opened.in_process:
        raise TargetError(f"{target}: serve needs the model itself (a file or py: entry point), not a URL")
    _ledger(db).dispose()                              # tables exist before several workers open them
    return {"target": str(target), "hints": hints, "defense": defense, "accept_latents": bool(accept_latents),
            "db": str(db),
            "max_batch": int(max_batch), "max_body": int(max_body), "prior": prior, "seed": int(seed),
            "threads": int(threads)}


@click.command("serve")
@click.option("--target", required=True,
              help="the generator: a faststeal checkpoint or builtin:NAME, TorchScript, torch.export .pt2, ONNX "
                   ".onnx, or py:FILE.py:FACTORY (runs that Python code)")
@click.option("--latent-dim", "target_latent_dim", type=int, default=None,
              help="foreign generator: its code size d [default: probed]")
@click.option("--output-range", type=click.Choice(["-1,1", "0,1", "0,255"]), default=None,
              help="foreign generator: the range of its images [default: probed]")
@click.option("--num-classes", type=int, default=0, show_default=True,
              help="foreign class-conditional generator: K classes, a label drawn uniformly per code")
@click.option("--defense", default=None, metavar="SPEC", help="one defense setting (see `faststeal defend --help`)")
@click.option("--accept-latents", is_flag=True, help='also take chosen codes {"z": ...} or {"seeds": ...}')
@click.option("--db", default=DEFAULT_DB, show_default=True, help="ledger: an SQLite file or a postgresql:// URL")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes (each loads the model; all share the ledger)")
@click.option("--max-batch", type=int, default=256, show_default=True, help="most images one request may ask for")
@click.option("--max-body", type=int, default=4 << 20, show_default=True, help="largest request body in bytes")
@click.option("--prior", default="normal", show_default=True,
              help="owner's latent prior: normal, uniform, truncated[:T]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the owner's code stream (keep secret)")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per worker")
def serve(target, target_latent_dim, output_range, num_classes, defense, accept_latents, db, host, port, workers,
          max_batch, max_body, prior, seed, threads):
    """Serve a target generator over HTTP behind API keys and a budget ledger (POST /v1/images)."""
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(MISSING) from None
    from faststeal.targets import Hints

    from .app import SETTINGS_ENV

    hints = Hints(target_latent_dim, output_range, num_classes)
    settings = settings_for(target, defense, accept_latents, db, max_batch, max_body, prior, seed, threads,
                            hints=None if hints == Hints() else hints.as_dict())
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    click.echo(f"serving {target} on http://{host}:{port} ({workers} worker(s), ledger {db}, defense "
               f"{defense or 'none'}, latents {'accepted' if accept_latents else 'refused'})", err=True)
    uvicorn.run("faststeal.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", timeout_graceful_shutdown=5)


@click.group("keys")
def keys():
    """Manage the API keys of a `faststeal serve` ledger, and read its audit."""


_db = click.option("--db", default=DEFAULT_DB, show_default=True, help="ledger: an SQLite file or a postgresql:// URL")


@keys.command("add")
@click.argument("name")
@click.option("--budget", type=int, required=True, help="images this key may receive in total")
@click.option("--rate", type=float, default=0.0, show_default=True, help="requests per second (0: unlimited)")
@_db
def keys_add(name, budget, rate, db):
    """Create key NAME; prints its bearer token once (only a hash is stored)."""
    from .ledger import LedgerError

    try:
        token = _ledger(db).add_key(name, budget, rate)
    except LedgerError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME" if exc.code in ("bad_name", "key_exists")
                                 else f"--{exc.code.split('_')[1]}") from None
    click.echo(token)


@keys.command("list")
@_db
def keys_list(db):
    """Every key with its budget, use and state."""
    rows = _ledger(db).list_keys()
    click.echo(f"{'key':<20} {'budget':>10} {'used':>10} {'remaining':>10} {'rate/s':>7}  state")
    for r in rows:
        click.echo(f"{r['key']:<20} {r['budget']:>10} {r['used']:>10} {r['remaining']:>10} {r['rate']:>7g}  "
                   f"{'revoked' if r['revoked'] else 'active'}")


@keys.command("revoke")
@click.argument("name")
@_db
def keys_revoke(name, db):
    """Revoke key NAME: its requests are refused from now on (its ledger rows stay)."""
    from .ledger import LedgerError

    try:
        _ledger(db).revoke(name)
    except LedgerError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    click.echo(f"revoked {name}")


@keys.command("report")
@click.option("--every", type=float, default=3600.0, show_default=True, help="bucket length in seconds")
@click.option("--key", "only", default=None, help="only this key")
@click.option("--json", "as_json", is_flag=True, help="print JSON rows instead of a table")
@_db
def keys_report(every, only, as_json, db):
    """Per-key usage over time from the audit table: requests and images charged, served, replayed, refused."""
    from .report import format_table, usage_over_time

    if every <= 0:
        raise click.BadParameter(f"must be > 0, got {every}", param_hint="--every")
    rows = usage_over_time(_ledger(db).audit_rows(only), every)
    click.echo(json.dumps(rows) if as_json else format_table(rows))
