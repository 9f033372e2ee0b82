"""Does a learned watermark survive model stealing better than the spread-spectrum mark? A measurement.

The shipped mark (`--defense watermark`) is a fixed keyed pattern in the DCT band; a converged copy carries
it at z ~ 3 and fine-tuning on 1,000 real images erases it (docs/results/ownership.md). This script tries
the other scheme the literature offers (an encoder/decoder pair trained to hide bits, in the spirit of Yu et
al., ICCV 2021) under the same budget, so the choice between them is made by measurement:

1. train an encoder (image, bits -> residual) and a decoder (image -> bits) on the owner's own samples; the
   residual is multiplied by the image and rescaled to the RMS the shipped mark spends on that image
   (``strength`` levels RMS on white), so both cost the same pixel energy;
2. serve 10,000 queries with the key's bits, train the default thief on them (80 kimg), and a second copy
   that is then fine-tuned on 1,000 real images;
3. decode 5,000 samples of each suspect, subtract the decoder's mean output on the owner's unmarked samples and
   score z = s . c / |c| with the key's signs s: the same Rademacher statistic as `faststeal verify`, so the
   p-value (rank among random sign vectors) is exact for a key the suspect never saw;
4. utility: FID(served, real) with and without the mark on the same 2,000 codes.

Every stage is stored in --out keyed by its settings and reused on a rerun (it resumes after an interruption).

    python experiments/learned_mark.py --key owner-demo-key --out runs/learned-mark --threads 1
    python experiments/learned_mark.py ... --innocent runs/verify-eval/members/fast-trained-on-10k-real-images/model.pt
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faststeal.fileio import atomic_write, write_json
from faststeal.ownership.detect import EXACT_DRAWS, exact_p_values, z_scores
from faststeal.ownership.pattern import key_signs
from faststeal.sampling import generate

TRAIN_SEED, REFERENCE_SEED, SAMPLE_SEED = 5, 11, 3


class Encoder(nn.Module):
    """(image in [-1, 1], bits in {-1, 1}) -> residual with RMS 1 per image (scaled by the caller)."""

    def __init__(self, channels: int, bits: int, resolution: int, width: int = 32):
        super().__init__()
        self.res = resolution
        self.embed = nn.Linear(bits, 16 * (resolution // 4) ** 2)
        self.net = nn.Sequential(
            nn.Conv2d(channels + 16, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        m = self.embed(bits).view(-1, 16, self.res // 4, self.res // 4)
        r = self.net(torch.cat([x, F.interpolate(m, size=self.res, mode="bilinear", align_corners=False)], 1))
        return r / r.pow(2).mean((1, 2, 3), keepdim=True).add(1e-8).sqrt()


class Decoder(nn.Module):
    def __init__(self, channels: int, bits: int, resolution: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * (resolution // 8) ** 2, bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def mark(encoder: Encoder, images: torch.Tensor, bits: torch.Tensor, strength: float, *, differentiable=False):
    """uint8-range images -> marked images x + change, rounded. The change is the residual times the image
    (black pixels carry nothing), rescaled per image to the RMS the shipped mark spends on it: strength times
    the RMS of x / 255. Without the rescaling the encoder moves its residual onto bright pixels and spends
    about twice the shipped mark's RMS (4.5 against 2.3 levels at strength 6, measured)."""
    x = images.float()
    change = encoder(to_unit(images), bits) * x / 255
    budget = strength * (x / 255).pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    change = change * budget / change.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-8)
    served = (x + change).clamp(0, 255)
    rounded = served.round()
    return served + (rounded - served).detach() if differentiable else rounded.to(torch.uint8)


def train_coder(samples: torch.Tensor, bits: int, strength: float, steps: int, seed: int, log=print):
    """Encoder and decoder trained jointly: the decoder reads random bits from marked, lightly noised images."""
    torch.manual_seed(seed)
    ch, res = samples.shape[1], samples.shape[-1]
    enc, dec = Encoder(ch, bits, res), Decoder(ch, bits, res)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(samples), (64,))
        b = torch.randint(0, 2, (64, bits)).float() * 2 - 1
        served = mark(enc, samples[idx], b, strength, differentiable=True)
        noisy = served + torch.randn_like(served) * torch.rand(64, 1, 1, 1) * 3   # 0-3 levels of noise
        loss = F.binary_cross_entropy_with_logits(dec(noisy / 127.5 - 1), (b + 1) / 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            with torch.no_grad():
                acc = (dec(noisy / 127.5 - 1).sign() == b).float().mean().item()
            log(f"coder step {step:5d}  loss {loss.item():.4f}  bit accuracy {acc:.3f}  "
                f"({time.perf_counter() - t0:.0f} s)")
    return enc.eval(), dec.eval()


@torch.no_grad()
def decoded_mean(decoder: Decoder, images: torch.Tensor) -> torch.Tensor:
    """Mean decoder logits over the images (float64, one per bit)."""
    return torch.cat([decoder(to_unit(images[i:i + 500])) for i in range(0, len(images), 500)]).double().mean(0)


def score(decoder: Decoder, images: torch.Tensor, reference: torch.Tensor, key: str) -> dict:
    c = decoded_mean(decoder, images) - reference
    s = key_signs(key, c.numel())
    z = float(z_scores(c, s[None])[0])
    p = float(exact_p_values(c, z, EXACT_DRAWS)[0])
    return {"z": round(z, 3), "p": p, "bit_agreement": float((c.sign() == s).double().mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="builtin:pggan-fmnist32")
    ap.add_argument("--key", required=True)
    ap.add_argument("--strength", type=float, default=6.0)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--kimg", type=float, default=80.0)
    ap.add_argument("--n", type=int, default=5000, help="samples of each suspect")
    ap.add_argument("--fid-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="the thief's seed (its queries, training, real subset)")
    ap.add_argument("--innocent", action="append", default=[], help="checkpoints never served the mark")
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--no-utility", action="store_true", help="skip the utility FIDs (they do not depend on --seed)")
    ap.add_argument("--fresh", action="store_true", help="delete the stored coder and thieves in --out first")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="runs/learned-mark")
    args = ap.parse_args(argv)
    for name in ("strength", "bits", "steps", "queries", "kimg", "n", "fid_n"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    for path in args.innocent:
        if not Path(path).is_file():
            ap.error(f"--innocent {path}: no such checkpoint file")
    if args.threads:
        torch.set_num_threads(args.threads)

    from faststeal.attack.thief import train_attack
    from faststeal.checkpoint import load_generator
    from faststeal.data import ImageSet, real_data_for
    from faststeal.evaluate import fid, generator_stats, image_stats, real_stats
    from faststeal.report import RunFolder
    from faststeal.runs.experiment import Experiment
    from faststeal.runs.options import AttackOptions, attack_config, knowledge_settings

    out = Path(args.out)
    if args.fresh:                      # a stale coder is retrained anyway; stale thieves are refused without this
        for name in ("coder.pt", "thief.pt", "thief-finetuned.pt"):
            (out / name).unlink(missing_ok=True)
    folder = RunFolder(out, "learned-mark", {k: v for k, v in vars(args).items() if k not in ("key", "innocent")})
    exp = Experiment(folder, args.target, fid_n=args.fid_n, progress=True)
    gen, cfg = exp.loaded.generator, exp.config
    coder_key = {"target": exp.loaded.model_id, "strength": args.strength, "bits": args.bits, "steps": args.steps,
                 "budget": "rms of the shipped mark per image"}

    # 1. the coder, trained on the owner's own samples
    coder_path = out / "coder.pt"
    stored = torch.load(coder_path, weights_only=True) if coder_path.exists() else None
    ch, res = cfg["channels"], cfg["resolution"]
    enc, dec = Encoder(ch, args.bits, res), Decoder(ch, args.bits, res)
    if stored and stored["key"] == coder_key:
        enc.load_state_dict(stored["encoder"])
        dec.load_state_dict(stored["decoder"])
        enc.eval(), dec.eval()
    else:
        enc, dec = train_coder(generate(gen, 20000, seed=TRAIN_SEED), args.bits, args.strength, args.steps, 0)
        state = {"encoder": enc.state_dict(), "decoder": dec.state_dict(), "key": coder_key}
        atomic_write(coder_path, lambda f: torch.save(state, f))
    bits = key_signs(args.key, args.bits).float()
    reference = decoded_mean(dec, generate(gen, args.n, seed=REFERENCE_SEED))

    def serve(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([mark(enc, images[i:i + 500], bits.expand(len(images[i:i + 500]), -1), args.strength)
                              for i in range(0, len(images), 500)])

    results = {}
    # 2. served queries and the thieves
    queries = exp.oracle(args.queries, seed=args.seed).query(args.queries)
    served = serve(queries)
    results["served images"] = score(dec, served[:args.n], reference, args.key)
    results["served images, wrong key"] = score(dec, served[:args.n], reference, args.key + "-wrong")
    a = AttackOptions(target=args.target, queries=args.queries, attack_kimg=args.kimg, seed=args.seed, fid_n=args.fid_n,
                      progress=True)
    acfg = attack_config(a, res, ch, args.kimg, **knowledge_settings(a, cfg))
    data = ImageSet(served, None, "learned-mark:" + hashlib.sha256(served.numpy().tobytes()).hexdigest(), "served")
    trained = train_attack(acfg, data, out / "thief.pt", progress=True)
    thief = trained["checkpoint"]
    suspects = {f"stolen: fast, images, {args.queries}, seed {args.seed}": (thief, trained["train_seconds"])}
    if not args.no_finetune:
        real = real_data_for(cfg, None)
        idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(7 + args.seed))[:1000]
        subset = ImageSet(real.images[idx], None, f"{real.fingerprint}:subset:{args.seed}:1000", "real")
        ft = attack_config(a, res, ch, args.kimg / 3, grow=False, seed_offset=1)
        tuned = train_attack(ft, subset, out / "thief-finetuned.pt", init_from=thief, progress=True)
        suspects["careful: + fine-tune on 1K real"] = (tuned["checkpoint"], tuned["train_seconds"])
    suspects["innocent: the owner's own target"] = (args.target, 0.0)
    for path in args.innocent:
        suspects[f"innocent: {path}"] = (path, 0.0)

    # 3. every suspect decoded
    for name, (ckpt, seconds) in suspects.items():
        model = gen if ckpt == args.target else load_generator(ckpt)
        results[name] = {**score(dec, generate(model, args.n, seed=SAMPLE_SEED), reference, args.key),
                         "train_seconds": round(seconds or 0.0, 1)}
        print(f"{name:<60} z {results[name]['z']:6.2f}  p {results[name]['p']:.4g}")

    # 4. utility at the same codes, and the stolen copy's fidelity
    write_json(out / "results.json", results)
    if not args.no_utility:
        plain = exp.oracle(args.fid_n, seed=0).query(args.fid_n)
        real = real_stats(real_data_for(cfg, None), args.fid_n, True)
        results["utility"] = {"unmarked": fid(image_stats(plain, "served"), real),
                              "marked": fid(image_stats(serve(plain), "served marked"), real),
                              "rms_pixel_change": float((serve(plain).float() - plain.float()).pow(2).mean().sqrt())}
        results["utility"]["cost"] = results["utility"]["marked"] - results["utility"]["unmarked"]
        write_json(out / "results.json", results)
    target_stats = generator_stats(exp.loaded, args.fid_n, name="target", progress=True, cache=True)
    for name, (ckpt, _) in suspects.items():
        if not name.startswith("innocent"):
            results[name]["fidelity"] = fid(generator_stats(ckpt, args.fid_n, name=name), target_stats)
    write_json(out / "results.json", results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
