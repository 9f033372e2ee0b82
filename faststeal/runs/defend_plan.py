"""What a defend run will measure, settled before any query is bought: its settings, where each one's images
come from, and the attack every setting's thief trains with.

In process, the plan is the undefended target then every setting of every ``--defense`` family, applied here.
Against a URL the server applies its own defense, so the plan is the baseline (when given) and the one setting
the server serves, bought with the owner's key; both keys are checked for the budget first.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from faststeal.attack import queryset
from faststeal.data import DataError
from faststeal.defense import DefensePipeline, Family
from faststeal.defense.adversarial import AdversarialFeatures
from faststeal.report import RunFolder, redacted_value
from faststeal.targets import Target
from faststeal.targets.oracle import BudgetExceeded
from faststeal.train import TrainConfig

from .experiment import Experiment
from .options import DefendOptions, attack_config, knowledge_settings

BASELINE = "none"
SERVED = "served"


@dataclass
class Setting:
    """One row of the trade-off: where its images come from and what its files are called."""
    spec: str                                  # the defense it serves ("none": undefended)
    name: str                                  # queries-<name>/, attack-<name>.pt, samples-<name>.png
    target: str                                # the query set's target: a file, py: spec or a URL
    open: Callable                             # () -> the oracle serving this setting's images
    pipeline: DefensePipeline | None = None    # applied in this process; None: applied by a server
    family: str = BASELINE                     # its line on the trade-off plot
    swept: str | None = None
    value: object = None                       # the swept value as reports show it (a watermark key redacted)
    remote: bool = False                       # bought from a server (whose key pays for it)

    @property
    def slow(self) -> bool:
        return self.pipeline is not None and any(isinstance(d, AdversarialFeatures) for d in self.pipeline.image)


@dataclass
class DefendPlan:
    """Everything a defend run decided before buying: the options, the targets, the settings in row order, the
    attack configuration and the experiment that holds the run folder and the evaluator."""
    opts: DefendOptions
    target: Target
    baseline: Target | None
    families: list[Family]
    ident: dict | None            # URL target: the server's model id and defense and the baseline's identity
    exp: Experiment
    settings: list[Setting]
    attack: TrainConfig

    @property
    def remote(self) -> bool:
        return not self.target.in_process

    @property
    def run(self) -> RunFolder:
        return self.exp.folder


def slug(spec: str) -> str:
    """A file-name-safe, readable name for one setting: 'noise:sigma=0.1' -> 'noise-sigma0.1'."""
    s = re.sub(r"[^A-Za-z0-9.]+", "-", spec.replace("=", "")).strip("-")
    return s or BASELINE


def plan_defend(opts: DefendOptions, target: Target, baseline: Target | None, run=None) -> DefendPlan:
    """Check the options against the target (and a URL's server and keys), open the run folder, list the
    settings. Nothing is bought or trained here."""
    remote = not target.in_process
    families = opts.check(remote=remote)
    target_cfg, ident = _remote_identity(opts, target, baseline) if remote else (target.config, None)
    run = run or RunFolder(opts.out, "defend", {**asdict(opts), "target_info": target.describe()})
    run.start_over(opts.fresh)
    exp = Experiment(run, target, fid_n=opts.fid_n, eval_data=opts.eval_data, progress=opts.progress,
                     baseline=baseline)
    settings = (_remote_settings(opts, target, baseline, ident["served_defense"]) if remote
                else _local_settings(exp, opts, families))
    if remote:
        run.decide(_check_budgets, run, opts, settings)
    attack = attack_config(opts, target_cfg["resolution"], target_cfg["channels"], opts.attack_kimg,
                           **knowledge_settings(opts, target_cfg))
    return DefendPlan(opts, target, baseline, families, ident, exp, settings, attack)


def _oracle(target: Target, opts: DefendOptions):
    return target.oracle(opts.queries, prior=opts.prior, seed=opts.seed)


def _remote_identity(opts: DefendOptions, target: Target, baseline: Target | None) -> tuple[dict, dict]:
    """Check a URL run before any query is bought: (the target's config, what its measured rows are keyed on).

    The server (and a baseline server) were opened with their keys, so a wrong URL or key failed already."""
    server = _oracle(target, opts)
    if opts.knowledge == "latents" and not server.accepts_latents:
        raise DataError(f"{opts.target}: this server does not accept latent codes; use --knowledge images")
    ids = {"target_sha256": server.model_id, "served_defense": server.defense or "unknown", "baseline": None,
           "baseline_sha256": None}
    if baseline is not None:
        shape, ids["baseline_sha256"] = (baseline.resolution, baseline.channels), baseline.model_id
        if opts.knowledge == "latents" and not baseline.accepts_latents:
            raise DataError(f"{opts.baseline}: the baseline server does not accept latent codes; use "
                            f"--knowledge images")
        if shape != (server.resolution, server.channels):
            raise ValueError(f"--baseline {opts.baseline} makes {shape[1]}x{shape[0]}x{shape[0]} images, the "
                             f"server {server.channels}x{server.resolution}x{server.resolution}: not the same model")
        ids["baseline"] = opts.baseline
    return server.config(), ids


def _check_budgets(run, opts: DefendOptions, settings: list[Setting]) -> None:
    """Every server key can still pay for what its query set lacks, before the first query is bought.

    Conservative: ids the key already paid for elsewhere would be replayed free, and are counted here."""
    for setting in settings:
        if not setting.remote:
            continue
        meta = queryset.read_meta(run.file(f"queries-{setting.name}"))
        need = max(0, opts.queries - (meta["count"] if meta else 0))
        left = setting.open().remaining
        if need > left:
            raise BudgetExceeded(f"{setting.target}: the key has {left} images left, the {setting.name} query "
                                 f"set needs {need} more (--queries {opts.queries})")


def _local_settings(exp, opts: DefendOptions, families: list[Family]) -> list[Setting]:
    """The undefended target, then every setting of every family, all applied in this process (on the one
    copy of the target the experiment holds)."""
    def setting(pipeline: DefensePipeline, family: Family | None = None, value=None) -> Setting:
        def oracle():
            return exp.oracle(opts.queries, prior=opts.prior, seed=opts.seed, **pipeline.oracle_hooks())

        spec = pipeline.spec()
        swept = family.swept if family else None
        return Setting(spec, slug(spec), opts.target, oracle, pipeline, family.label if family else BASELINE,
                       swept, redacted_value(swept, value))

    return [setting(DefensePipeline([]))] + [setting(s, f, f.values[i] if f.swept else None)
                                             for f in families for i, s in enumerate(f.settings)]


def _remote_settings(opts: DefendOptions, target: Target, baseline: Target | None,
                     served_spec: str) -> list[Setting]:
    """The baseline (when given), then what the server serves: one setting, its defense chosen by the owner."""
    settings = []
    if baseline is not None:
        settings.append(Setting(BASELINE, "baseline", opts.baseline, lambda: _oracle(baseline, opts),
                                remote=not baseline.in_process))
    settings.append(Setting(served_spec, SERVED, opts.target, lambda: _oracle(target, opts), family=SERVED,
                            remote=True))
    return settings
