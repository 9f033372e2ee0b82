"""Train a DCGAN on a 64x64 image folder and save its generator as TorchScript: a target faststeal did not build.

The architecture is the one the PyTorch DCGAN tutorial publishes (codes (N, nz, 1, 1), transposed
convolutions with BatchNorm and ReLU, tanh output; a strided-convolution discriminator with LeakyReLU),
written here at a width set by ``--width`` (the tutorial uses 64; 32 trains four times faster on a CPU).
Loss: the non-saturating GAN loss, Adam(2e-4, 0.5, 0.999), as in the tutorial. The result is opened by
faststeal like any user's file (``faststeal info dcgan.ts`` probes it): nothing of faststeal's own
model code is inside. Training resumes from ``OUT.state`` after an interruption. Run:

    python scripts/icons64.py --out data/icons64
    python scripts/dcgan_target.py --data data/icons64 --epochs 40 --out dcgan-icons64.ts
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from faststeal.data import DataError, load_dataset, to_float
from faststeal.fileio import atomic_write
from faststeal.models.dcgan import init_weights  # the DCGAN paper's initialisation (training only)


def generator(nz: int, width: int, channels: int) -> nn.Sequential:
    """(N, nz, 1, 1) -> (N, channels, 64, 64) in [-1, 1]: 4 -> 8 -> 16 -> 32 -> 64 px."""
    w = width
    return nn.Sequential(
        nn.ConvTranspose2d(nz, w * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(w * 8), nn.ReLU(True),
        nn.ConvTranspose2d(w * 8, w * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 4), nn.ReLU(True),
        nn.ConvTranspose2d(w * 4, w * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 2), nn.ReLU(True),
        nn.ConvTranspose2d(w * 2, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
        nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Tanh())


def discriminator(width: int, channels: int) -> nn.Sequential:
    """(N, channels, 64, 64) -> one logit per image."""
    w = width
    return nn.Sequential(
        nn.Conv2d(channels, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(w, w * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(w * 2, w * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(w * 4, w * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(w * 8), nn.LeakyReLU(0.2, True),
        nn.Conv2d(w * 8, 1, 4, 1, 0, bias=False), nn.Flatten())


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="image folder (or any faststeal data spec) fitted to 64x64")
    p.add_argument("--out", required=True, help="TorchScript file to write (the trainer's state goes to OUT.state)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--width", type=int, default=32, help="base feature width (the tutorial's ngf/ndf is 64)")
    p.add_argument("--nz", type=int, default=100, help="code size (the tutorial's nz)")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    for name in ("epochs", "width", "nz", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_dataset(args.data, resolution=64, channels=args.channels)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out, state_path = Path(args.out), Path(args.out + ".state")
    torch.manual_seed(args.seed)
    g, d = generator(args.nz, args.width, args.channels), discriminator(args.width, args.channels)
    g.apply(init_weights)
    d.apply(init_weights)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(args.seed)
    first_epoch, seconds = 0, 0.0
    settings = {k: getattr(args, k) for k in ("width", "nz", "channels", "batch", "seed")}
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        if state["settings"] != settings or state["data"] != data.fingerprint:
            print(f"error: {state_path} was trained with other settings or data; remove it or change --out",
                  file=sys.stderr)
            return 2
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        first_epoch, seconds = state["epoch"], state["seconds"]
        print(f"resuming after epoch {first_epoch} ({seconds / 60:.1f} min of training)")
    images = data.images
    steps = len(images) // args.batch
    for epoch in range(first_epoch, args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(images), generator=rng)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr)
        for i in bar:
            real = to_float(images[order[i * args.batch:(i + 1) * args.batch]])
            z = torch.randn(args.batch, args.nz, 1, 1, generator=rng)
            fake = g(z)
            loss_d = (F.softplus(-d(real)) + F.softplus(d(fake.detach()))).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-d(fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
        seconds += time.perf_counter() - start
        state = {"settings": settings, "data": data.fingerprint, "g": g.state_dict(), "d": d.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng.get_state(),
                 "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "seconds": seconds}
        atomic_write(state_path, lambda f, s=state: torch.save(s, f))
        print(f"epoch {epoch + 1}/{args.epochs}: D {loss_d.item():.3f}, G {loss_g.item():.3f}, "
              f"{seconds / 60:.1f} min", file=sys.stderr)
    g.eval()
    traced = torch.jit.trace(g, torch.randn(1, args.nz, 1, 1))
    atomic_write(out, lambda f: torch.jit.save(traced, f))
    print(f"{out}: DCGAN generator, codes (N, {args.nz}, 1, 1), {args.epochs} epochs on {len(images)} images, "
          f"{seconds / 60:.1f} min of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
