"""Fused equalized-LR convolution in Triton: one implicit-GEMM kernel per forward.

The kernel computes, for output pixels m = (n, oh, ow) and output channels co,

    z[m, co] = he_scale * sum_{c, ky, kx} x_eff[n, c, oh*S + ky - P, ow*S + kx - P] * W_eff[co, c, ky, kx]

and then bias, leaky ReLU, gain and pixel norm in registers before the single store. Why it is fused:

* he_scale multiplies the accumulator, so the scaled weight is never materialised.
* up=2 (nearest) is an address computation: x_eff[i] = x[i // 2]; the upsampled tensor never exists.
* down=2 (2x2 average after the conv) is folded into the weight: conv-then-average equals one conv with
  the box-filtered kernel W_eff (size k+S, stride 2S). This does 2.25x fewer MACs for k=3 than
  conv-then-pool; the kernel builds W_eff taps on the fly from four shifted loads of W.

Linear layers are the same kernel on 1x1 images. The backward is a torch.autograd.Function: a Triton kernel
for the fused elementwise tail (pixel norm, leaky ReLU, gain), then torch's convolution-backward for the
input and weight gradients of the equivalent plain convolution.
"""
from __future__ import annotations

import triton
import triton.language as tl
import torch

from .reference import PIXELNORM_EPS, box_kernel, default_padding, he_scale, eqlr_conv2d as _ref_conv2d

# TF32 on GPUs (ample for GAN training); the interpreter computes in full float32 whatever this says.
DOT_PRECISION = "tf32"
# Pixel norm needs a pixel's channels in one tile of the accumulator; PGGAN tops out at 512.
MAX_PIXELNORM_CHANNELS = 1024


def kernels_interpreted() -> bool:
    """True when these kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 at import time)."""
    return type(_eqlr_conv_fwd).__name__ == "InterpretedFunction"


@triton.jit
def _eqlr_conv_fwd(x_ptr, w_ptr, b_ptr, y_ptr, r_ptr,
                   N, C, H, W, CO, HO, WO,
                   scale, alpha, act_gain, eps,
                   KS: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr,
                   UP: tl.constexpr, DOWN: tl.constexpr,
                   HAS_BIAS: tl.constexpr, LRELU: tl.constexpr, PIXELNORM: tl.constexpr,
                   DOT_PREC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < N * HO * WO
    n_mask = offs_n < CO
    ow = offs_m % WO
    oh = (offs_m // WO) % HO
    nb = offs_m // (WO * HO)
    HU = H * UP  # size of the (virtual) upsampled input
    WU = W * UP
    KE: tl.constexpr = KS + (DOWN - 1) * STRIDE  # effective kernel once the 2x2 box is folded in
    SE: tl.constexpr = STRIDE * DOWN
    x_img = nb.to(tl.int64) * C * H * W
    w_co = offs_n * (C * KS * KS)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for ky in tl.static_range(KE):
        ih_u = oh * SE - PAD + ky
        row_ok = (ih_u >= 0) & (ih_u < HU)
        ih = tl.where(row_ok, ih_u, 0) // UP
        for kx in tl.static_range(KE):
            iw_u = ow * SE - PAD + kx
            ok = m_mask & row_ok & (iw_u >= 0) & (iw_u < WU)
            iw = tl.where(ok, iw_u, 0) // UP
            x_pix = x_img + ih * W + iw
            for c0 in range(0, C, BLOCK_K):
                offs_k = c0 + tl.arange(0, BLOCK_K)
                k_mask = offs_k < C
                a = tl.load(x_ptr + x_pix[:, None] + offs_k[None, :] * (H * W),
                            mask=ok[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
                wk_mask = k_mask[:, None] & n_mask[None, :]
                w_base = w_ptr + w_co[None, :] + offs_k[:, None] * (KS * KS)
                if DOWN == 1:
                    b = tl.load(w_base + ky * KS + kx, mask=wk_mask, other=0.0).to(tl.float32)
                else:
                    # W_eff[ky, kx] = 1/4 * sum over the four taps W[ky - S*dy, kx - S*dx] inside the kernel.
                    b = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
                    for dy in tl.static_range(2):
                        for dx in tl.static_range(2):
                            ty = ky - STRIDE * dy
                            tx = kx - STRIDE * dx
                            if ty >= 0 and ty < KS and tx >= 0 and tx < KS:
                                b += tl.load(w_base + ty * KS + tx, mask=wk_mask, other=0.0).to(tl.float32)
                    b = b * 0.25
                acc = tl.dot(a, b, acc, input_precision=DOT_PREC)
    acc = acc * scale
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if LRELU:
        acc = tl.where(acc > 0, acc, acc * alpha)
    acc = acc * act_gain
    if PIXELNORM:  # the block holds every channel (BLOCK_N >= CO, masked columns are exactly 0)
        r = 1.0 / tl.sqrt(tl.sum(acc * acc, axis=1) / CO + eps)
        acc = acc * r[:, None]
        tl.store(r_ptr + offs_m, r, mask=m_mask)
    pix = oh * WO + ow
    y_off = nb.to(tl.int64)[:, None] * CO * HO * WO + offs_n[None, :] * (HO * WO) + pix[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def _bias_act_bwd(gy_ptr, y_ptr, r_ptr, gz_ptr, NP, P, CO, alpha, act_gain,
                  LRELU: tl.constexpr, PIXELNORM: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Gradient of z -> pixelnorm(act_gain * lrelu(z)) from the saved output y (and pixel-norm factor r)."""
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_mask = offs_p < NP
    mask = p_mask[:, None] & (offs_c < CO)[None, :]
    nb = (offs_p // P).to(tl.int64)
    off = nb[:, None] * CO * P + offs_c[None, :] * P + (offs_p % P)[:, None]
    g = tl.load(gy_ptr + off, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if PIXELNORM:  # y = a * r with r = rsqrt(mean_c a^2 + eps): da = r * (dy - y * mean_c(dy * y))
        r = tl.load(r_ptr + offs_p, mask=p_mask, other=0.0)
        g = r[:, None] * (g - y * (tl.sum(g * y, axis=1) / CO)[:, None])
    if LRELU:  # sign(z) == sign(y * act_gain): pixel norm's factor is positive
        g = tl.where(y * act_gain > 0, g, g * alpha)
    g = g * act_gain
    tl.store(gz_ptr + off, g.to(gz_ptr.dtype.element_ty), mask=mask)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _conv_out_size(size: int, ks: int, stride: int, pad: int, up: int, down: int) -> int:
    conv = (size * up + 2 * pad - ks) // stride + 1
    return conv // down


def _launch_fwd(x, weight, bias, scale, stride, pad, up, down, activation, alpha, act_gain, pixelnorm):
    n, c, h, w = x.shape
    co, _, ks, _ = weight.shape
    ho = _conv_out_size(h, ks, stride, pad, up, down)
    wo = _conv_out_size(w, ks, stride, pad, up, down)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"eqlr_conv2d: empty output for input {tuple(x.shape)} and kernel {ks}")
    y = torch.empty((n, co, ho, wo), device=x.device, dtype=x.dtype)
    r = torch.empty((n * ho * wo,), device=x.device, dtype=torch.float32) if pixelnorm else y
    block_n = _pow2(co) if pixelnorm else min(64, max(16, _pow2(co)))
    block_k = min(32, max(16, _pow2(c)))
    block_m = 32 if block_n > 128 else 64
    grid = (triton.cdiv(n * ho * wo, block_m), triton.cdiv(co, block_n))
    _eqlr_conv_fwd[grid](
        x, weight, bias if bias is not None else weight, y, r,
        n, c, h, w, co, ho, wo,
        float(scale), float(alpha), float(act_gain), PIXELNORM_EPS,
        KS=ks, STRIDE=stride, PAD=pad, UP=up, DOWN=down,
        HAS_BIAS=bias is not None, LRELU=activation == "lrelu", PIXELNORM=bool(pixelnorm),
        DOT_PREC=DOT_PRECISION, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return y, (r if pixelnorm else None)


def _launch_bias_act_bwd(gy, y, r, activation, alpha, act_gain, pixelnorm):
    n, co = y.shape[:2]
    p = y[0, 0].numel()
    gy = gy.contiguous()
    gz = torch.empty_like(y)
    block_c = _pow2(co) if pixelnorm else min(64, _pow2(co))
    block_p = max(16, min(256, 4096 // block_c))
    grid = (triton.cdiv(n * p, block_p), triton.cdiv(co, block_c))
    _bias_act_bwd[grid](gy, y, r if r is not None else y, gz, n * p, p, co, float(alpha), float(act_gain),
                        LRELU=activation == "lrelu", PIXELNORM=bool(pixelnorm), BLOCK_P=block_p, BLOCK_C=block_c)
    return gz


class _EqlrConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, gain, stride, pad, up, down, activation, alpha, act_gain, pixelnorm):
        scale = he_scale(weight, gain)
        y, r = _launch_fwd(x.contiguous(), weight.contiguous(), bias, scale, stride, pad, up, down, activation,
                           alpha, act_gain, pixelnorm)
        ctx.cfg = dict(gain=gain, stride=stride, padding=pad, up=up, down=down, activation=activation,
                       alpha=alpha, act_gain=act_gain, pixelnorm=pixelnorm)
        ctx.save_for_backward(x, weight, bias, y, r)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, bias, y, r = ctx.saved_tensors
        cfg = ctx.cfg
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            # create_graph=True (e.g. a gradient penalty): differentiate the reference on the saved inputs so
            # that the backward is itself differentiable and stays connected to the graph.
            with torch.enable_grad():
                out = _ref_conv2d(x, weight, bias, **cfg)
                wanted = [t for t, need in ((x, need_x), (weight, need_w), (bias, need_b)) if need]
                grads = iter(torch.autograd.grad(out, wanted, gy, create_graph=True))
            gx = next(grads) if need_x else None
            gw = next(grads) if need_w else None
            gb = next(grads) if need_b else None
            return (gx, gw, gb) + (None,) * 9
        gz = _launch_bias_act_bwd(gy, y, r, cfg["activation"], cfg["alpha"], cfg["act_gain"], cfg["pixelnorm"])
        gb = gz.sum(dim=(0, 2, 3)) if (need_b and bias is not None) else None
        gx, gw = _conv_input_weight_grads(gz, x, weight, cfg, need_x, need_w)
        return (gx, gw, gb) + (None,) * 9


def _conv_input_weight_grads(gz, x, weight, cfg, need_x, need_w):
    """Input and weight gradients of scale * conv(up(x), box(W)), via torch's convolution backward."""
    if not (need_x or need_w):
        return None, None
    stride, pad, up, down = cfg["stride"], cfg["padding"], cfg["up"], cfg["down"]
    ks = weight.shape[-1]
    scale = he_scale(weight, cfg["gain"])
    w_eff = box_kernel(weight, stride) if down == 2 else weight
    x_eff = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) if up == 2 else x
    se = stride * down
    gx, gw, _ = torch.ops.aten.convolution_backward(
        gz, x_eff.contiguous(), w_eff * scale, None, [se, se], [pad, pad], [1, 1], False, [0, 0], 1, [need_x, need_w, False])
    if need_x and up == 2:
        n, c, h, w = x.shape
        gx = gx.view(n, c, h, 2, w, 2).sum(dim=(3, 5))
    if need_w:
        gw = gw * scale
        if down == 2:  # adjoint of box_kernel: fold the (k+S)^2 gradient back onto the k x k kernel
            gw = 0.25 * sum(gw[..., stride * dy:stride * dy + ks, stride * dx:stride * dx + ks]
                            for dy in (0, 1) for dx in (0, 1))
    return gx, gw


def eqlr_conv2d(x, weight, bias=None, *, gain, stride=1, padding=None, up=1, down=1, activation="lrelu",
                alpha=0.2, act_gain=1.0, pixelnorm=False):
    """Triton version of reference.eqlr_conv2d (same arguments and semantics)."""
    if up not in (1, 2) or down not in (1, 2):
        raise ValueError(f"up and down must be 1 or 2, got up={up}, down={down}")
    if activation not in ("lrelu", "linear"):
        raise ValueError(f"activation must be 'lrelu' or 'linear', got {activation!r}")
    if weight.shape[-1] != weight.shape[-2] or x.dim() != 4:
        raise ValueError("eqlr_conv2d expects NCHW input and a square kernel")
    if pixelnorm and weight.shape[0] > MAX_PIXELNORM_CHANNELS:
        raise ValueError(f"the Triton kernel keeps all channels of a pixel in one block for pixel norm; "
                         f"{weight.shape[0]} > {MAX_PIXELNORM_CHANNELS} channels: use impl='torch'")
    if padding is None:
        padding = default_padding(weight.shape[-1])
    return _EqlrConv2d.apply(x, weight, bias, float(gain), int(stride), int(padding), int(up), int(down),
                             activation, float(alpha), float(act_gain), bool(pixelnorm))


def eqlr_linear(x, weight, bias=None, *, gain, activation="lrelu", alpha=0.2, act_gain=1.0, pixelnorm=False):
    """Triton version of reference.eqlr_linear: the conv kernel on 1x1 images."""
    if x.dim() != 2:
        raise ValueError(f"eqlr_linear expects (batch, features), got shape {tuple(x.shape)}")
    y = eqlr_conv2d(x[:, :, None, None], weight[:, :, None, None], bias, gain=gain, activation=activation,
                    alpha=alpha, act_gain=act_gain, pixelnorm=pixelnorm)
    return y[:, :, 0, 0]
