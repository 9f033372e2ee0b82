"""Spectral-norm power iteration for many layers in one Triton launch.

One program per layer: program l reads its weight through a table of addresses (so weights are never
copied into one buffer), runs n_iter rounds of v = normalize(W^T u), u = normalize(W v) with W viewed as
(out, in*kh*kw), then v = normalize(W^T u), and writes u_new, v and sigma = u^T W v = |W^T u|. The SNGAN
discriminator thus pays one launch per forward for all its layers instead of ~4 small kernels per layer per round.

The gradient follows Miyato et al.: u and v are constants, so d sigma / d W = u v^T; the division
weight / sigma is left to torch autograd.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import launch_settings
from .triton_conv import FP_FUSION, Launch, device_arch


@triton.jit
def _wt_u(w, u, v, R, C, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """v = W^T u (unnormalised, stored); returns |v|^2."""
    ar = tl.arange(0, BLOCK_R)
    ac = tl.arange(0, BLOCK_C)
    v_sq = 0.0
    for c0 in range(0, C, BLOCK_C):
        oc = c0 + ac
        cm = oc < C
        acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for r0 in range(0, R, BLOCK_R):
            orr = r0 + ar
            rm = orr < R
            uu = tl.load(u + orr, mask=rm, other=0.0)
            wt = tl.load(w + orr.to(tl.int64)[:, None] * C + oc[None, :], mask=rm[:, None] & cm[None, :], other=0.0)
            acc += tl.sum(wt * uu[:, None], axis=0)
        tl.store(v + oc, acc, mask=cm)
        v_sq += tl.sum(acc * acc, axis=0)
    return v_sq


@triton.jit
def _scale(p, n, factor, BLOCK: tl.constexpr):
    for o in range(0, n, BLOCK):
        offs = o + tl.arange(0, BLOCK)
        m = offs < n
        tl.store(p + offs, tl.load(p + offs, mask=m, other=0.0) * factor, mask=m)


@triton.jit(do_not_specialize=["rounds"])
def _sn_power_multi(w_tab, rows_ptr, cols_ptr, u_off_ptr, v_off_ptr, u_ptr, v_ptr, sigma_ptr,
                    rounds, eps, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    w = tl.load(w_tab + pid).to(tl.pointer_type(tl.float32))
    R = tl.load(rows_ptr + pid)
    C = tl.load(cols_ptr + pid)
    u = u_ptr + tl.load(u_off_ptr + pid)  # holds u on entry, u_new on exit
    v = v_ptr + tl.load(v_off_ptr + pid)  # scratch; holds the normalised v on exit
    ar = tl.arange(0, BLOCK_R)
    ac = tl.arange(0, BLOCK_C)
    for _ in range(rounds):
        v_sq = _wt_u(w, u, v, R, C, BLOCK_R, BLOCK_C)
        tl.debug_barrier()
        inv_v = 1.0 / tl.maximum(tl.sqrt(v_sq), eps)
        # u = W v / |W v| with v = v_raw * inv_v
        u_sq = 0.0
        for r0 in range(0, R, BLOCK_R):
            orr = r0 + ar
            rm = orr < R
            acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
            for c0 in range(0, C, BLOCK_C):
                oc = c0 + ac
                cm = oc < C
                vv = tl.load(v + oc, mask=cm, other=0.0)
                wt = tl.load(w + orr.to(tl.int64)[:, None] * C + oc[None, :], mask=rm[:, None] & cm[None, :],
                             other=0.0)
                acc += tl.sum(wt * vv[None, :], axis=1)
            acc = acc * inv_v
            tl.store(u + orr, acc, mask=rm)
            u_sq += tl.sum(acc * acc, axis=0)
        tl.debug_barrier()
        _scale(u, R, 1.0 / tl.maximum(tl.sqrt(u_sq), eps), BLOCK_R)
        tl.debug_barrier()
    # final v = normalize(W^T u); sigma = u^T W v = |W^T u|^2 / max(|W^T u|, eps), no extra pass over W
    v_sq = _wt_u(w, u, v, R, C, BLOCK_R, BLOCK_C)
    tl.debug_barrier()
    v_norm = tl.maximum(tl.sqrt(v_sq), eps)
    _scale(v, C, 1.0 / v_norm, BLOCK_C)
    tl.store(sigma_ptr + pid, v_sq / v_norm)


def sn_launch(arch: int | None) -> Launch:
    """The one launch of the power iteration: its settings do not depend on the layer shapes."""
    s = launch_settings.spectral_norm(arch)
    return Launch(_sn_power_multi, dict(BLOCK_R=s["BLOCK_R"], BLOCK_C=s["BLOCK_C"]),
                  dict(num_warps=s["num_warps"], num_stages=s["num_stages"], enable_fp_fusion=FP_FUSION))


class _Sigma(torch.autograd.Function):
    """sigma = u^T W v computed by the kernel; backward treats u and v as constants (Miyato et al.)."""

    @staticmethod
    def forward(ctx, weight, sigma, u, v):
        ctx.save_for_backward(u, v)
        ctx.shape = weight.shape
        return sigma.clone()

    @staticmethod
    def backward(ctx, g):
        u, v = ctx.saved_tensors
        return (g * torch.outer(u, v)).reshape(ctx.shape).to(g.dtype), None, None, None


def spectral_norm_multi(weights, us, *, n_iter=1, eps=1e-12, update_u=True):
    """Triton version of reference.spectral_norm_multi: one launch for every layer."""
    if len(weights) != len(us):
        raise ValueError(f"got {len(weights)} weights but {len(us)} u vectors")
    if not weights:
        return [], [], []
    device = weights[0].device
    mats = [w.detach().reshape(w.shape[0], -1).to(torch.float32).contiguous() for w in weights]
    for m, u in zip(mats, us):
        if u.shape != (m.shape[0],):
            raise ValueError(f"u has shape {tuple(u.shape)}, expected ({m.shape[0]},)")
    rows = [m.shape[0] for m in mats]
    cols = [m.shape[1] for m in mats]
    u_off = [0]
    v_off = [0]
    for r, c in zip(rows, cols):
        u_off.append(u_off[-1] + r)
        v_off.append(v_off[-1] + c)
    u_buf = torch.cat([u.detach().to(torch.float32).reshape(-1) for u in us])
    v_buf = torch.empty(v_off[-1], device=device, dtype=torch.float32)
    sig = torch.empty(len(mats), device=device, dtype=torch.float32)
    i64 = dict(device=device, dtype=torch.int64)
    w_tab = torch.tensor([m.data_ptr() for m in mats], **i64)
    launch = sn_launch(device_arch(device))
    launch.kernel[(len(mats),)](
        w_tab, torch.tensor(rows, **i64), torch.tensor(cols, **i64), torch.tensor(u_off[:-1], **i64),
        torch.tensor(v_off[:-1], **i64), u_buf, v_buf, sig, int(n_iter) if update_u else 0, float(eps),
        **launch.constexprs, **launch.options)
    outs, sigmas, u_news = [], [], []
    for i, w in enumerate(weights):
        u_new = u_buf[u_off[i]:u_off[i + 1]].to(us[i].dtype)
        v = v_buf[v_off[i]:v_off[i + 1]]
        sigma = _Sigma.apply(w, sig[i].to(w.dtype), u_new.to(w.dtype), v.to(w.dtype))
        outs.append(w / sigma)
        sigmas.append(sigma)
        u_news.append(u_new)
    return outs, sigmas, u_news


def spectral_norm(weight, u, *, n_iter=1, eps=1e-12, update_u=True):
    """Triton version of reference.spectral_norm (a one-layer spectral_norm_multi)."""
    outs, sigmas, u_news = spectral_norm_multi([weight], [u], n_iter=n_iter, eps=eps, update_u=update_u)
    return outs[0], sigmas[0], u_news[0]
