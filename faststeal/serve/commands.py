"""`faststeal serve` and `faststeal keys ...`: the owner's side of the HTTP service.

The owner's secrets stay out of the process list: ``--db`` (a URL may hold a password), ``--defense`` (a
watermark key) and ``--seed`` are also read from $FASTSTEAL_DB, $FASTSTEAL_DEFENSE and $FASTSTEAL_SEED, or from
a TOML file readable by its owner only (``--config``, keys ``db``, ``defense``, ``seed``). What is printed
goes through ``faststeal.report.redact``.
"""
from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import click

from faststeal.defense import DefenseError, parse_pipeline
from faststeal.report import redact
from faststeal.targets import Hints, TargetError, open_target
from faststeal.targets.oracle import LatentPrior

from .report import format_table, usage_over_time

DEFAULT_DB = "ledger.sqlite"
MISSING = "serving needs the [serve] extra: pip install 'faststeal[serve]'"
CONFIG_KEYS = ("db", "defense", "seed")
SEED_WARNING = ("warning: an explicit seed makes the served code stream public (every key reads the stream of "
                "that seed, and anyone who knows it can rebuild every code); use it for reproducible experiments "
                "only and leave it out to serve from a secret seed kept in the ledger")


def _ledger(db):
    try:
        from .ledger import Ledger  # the [serve] extra (sqlalchemy)
    except ImportError:
        raise click.ClickException(MISSING) from None
    try:
        return Ledger(db)
    except Exception as exc:                           # a bad URL or an unreachable database: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise click.BadParameter(f"cannot open the ledger {redact(db)!r}: {type(exc).__name__}: {redact(first)}",
                                 param_hint="--db") from None


def read_config(path) -> dict:
    """The owner's serve settings from a TOML file that only its owner may read (mode 0600 or stricter)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise click.BadParameter(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); it holds "
                                     f"secrets: chmod 600 {path}", param_hint="--config")
        values = tomllib.loads(path.read_text())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise click.BadParameter(f"{path} is not valid TOML; write e.g. db = \"ledger.sqlite\"",
                                 param_hint="--config") from None
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise click.BadParameter(f"unknown key {unknown[0]!r} in {path}; known: {', '.join(CONFIG_KEYS)}",
                                 param_hint="--config")
    if "seed" in values and (isinstance(values["seed"], bool) or not isinstance(values["seed"], int)):
        raise click.BadParameter(f"seed in {path} must be an integer", param_hint="--config")
    if any(not isinstance(values[k], str) for k in ("db", "defense") if k in values):
        raise click.BadParameter(f"db and defense in {path} must be strings", param_hint="--config")
    return values


def check_seed(seed) -> int | None:
    if seed is not None and not 0 <= seed < 2 ** 40:
        raise click.BadParameter(f"must be in 0..2**40-1, got {seed}", param_hint="--seed")
    return seed


def settings_for(target, defense, accept_latents, db, max_batch, max_body, prior, seed, threads,
                 hints: dict | None = None, publish_defense: bool = False) -> dict:
    """Check every serve option before a worker starts; the JSON-ready settings each worker builds from.

    ``seed``: None (the default) serves from the secret seed kept in the ledger; an integer serves the public
    stream of that seed (reproducible experiments). ``hints``: what a foreign generator's probe cannot find
    (targets.Hints fields); every worker opens the target with them."""
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
    check_seed(seed)
    if defense:
        try:
            parse_pipeline(defense, seed=seed or 0)
        except DefenseError as exc:
            raise click.BadParameter(redact(exc), param_hint="--defense") from None
    opened = open_target(target, hints=hints)          # TargetError -> one line from the CLI
    if not opened.in_process:
        raise TargetError(f"{target}: serve needs the model itself (a file or py: entry point), not a URL")
    ledger = _ledger(db)                               # tables exist before several workers open them
    if seed is None:
        from .app import STREAM_SECRET  # the [serve] extra (fastapi), loaded only to serve

        ledger.secret(STREAM_SECRET)                   # made once, here, before the workers read it
    ledger.dispose()
    return {"target": str(target), "hints": hints, "defense": defense, "accept_latents": bool(accept_latents),
            "db": str(db), "publish_defense": bool(publish_defense),
            "max_batch": int(max_batch), "max_body": int(max_body), "prior": prior,
            "seed": None if seed is None else int(seed), "threads": int(threads)}


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
@click.option("--defense", default=None, metavar="SPEC", envvar="FASTSTEAL_DEFENSE",
              help="one defense setting (see `faststeal defend --help`) [env FASTSTEAL_DEFENSE: keeps a watermark "
                   "key out of the process list]")
@click.option("--publish-defense", is_flag=True,
              help="name the served defense in GET /v1/info (secrets redacted); otherwise it says 'unpublished'")
@click.option("--accept-latents", is_flag=True, help='also take chosen codes {"z": ...} or {"seeds": ...}')
@click.option("--db", default=None, envvar="FASTSTEAL_DB",
              help=f"ledger: an SQLite file or a postgresql:// URL [env FASTSTEAL_DB; default: {DEFAULT_DB}]")
@click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
              help="TOML file (mode 600) with db, defense and seed: secrets off the command line")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes (each loads the model; all share the ledger)")
@click.option("--max-batch", type=int, default=256, show_default=True, help="most images one request may ask for")
@click.option("--max-body", type=int, default=4 << 20, show_default=True, help="largest request body in bytes")
@click.option("--prior", default="normal", show_default=True,
              help="owner's latent prior: normal, uniform, truncated[:T]")
@click.option("--seed", type=int, default=None, envvar="FASTSTEAL_SEED",
              help="a fixed seed for the served codes, for reproducible experiments only: it makes the stream "
                   "public [env FASTSTEAL_SEED; default: a secret seed made once and kept in the ledger]")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per worker")
def serve(target, target_latent_dim, output_range, num_classes, defense, publish_defense, accept_latents, db,
          config, host, port, workers, max_batch, max_body, prior, seed, threads):
    """Serve a target generator over HTTP behind API keys and a budget ledger (POST /v1/images)."""
    try:
        import uvicorn  # the [serve] extra
    except ImportError:
        raise click.ClickException(MISSING) from None
    from .app import SETTINGS_ENV  # the [serve] extra (fastapi)

    given = read_config(config) if config else {}
    db = db or given.get("db") or DEFAULT_DB
    defense = defense or given.get("defense")
    seed = seed if seed is not None else given.get("seed")
    hints = Hints(target_latent_dim, output_range, num_classes)
    settings = settings_for(target, defense, accept_latents, db, max_batch, max_body, prior, seed, threads,
                            hints=None if hints == Hints() else hints.as_dict(), publish_defense=publish_defense)
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    if seed is not None:
        click.echo(SEED_WARNING, err=True)
    click.echo(f"serving {target} on http://{host}:{port} ({workers} worker(s), ledger {redact(db)}, defense "
               f"{redact(defense or 'none')} ({'published' if publish_defense else 'unpublished'}), latents "
               f"{'accepted' if accept_latents else 'refused'}, codes from "
               f"{'a fixed seed' if seed is not None else 'the secret seed'})", err=True)
    uvicorn.run("faststeal.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", timeout_graceful_shutdown=5)


@click.group("keys")
def keys():
    """Manage the API keys of a `faststeal serve` ledger, and read its audit."""


_db = click.option("--db", default=DEFAULT_DB, show_default=True, envvar="FASTSTEAL_DB",
                   help="ledger: an SQLite file or a postgresql:// URL [env FASTSTEAL_DB]")


@keys.command("add")
@click.argument("name")
@click.option("--budget", type=int, required=True, help="images this key may receive in total")
@click.option("--rate", type=float, default=0.0, show_default=True, help="requests per second (0: unlimited)")
@_db
def keys_add(name, budget, rate, db):
    """Create key NAME; prints its bearer token once (only a hash is stored)."""
    from .ledger import LedgerError, check_count, check_rate  # the [serve] extra (sqlalchemy)

    try:                                   # every number checked before a secret exists
        check_count("budget", budget)
        check_rate(rate)
    except LedgerError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.code.split('_')[1]}") from None
    ledger = _ledger(db)
    try:
        token = ledger.add_key(name, budget, rate)
    except LedgerError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME" if exc.code in ("bad_name", "key_exists")
                                 else f"--{exc.code.split('_')[1]}") from None
    except Exception as exc:               # the database refused: one line, never the statement's values
        raise click.ClickException(f"the ledger {redact(db)} did not store key {name!r} ({type(exc).__name__}); "
                                   f"check that it is writable and try again") from None
    finally:
        ledger.dispose()
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
    from .ledger import LedgerError  # the [serve] extra (sqlalchemy)

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
    if every <= 0:
        raise click.BadParameter(f"must be > 0, got {every}", param_hint="--every")
    rows = usage_over_time(_ledger(db).audit_rows(only), every)
    click.echo(json.dumps(rows) if as_json else format_table(rows))
