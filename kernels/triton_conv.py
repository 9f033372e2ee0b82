"""Fused equalized-LR convolution in Triton: one implicit-GEMM kernel per forward.

The kernel computes, for output pixels m = (n, oh, ow) and output channels co,

    z[m, co] = he_scale * sum_{c, ky, kx} x_eff[n, c, oh*S + ky - P, ow*S + kx - P] * W_eff[co, c, ky, kx]

and then bias, leaky ReLU, gain and pixel norm in registers before the single store. Why it is fused:

* he_scale multiplies the accumulator, so the scaled weight is never materialised.
* up=2 (nearest) is an address computation: x_eff[i] = x[i // 2]; the upsampled tensor never exists.
* down=2 (2x2 average after the conv) is folded into the weight: conv-then-average equals one conv with
  the box-filtered kernel W_eff (size k+S, stride 2S). This does 2.25x fewer MACs for k=3 than
  conv-then-pool; the kernel builds W_eff taps on the fly from four shifted loads of W.

Pixel norm needs every channel of a pixel. When one tile of output channels (launch_settings.CONV_MAX_BLOCK_N)
holds them all, it is applied in registers; wider layers store each tile's partial sum of squares and a
second small kernel finishes the norm in place. Tiles therefore stay small enough for every GPU's shared
memory at any width, and there is no channel limit.

Linear layers are the same kernel on 1x1 images. The backward is a torch.autograd.Function: a Triton kernel
for the fused elementwise tail (pixel norm, leaky ReLU, gain), then torch's convolution-backward for the
input and weight gradients of the equivalent plain convolution.

Block sizes, num_warps and num_stages come from kernels/launch_settings.py, per shape and GPU architecture.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import launch_settings
from .reference import PIXELNORM_EPS, box_kernel, default_padding, he_scale
from .reference import eqlr_conv2d as _ref_conv2d

# TF32 on GPUs (ample for GAN training); the interpreter computes in full float32 whatever this says.
DOT_PRECISION = "tf32"
# Floating-point contraction (a*b+c into one FMA) in compiled kernels. Triton 3.9 fuses unless told and warns
# that 3.10 will not; we choose no fusion: the kernels were verified against the reference in Triton's
# interpreter, which rounds every multiply and add separately, so unfused GPU code rounds the elementwise
# arithmetic the way the verified code does. The cost is small: the GEMM runs on tl.dot (tensor cores or
# explicit FMA either way), and the fused tail and spectral norm are bound by memory traffic.
FP_FUSION = False


def device_arch(device: torch.device) -> int | None:
    """Compute capability as an int (e.g. 86) for a CUDA device; None elsewhere (the interpreter)."""
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def _aligned(t):
    """``t``, or a copy of it when its address is not 16-byte aligned.

    Triton compiles one variant per alignment of each pointer; keeping every pointer aligned keeps the set of
    compiled kernels to the one the GPU compile test checks (torch allocations are aligned, views may not be).
    """
    if t is None or t.data_ptr() % 16 == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def kernels_interpreted() -> bool:
    """True when these kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 at import time)."""
    return type(_eqlr_conv_fwd).__name__ == "InterpretedFunction"


@triton.jit(do_not_specialize=["N", "C", "H", "W", "CO", "HO", "WO"])
def _eqlr_conv_fwd(x_ptr, w_ptr, b_ptr, y_ptr, s_ptr,
                   N, C, H, W, CO, HO, WO,
                   scale, alpha, act_gain, eps,
                   KS: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr,
                   UP: tl.constexpr, DOWN: tl.constexpr,
                   HAS_BIAS: tl.constexpr, LRELU: tl.constexpr, PIXELNORM: tl.constexpr,
                   DOT_PREC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Implicit GEMM: rows m = output pixels, columns = output channels, reduction k = (c, ky, kx) flattened.

    One pipelined loop over k (not one loop per tap) keeps the compiled code and its register use small.
    PIXELNORM: 0 off; 1 this tile holds every channel (s_ptr receives the factor r); 2 s_ptr receives this
    tile's partial sum of squares at [pid_n, m] and _pixelnorm_finish completes the norm.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    M = N * HO * WO
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < CO
    ow = offs_m % WO
    oh = (offs_m // WO) % HO
    nb = offs_m // (WO * HO)
    HU = H * UP  # size of the (virtual) upsampled input
    WU = W * UP
    KE: tl.constexpr = KS + (DOWN - 1) * STRIDE  # effective kernel once the 2x2 box is folded in
    SE: tl.constexpr = STRIDE * DOWN
    TAPS: tl.constexpr = KE * KE
    x_img = nb.to(tl.int64) * C * H * W
    oh0 = oh * SE - PAD
    ow0 = ow * SE - PAD
    w_co = offs_n.to(tl.int64) * (C * KS * KS)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, C * TAPS, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < C * TAPS
        c = offs_k // TAPS
        ky = (offs_k % TAPS) // KE
        kx = offs_k % KE
        ih_u = oh0[:, None] + ky[None, :]
        iw_u = ow0[:, None] + kx[None, :]
        ok = (m_mask[:, None] & k_mask[None, :] & (ih_u >= 0) & (ih_u < HU) & (iw_u >= 0) & (iw_u < WU))
        ih = tl.where(ok, ih_u, 0) // UP  # nearest upsampling: x_eff[i] = x[i // UP]
        iw = tl.where(ok, iw_u, 0) // UP
        a = tl.load(x_ptr + x_img[:, None] + (c * (H * W))[None, :] + ih * W + iw,
                    mask=ok, other=0.0).to(tl.float32)
        if DOWN == 1:  # k indexes W[co] directly: c * KS * KS + ky * KS + kx
            b = tl.load(w_ptr + w_co[None, :] + offs_k[:, None], mask=k_mask[:, None] & n_mask[None, :],
                        other=0.0).to(tl.float32)
        else:
            # W_eff[ky, kx] = 1/4 * sum over the four taps W[ky - S*dy, kx - S*dx] inside the kernel.
            b = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    ty = ky - STRIDE * dy
                    tx = kx - STRIDE * dx
                    t_ok = k_mask & (ty >= 0) & (ty < KS) & (tx >= 0) & (tx < KS)
                    t_off = c * (KS * KS) + tl.where(t_ok, ty * KS + tx, 0)
                    b += tl.load(w_ptr + w_co[None, :] + t_off[:, None], mask=t_ok[:, None] & n_mask[None, :],
                                 other=0.0).to(tl.float32)
            b = b * 0.25
        acc = tl.dot(a, b, acc, input_precision=DOT_PREC)
    acc = acc * scale
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if LRELU:
        acc = tl.where(acc > 0, acc, acc * alpha)
    acc = acc * act_gain
    if PIXELNORM == 1:  # the block holds every channel (masked columns are exactly 0)
        r = 1.0 / tl.sqrt(tl.sum(acc * acc, axis=1) / CO + eps)
        acc = acc * r[:, None]
        tl.store(s_ptr + offs_m, r, mask=m_mask)
    if PIXELNORM == 2:
        tl.store(s_ptr + pid_n.to(tl.int64) * M + offs_m, tl.sum(acc * acc, axis=1), mask=m_mask)
    pix = oh * WO + ow
    y_off = nb.to(tl.int64)[:, None] * CO * HO * WO + offs_n[None, :] * (HO * WO) + pix[:, None]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit(do_not_specialize=["M", "P", "CO", "NB"])
def _pixelnorm_finish(y_ptr, s_ptr, r_ptr, M, P, CO, NB, eps, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Second pass of a split pixel norm: r = rsqrt(sum of the NB partial sums / CO + eps); y *= r in place."""
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_mask = offs_p < M
    sq = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for j in range(0, NB):
        sq += tl.load(s_ptr + j * M + offs_p, mask=p_mask, other=0.0)
    r = 1.0 / tl.sqrt(sq / CO + eps)
    tl.store(r_ptr + offs_p, r, mask=p_mask)
    base = (offs_p // P).to(tl.int64) * CO * P + offs_p % P
    for c0 in range(0, CO, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C)
        mask = p_mask[:, None] & (offs_c < CO)[None, :]
        off = base[:, None] + offs_c[None, :] * P
        y = tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + off, (y * r[:, None]).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["NP", "P", "CO"])
def _bias_act_bwd(gy_ptr, y_ptr, r_ptr, gz_ptr, NP, P, CO, alpha, act_gain,
                  LRELU: tl.constexpr, PIXELNORM: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Gradient of z -> pixelnorm(act_gain * lrelu(z)) from the saved output y (and pixel-norm factor r).

    With pixel norm one program owns all channels of its pixels: a first loop over channel chunks forms
    mean_c(dy * y), a second writes the gradient, so any channel count runs in bounded registers.
    """
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_mask = offs_p < NP
    base = (offs_p // P).to(tl.int64) * CO * P + offs_p % P
    if PIXELNORM:  # y = a * r with r = rsqrt(mean_c a^2 + eps): da = r * (dy - y * mean_c(dy * y))
        r = tl.load(r_ptr + offs_p, mask=p_mask, other=0.0)
        dot = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for c0 in range(0, CO, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask = p_mask[:, None] & (offs_c < CO)[None, :]
            off = base[:, None] + offs_c[None, :] * P
            g = tl.load(gy_ptr + off, mask=mask, other=0.0).to(tl.float32)
            y = tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
            dot += tl.sum(g * y, axis=1)
        mean = dot / CO
        for c0 in range(0, CO, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            mask = p_mask[:, None] & (offs_c < CO)[None, :]
            off = base[:, None] + offs_c[None, :] * P
            g = tl.load(gy_ptr + off, mask=mask, other=0.0).to(tl.float32)
            y = tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
            g = r[:, None] * (g - y * mean[:, None])
            if LRELU:  # sign(z) == sign(y * act_gain): pixel norm's factor is positive
                g = tl.where(y * act_gain > 0, g, g * alpha)
            g = g * act_gain
            tl.store(gz_ptr + off, g.to(gz_ptr.dtype.element_ty), mask=mask)
    else:
        offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = p_mask[:, None] & (offs_c < CO)[None, :]
        off = base[:, None] + offs_c[None, :] * P
        g = tl.load(gy_ptr + off, mask=mask, other=0.0).to(tl.float32)
        if LRELU:
            y = tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
            g = tl.where(y * act_gain > 0, g, g * alpha)
        g = g * act_gain
        tl.store(gz_ptr + off, g.to(gz_ptr.dtype.element_ty), mask=mask)


def _conv_out_size(size: int, ks: int, stride: int, pad: int, up: int, down: int) -> int:
    conv = (size * up + 2 * pad - ks) // stride + 1
    return conv // down


class Launch(NamedTuple):
    """One kernel launch as the compiler sees it: the kernel, its constexpr arguments, num_warps/num_stages."""
    kernel: object
    constexprs: dict
    options: dict


def fwd_launches(c: int, co: int, ks: int, stride: int, pad: int, up: int, down: int, has_bias: bool,
                 activation: str, pixelnorm: bool, arch: int | None) -> list[Launch]:
    """The launches of one forward (the conv, and the pixel-norm finish when the norm is split)."""
    s = launch_settings.conv_fwd(c, co, (ks + (down - 1) * stride) ** 2, down, pixelnorm, arch)
    conv = Launch(_eqlr_conv_fwd,
                  dict(KS=ks, STRIDE=stride, PAD=pad, UP=up, DOWN=down, HAS_BIAS=bool(has_bias),
                       LRELU=activation == "lrelu", PIXELNORM=s["PIXELNORM"], DOT_PREC=DOT_PRECISION,
                       BLOCK_M=s["BLOCK_M"], BLOCK_N=s["BLOCK_N"], BLOCK_K=s["BLOCK_K"]),
                  _options(s))
    if s["PIXELNORM"] != 2:
        return [conv]
    f = launch_settings.pixelnorm_finish(co, arch)
    return [conv, Launch(_pixelnorm_finish, dict(BLOCK_P=f["BLOCK_P"], BLOCK_C=f["BLOCK_C"]), _options(f))]


def bwd_launch(co: int, activation: str, pixelnorm: bool, arch: int | None) -> Launch:
    """The launch of the fused tail's backward."""
    s = launch_settings.bias_act_bwd(co, pixelnorm, arch)
    return Launch(_bias_act_bwd, dict(LRELU=activation == "lrelu", PIXELNORM=bool(pixelnorm),
                                      BLOCK_P=s["BLOCK_P"], BLOCK_C=s["BLOCK_C"]), _options(s))


def _options(settings: dict) -> dict:
    return dict(num_warps=settings["num_warps"], num_stages=settings["num_stages"], enable_fp_fusion=FP_FUSION)


def _launch_fwd(x, weight, bias, scale, stride, pad, up, down, activation, alpha, act_gain, pixelnorm):
    n, c, h, w = x.shape
    co, _, ks, _ = weight.shape
    ho = _conv_out_size(h, ks, stride, pad, up, down)
    wo = _conv_out_size(w, ks, stride, pad, up, down)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"eqlr_conv2d: empty output for input {tuple(x.shape)} and kernel {ks}")
    conv, *finish = fwd_launches(c, co, ks, stride, pad, up, down, bias is not None, activation, pixelnorm,
                                 device_arch(x.device))
    m = n * ho * wo
    y = torch.empty((n, co, ho, wo), device=x.device, dtype=x.dtype)
    k = conv.constexprs
    n_blocks = triton.cdiv(co, k["BLOCK_N"])
    r = torch.empty((m,), device=x.device, dtype=torch.float32) if pixelnorm else None
    s = torch.empty((n_blocks, m), device=x.device, dtype=torch.float32) if finish else r
    x, weight, bias = _aligned(x), _aligned(weight), _aligned(bias)
    conv.kernel[(triton.cdiv(m, k["BLOCK_M"]), n_blocks)](
        x, weight, bias if bias is not None else weight, y, s if s is not None else y,
        n, c, h, w, co, ho, wo,
        float(scale), float(alpha), float(act_gain), PIXELNORM_EPS, **k, **conv.options)
    if finish:
        f = finish[0]
        f.kernel[(triton.cdiv(m, f.constexprs["BLOCK_P"]),)](y, s, r, m, ho * wo, co, n_blocks, PIXELNORM_EPS,
                                                              **f.constexprs, **f.options)
    return y, r


def _launch_bias_act_bwd(gy, y, r, activation, alpha, act_gain, pixelnorm):
    n, co = y.shape[:2]
    p = y[0, 0].numel()
    gy = _aligned(gy.contiguous())
    gz = torch.empty_like(y)
    launch = bwd_launch(co, activation, pixelnorm, device_arch(y.device))
    k = launch.constexprs
    grid = (triton.cdiv(n * p, k["BLOCK_P"]), 1 if pixelnorm else triton.cdiv(co, k["BLOCK_C"]))
    launch.kernel[grid](gy, y, r if r is not None else y, gz, n * p, p, co, float(alpha), float(act_gain),
                        **k, **launch.options)
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
        gz, x_eff.contiguous(), w_eff * scale, None, [se, se], [pad, pad], [1, 1], False, [0, 0], 1,
        [need_x, need_w, False])
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
