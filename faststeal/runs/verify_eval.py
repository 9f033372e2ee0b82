"""The population test of ownership verification: many copies stolen from the marked target, copies made by
careful thieves, and innocent models, each verified with the owner's key.

Each member is one trained model, kept in ``<out>/members/<name>/`` with its checkpoint and a result keyed on
every setting it depends on; a rerun skips finished members and resumes the unfinished one, so the plan can be
run a piece at a time (``limit``). The owner's key never reaches a file: results and config hold a digest.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from faststeal.attack import queryset
from faststeal.attack.thief import train_attack
from faststeal.checkpoint import load_generator
from faststeal.data import ImageSet, real_data_for
from faststeal.defense import parse_pipeline
from faststeal.errors import OptionError
from faststeal.evaluate import fid, generator_stats, image_stats, real_stats
from faststeal.fileio import write_json
from faststeal.ownership.detect import (
    EXACT_DRAWS,
    MIN_IMAGES,
    STATISTIC,
    STOLEN_P,
    detect,
    detect_many_keys,
    moment_image,
    normal_sf,
)
from faststeal.ownership.pattern import Band
from faststeal.report import RunFolder
from faststeal.sampling import generate

from .experiment import Experiment
from .options import AttackOptions, FromParams, at_least, attack_config, knowledge_settings, positive
from .verify_eval_report import served_picture, statistic_plot, write_report

GROUPS = ("stolen", "careful", "innocent")
SUSPECT_SEED, REFERENCE_SEED = 3, 11   # the suspects' verification samples; the owner's reference sample


@dataclass(frozen=True)
class Member:
    """One model of the population and how it came to be."""
    group: str                  # stolen | careful | innocent
    label: str
    marked: bool = True         # the queries were served with the owner's mark
    thief: str = ""             # the thief's own processing of what it bought, an image-defense spec
    knowledge: str = "images"
    attack: str = "fast"
    queries: int = 10_000
    seed: int = 0
    data: str = "queries"       # queries | real (an innocent trained on the real data) | target (the owner's model)
    finetune_real: int = 0      # > 0: after training on the queries, fine-tune on this many real images
    finetune_kimg: float = 0.0  # length of that fine-tuning (0: a third of the training length)
    fidelity: bool = False      # also measure FID(copy, target)
    longer: float = 1.0         # training length as a multiple of the population's (EvalOptions.kimg)

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-").lower()


def default_plan() -> list[Member]:
    """The population, most informative first (a run cut short still answers the main questions)."""
    return [
        Member("innocent", "the owner's own target (never saw the mark)", marked=False, data="target"),
        Member("stolen", "fast, images, 10K, seed 0", fidelity=True),
        Member("innocent", "fast, images, 10K, unmarked target", marked=False, fidelity=True),
        Member("stolen", "fast, latents, 10K, seed 0", knowledge="latents"),
        Member("innocent", "fast, trained on 10K real images", marked=False, data="real"),
        Member("careful", "fast, images, 10K, thief blurs sigma=1", thief="blur:sigma=1"),
        Member("careful", "fast, images, 10K, thief JPEGs quality=50", thief="jpeg:quality=50"),
        Member("stolen", "pggan, images, 10K, seed 0", attack="pggan"),
        Member("stolen", "fast, images, 1K, seed 0", queries=1000),
        Member("careful", "fast, images, 10K, thief adds noise sigma=0.05", thief="noise:sigma=0.05"),
        Member("stolen", "fast, latents, 1K, seed 0", knowledge="latents", queries=1000),
        Member("innocent", "fast, latents, 10K, unmarked target", marked=False, knowledge="latents"),
        Member("innocent", "pggan, images, 10K, unmarked target", marked=False, attack="pggan"),
        Member("stolen", "fast, images, 10K, seed 1", seed=1),
        Member("careful", "fast, images, 10K, + fine-tune on 1K real", finetune_real=1000),
        Member("stolen", "pggan, latents, 10K, seed 0", attack="pggan", knowledge="latents"),
        Member("careful", "fast, images, 10K, thief blurs sigma=2", thief="blur:sigma=2"),
        Member("careful", "fast, images, 10K, thief JPEGs quality=20", thief="jpeg:quality=20"),
        Member("innocent", "fast, trained on 10K real images, seed 1", marked=False, data="real", seed=1),
        Member("stolen", "pggan, latents, 10K, seed 1", attack="pggan", knowledge="latents", seed=1),
        Member("stolen", "fast, images, 1K, seed 1", queries=1000, seed=1),
        Member("stolen", "pggan, images, 10K, seed 1", attack="pggan", seed=1),
        Member("careful", "fast, images, 10K, + fine-tune on 1K real, 2 kimg", finetune_real=1000, finetune_kimg=2,
               fidelity=True),
        Member("careful", "fast, images, 10K, + fine-tune on 1K real, 8 kimg", finetune_real=1000, finetune_kimg=8,
               fidelity=True),
        Member("stolen", "pggan, latents, 10K, seed 1, trained 3x longer", attack="pggan", knowledge="latents",
               seed=1, longer=3, fidelity=True),
        Member("stolen", "pggan, images, 10K, seed 1, trained 3x longer", attack="pggan", seed=1, longer=3,
               fidelity=True),
        Member("stolen", "pggan, latents, 10K, seed 0, trained 3x longer", attack="pggan", knowledge="latents",
               longer=3, fidelity=True),
        Member("stolen", "pggan, images, 10K, seed 0, trained 3x longer", attack="pggan", longer=3, fidelity=True),
        Member("innocent", "pggan, latents, 10K, unmarked target, trained 3x longer", marked=False,
               attack="pggan", knowledge="latents", longer=3, fidelity=True),
    ]


@dataclass
class EvalOptions(FromParams):
    target: str = "builtin:pggan-fmnist32"
    key: str = ""
    strength: float = 4.0
    low: float = 1.0
    high: float = 8.0
    kimg: float = 80.0              # training length of every member (extract's default for chosen latents)
    verify_n: int = 5000            # samples of each member for the detector (and of the reference)
    null_keys: int = 1000           # wrong keys per member
    fid_n: int = 1000               # images per side of the fidelity FIDs (members with fidelity=True)
    utility_n: int = 2000           # images per side of the utility FIDs (served with and without the mark)
    limit: int | None = None        # only the first N members of the plan
    members: tuple[str, ...] = ()   # only these members (names as in members/); others stay as stored
    measure_utility: bool = True    # FID of served images with and without the mark (2 x fid_n Inception passes)
    out: str = "runs/verify-eval"
    progress: bool = False          # bars for queries, training and FIDs (the CLI turns them on)
    plan: list[Member] = field(default_factory=default_plan)

    def check(self) -> None:
        """Refuse a population that cannot be built or decided, before any model trains."""
        unknown = [name for name in self.members if name not in {m.name for m in self.plan}]
        if unknown:
            raise OptionError(f"no member named {', '.join(unknown)}; see --list-members", "--member")
        if not self.key:
            raise OptionError("give the owner's key, e.g. --key SECRET", "--key")
        positive(self.strength, "--strength")
        positive(self.kimg, "--kimg")
        at_least(self.verify_n, MIN_IMAGES, "--verify-n")
        at_least(self.limit, 1, "--limit")
        at_least(self.null_keys, 1, "--null-keys")
        at_least(self.fid_n, 2, "--fid-n")
        at_least(self.utility_n, 2, "--utility-n")

    def key_digest(self) -> str:
        return hashlib.blake2b(self.key.encode(), digest_size=4, person=b"fs-spec").hexdigest()

    def serving(self, m: Member) -> str:
        """The pipeline the thief's training images went through: the owner's mark, then the thief's own step."""
        parts = [f"watermark:key={self.key},strength={self.strength:g},low={self.low:g},high={self.high:g}"] \
            if m.marked else []
        return "+".join(parts + ([m.thief] if m.thief else [])) or "noise:sigma=0"


def member_key(opts: EvalOptions, m: Member, target_sha: str) -> dict:
    """Everything a member's stored result depends on (the key only as a digest; the mark's strength only when
    the member was served the mark, so innocent models are shared by runs at several strengths)."""
    member = {k: v for k, v in asdict(m).items() if k not in ("longer", "finetune_kimg")}  # as lengths used, below
    kimg = training_kimg(opts, m)
    key = {"member": member, "target_sha256": target_sha, "key": opts.key_digest(), "band": [opts.low, opts.high],
           "strength": opts.strength if m.marked else None, "kimg": kimg, "verify_n": opts.verify_n,
           "null_keys": opts.null_keys, "fid_n": opts.fid_n if m.fidelity else None,
           "p_value": f"exact over {EXACT_DRAWS} draws", "statistic": STATISTIC}
    if m.finetune_real:
        key["finetune_kimg"] = finetune_kimg(m, kimg)
    return key


def training_kimg(opts: EvalOptions, m: Member) -> float:
    return opts.kimg * m.longer


def finetune_kimg(m: Member, kimg: float) -> float:
    return m.finetune_kimg or kimg / 3


def member_folder(opts: EvalOptions, m: Member) -> str:
    return f"{m.name}-s{opts.strength:g}" if m.marked else m.name


def _training_set(exp, opts: EvalOptions, m: Member, folder: Path) -> ImageSet:
    target_cfg = exp.config

    if m.data == "real":
        real = real_data_for(target_cfg, None)
        idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(m.seed + 101))[:m.queries]
        return ImageSet(real.images[idx], None, f"{real.fingerprint}:subset:{m.seed}:{m.queries}", "real")
    pipeline = parse_pipeline(opts.serving(m), seed=m.seed)
    oracle = exp.oracle(m.queries, seed=m.seed, **pipeline.oracle_hooks())
    queryset.collect(oracle, folder / "queries", m.queries, target=opts.target, progress=opts.progress,
                     knowledge=m.knowledge)
    q = queryset.load(folder / "queries", limit=m.queries)
    return ImageSet(q.images, None, f"{q.fingerprint}:served:{pipeline.spec()}", q.source, codes=q.codes)


def _train(exp, opts: EvalOptions, m: Member, folder: Path) -> tuple[Path, float]:
    """Train (or resume, or reuse) the member's model; returns its checkpoint and training seconds."""
    target_cfg = exp.config
    res, ch = target_cfg["resolution"], target_cfg["channels"]
    data = _training_set(exp, opts, m, folder)
    kimg = training_kimg(opts, m)
    a = AttackOptions(target=opts.target, attack=m.attack, queries=m.queries, attack_kimg=kimg,
                      knowledge=m.knowledge, seed=m.seed, fid_n=opts.fid_n, progress=opts.progress)
    cfg = attack_config(a, res, ch, kimg, **knowledge_settings(a, target_cfg))
    t0 = time.perf_counter()
    ckpt = train_attack(cfg, data, folder / "model.pt", progress=opts.progress)["checkpoint"]
    if m.finetune_real:
        real = real_data_for(target_cfg, None)
        idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(m.seed + 7))[:m.finetune_real]
        subset = ImageSet(real.images[idx], None, f"{real.fingerprint}:subset:{m.seed}:{m.finetune_real}", "real")
        latent = knowledge_settings(a, target_cfg).get("latent_dim")
        ft = attack_config(a, res, ch, finetune_kimg(m, kimg), grow=False, seed_offset=1, latent_dim=latent)
        ckpt = train_attack(ft, subset, folder / "model-finetuned.pt", init_from=ckpt,
                            progress=opts.progress)["checkpoint"]
    return ckpt, time.perf_counter() - t0


def evaluate_member(exp, opts: EvalOptions, m: Member, folder: Path, reference: torch.Tensor) -> dict:
    """Build (train or reuse) one member's model and verify it with the owner's key and many wrong keys."""
    t0 = time.perf_counter()
    if m.data == "target":
        model, ckpt, train_s = exp.loaded.generator, exp.loaded, 0.0
    else:
        ckpt, train_s = _train(exp, opts, m, folder)
        model = load_generator(ckpt)
    images = generate(model, opts.verify_n, seed=SUSPECT_SEED)
    band = Band(opts.low, opts.high)
    d = detect(images, opts.key, band, reference, exact_draws=EXACT_DRAWS)
    null_z, null_p = detect_many_keys(images, [f"wrong-{i}" for i in range(opts.null_keys)], band, reference,
                                      exact_draws=EXACT_DRAWS)
    row = {"group": m.group, "label": m.label, "marked": m.marked, "thief": m.thief, "knowledge": m.knowledge,
           "attack": m.attack, "queries": m.queries, "seed": m.seed, "data": m.data, "finetune_real": m.finetune_real,
           "z": d.z, "p_value": d.p_value, "detected": d.p_value < STOLEN_P,
           "p_normal": d.p_normal, "null_z": [round(float(v), 4) for v in null_z],
           "null_p": [float(v) for v in null_p], "train_seconds": round(train_s, 1)}
    if m.fidelity:
        target_stats = generator_stats(exp.loaded, opts.fid_n, name="target", progress=opts.progress, cache=True)
        row["fidelity"] = fid(generator_stats(ckpt, opts.fid_n, name="copy", progress=opts.progress), target_stats)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def utility_key(opts: EvalOptions, target_sha: str) -> dict:
    return {"target_sha256": target_sha, "key": opts.key_digest(), "strength": opts.strength,
            "band": [opts.low, opts.high], "n": opts.utility_n}


def utility(exp, opts: EvalOptions) -> dict:
    """FID(served, real) with and without the mark, on the same fid_n codes of the owner's prior."""
    return exp.cached(f"utility-s{opts.strength:g}.json", utility_key(opts, exp.loaded.model_id),
                      lambda: _measure_utility(exp, opts))


def _measure_utility(exp, opts: EvalOptions) -> dict:
    t0 = time.perf_counter()
    n = opts.utility_n
    real = real_stats(real_data_for(exp.config, None), n, opts.progress)
    plain = exp.oracle(n, seed=0).query(n)
    mark = parse_pipeline(opts.serving(Member("stolen", "utility")))
    marked = exp.oracle(n, seed=0, **mark.oracle_hooks()).query(n)
    plain_key = {"target_sha256": exp.loaded.model_id, "n": n}
    unmarked = exp.cached("utility-unmarked.json", plain_key,      # shared by runs at several strengths
                          lambda: fid(image_stats(plain, "served", progress=opts.progress), real))
    marked_fid = fid(image_stats(marked, "served marked", progress=opts.progress), real)
    row = {"fid_unmarked": unmarked, "fid_marked": marked_fid,
           "n": n, "max_pixel_change": int((marked.int() - plain.int()).abs().max()),
           "rms_pixel_change": float((marked.float() - plain.float()).pow(2).mean().sqrt())}
    row["cost"] = row["fid_marked"] - row["fid_unmarked"]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _null_p(row: dict) -> list[float]:
    """The wrong keys' p-values of a member: exact where stored, else (rows from before) the normal tail."""
    return row.get("null_p") or [normal_sf(z) for z in row["null_z"]]


def summarise(rows: list[dict]) -> dict:
    """TPR at the calibrated thresholds, innocent false positives, and the wrong-key null over all members."""
    out = {}
    for alpha in (1e-2, 1e-3):
        for group in ("stolen", "careful"):
            g = [r for r in rows if r["group"] == group]
            out[f"tpr_{group}_at_{alpha:g}"] = (sum(r["p_value"] < alpha for r in g) / len(g)) if g else None
        inn = [r for r in rows if r["group"] == "innocent"]
        out[f"fpr_innocent_at_{alpha:g}"] = (sum(r["p_value"] < alpha for r in inn) / len(inn)) if inn else None
    null_p = [p for r in rows for p in _null_p(r)]
    if null_p:
        from scipy.stats import kstest  # on use: scipy.stats adds ~0.9 s to every command's start

        out["wrong_key_tests"] = len(null_p)
        out["wrong_key_ks_p"] = float(kstest(null_p, "uniform").pvalue)
        out["wrong_key_fpr_at_0.01"] = sum(p < 1e-2 for p in null_p) / len(null_p)
        out["wrong_key_fpr_at_0.001"] = sum(p < 1e-3 for p in null_p) / len(null_p)
        out["wrong_key_ks_p_per_member_min"] = min(
            float(kstest(_null_p(r), "uniform").pvalue) for r in rows)
    return out


def run_eval(opts: EvalOptions, log=print) -> dict:
    """Build and verify the plan's members (resumably); write results.json, report.md and the pictures."""
    if not opts.key:
        raise ValueError("give the owner's key")

    out = Path(opts.out)
    start = time.perf_counter()
    config = {k: v for k, v in asdict(opts).items() if k not in ("key", "plan")}
    folder = RunFolder(out, "verify-eval", {**config, "key": opts.key_digest(), "plan": [asdict(m) for m in opts.plan]})
    exp = Experiment(folder, opts.target, fid_n=opts.fid_n, progress=opts.progress)
    target_sha = exp.loaded.model_id
    reference = []          # the owner's moment image, sampled only if some member has to be built

    def owner_reference() -> torch.Tensor:
        if not reference:
            reference.append(moment_image(generate(exp.loaded.generator, opts.verify_n, seed=REFERENCE_SEED)))
        return reference[0]

    plan = opts.plan[: opts.limit] if opts.limit is not None else opts.plan
    names = [m.name for m in plan]
    if len(set(names)) != len(names):
        raise ValueError("two members of the plan share a name")
    if opts.members:
        plan = [m for m in plan if m.name in opts.members]
    rows = []
    for i, m in enumerate(plan):
        where = f"members/{member_folder(opts, m)}"

        def build(i=i, m=m, where=where) -> dict:
            log(f"[{i + 1}/{len(plan)}] building {m.group}: {m.label}")
            return evaluate_member(exp, opts, m, exp.file(where), owner_reference())

        row = exp.cached(f"{where}/result.json", member_key(opts, m, target_sha), build)
        row["kimg"] = training_kimg(opts, m)       # held by the key the stored row matched
        log(f"[{i + 1}/{len(plan)}] {m.group:<8} {m.label:<48} z {row['z']:7.2f}  p {row['p_value']:.2e}"
            f"  ({row['seconds']:.0f} s)")
        rows.append(row)
    summary = summarise(rows)
    result = {"options": {**config, "key": opts.key_digest()}, "summary": summary, "members": rows,
              "not_done": [m.label for m in opts.plan if m not in plan],
              "wall_seconds_this_run": round(time.perf_counter() - start, 1)}
    if opts.measure_utility:
        result["utility"] = utility(exp, opts)
    else:                                          # a stored measurement of this setting still counts
        result["utility"] = exp.stored(f"utility-s{opts.strength:g}.json", utility_key(opts, target_sha))
    write_json(out / f"results-s{opts.strength:g}.json", result)

    statistic_plot(rows, out / f"statistic-s{opts.strength:g}.png")
    served_picture(exp.loaded, opts.serving(Member("stolen", "picture")), out / f"served-s{opts.strength:g}.png")
    write_report(result, result.get("utility"), out)
    return result
