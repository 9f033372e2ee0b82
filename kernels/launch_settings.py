"""Launch settings for the Triton kernels: block sizes, num_warps and num_stages per shape and GPU.

One function per kernel decides, from the layer shape and the GPU architecture, everything a launch compiles
with. The kernel modules call these functions and nothing else picks settings, so the set of compiled kernels
is exactly what these functions can return. bench/compile_check.py (run by tests/bench/test_compile_check.py)
compiles every one of them for each architecture in SHARED_MEMORY_LIMIT (no GPU needed: the triton wheel ships
ptxas) and checks that each fits that architecture's shared memory per block and registers per SM.

No autotuning: a tuner would pick among configurations at run time, on the GPU, and the compile check could no
longer name the set it has to check. The values below are chosen from the compile check's resource report
(shared memory, registers, spills); their speed is not measured yet (bench/gpu_check.sh will, on a GPU).

Why the blocks are small and fixed: a tile of at most 64 output channels keeps the pipelined operand buffers
(num_stages x (BLOCK_M x BLOCK_K + BLOCK_K x BLOCK_N) float32) small, which fits every GPU listed,
whatever the layer width. Pixel norm over more channels than one tile holds is split (kernels/triton_conv.py):
each tile stores its partial sum of squares and a second kernel finishes the norm, so no channel limit applies.

Pure Python on purpose: importing this module never imports Triton.
"""
from __future__ import annotations

# Largest dynamic shared memory one thread block may use (opt-in maximum), bytes, per compute capability.
SHARED_MEMORY_LIMIT = {
    80: 163 * 1024,  # A100, A30
    86: 99 * 1024,   # RTX 30xx, A10, A40
    89: 99 * 1024,   # RTX 40xx, L4, L40S
    90: 227 * 1024,  # H100, H200
}
# Used where no GPU tells us its architecture (Triton's CPU interpreter): the smallest shared memory listed.
PORTABLE_ARCH = 86

CONV_BLOCK_M = 64       # output pixels per tile
CONV_MAX_BLOCK_N = 64   # output channels per tile
CONV_BLOCK_K = 32       # reduction (input channel x tap) chunk; tl.dot needs >= 16
SN_BLOCK_R = 32         # spectral norm: rows of W per chunk
SN_BLOCK_C = 128        # spectral norm: columns of W per chunk
CONV_WARPS = 8
ELEMENTWISE_TILE = 2048  # elements per program for the pixel-norm finish and the backward tail


def settings_arch(arch: int | None) -> int:
    """The architecture whose settings a GPU of compute capability ``arch`` (e.g. 86) gets.

    Listed architectures get their own; others get those of the listed one with the largest shared memory
    not above theirs as far as is known here, i.e. 90 for newer data-centre parts (100+), PORTABLE_ARCH
    otherwise. Only the listed four are compile-checked.
    """
    if arch in SHARED_MEMORY_LIMIT:
        return arch
    if arch is not None and arch >= 100 and arch // 10 == 10:
        return 90
    return PORTABLE_ARCH


def _large_shared_memory(arch: int | None) -> bool:
    return SHARED_MEMORY_LIMIT[settings_arch(arch)] >= 160 * 1024


def conv_fwd(c: int, co: int, taps: int, down: int, pixelnorm: bool, arch: int | None) -> dict:
    """Settings of the fused conv forward for ``c`` input channels, ``co`` outputs, ``taps`` = kernel area
    (after folding a 2x2 average in when ``down`` is 2).

    PIXELNORM is 0 (off), 1 (every channel of a pixel is in one tile: normalised in registers) or 2 (partial
    sums of squares per tile, finished by the pixel-norm kernel).
    """
    block_n = _channel_block(co, CONV_MAX_BLOCK_N)
    block_k = CONV_BLOCK_K
    mode = 0 if not pixelnorm else (1 if co <= block_n else 2)
    # Each pipeline stage buffers an A tile and the B tile's loads: one for plain taps, four for the box
    # taps of a fused 2x2 average (down=2), which therefore gets one stage less.
    stages = (4 if _large_shared_memory(arch) else 3) - (1 if down == 2 else 0)
    return dict(BLOCK_M=CONV_BLOCK_M, BLOCK_N=block_n, BLOCK_K=block_k, PIXELNORM=mode,
                num_warps=CONV_WARPS, num_stages=stages)


def _channel_block(co: int, widest: int) -> int:
    """16 channels for the narrow layers (RGB in/out, width <= 16), else the widest tile.

    Two sizes rather than every power of two: each distinct size is one more kernel to compile and check,
    and the intermediate sizes would only speed up layers that are tiny on any GPU.
    """
    return 16 if co <= 16 else widest


def _elementwise(co: int, max_block_c: int) -> tuple[int, int]:
    block_c = _channel_block(co, max_block_c)
    return ELEMENTWISE_TILE // block_c, block_c


def pixelnorm_finish(co: int, arch: int | None) -> dict:
    """Settings of the second pass of a split pixel norm (reads the partial sums, scales every channel)."""
    block_p, block_c = _elementwise(co, 64)
    return dict(BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4, num_stages=1)


def bias_act_bwd(co: int, pixelnorm: bool, arch: int | None) -> dict:
    """Settings of the backward of the fused tail (pixel norm loops over channel chunks of BLOCK_C)."""
    block_p, block_c = _elementwise(co, 64)
    return dict(BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4, num_stages=1)


def spectral_norm(arch: int | None) -> dict:
    """Settings of the multi-layer power iteration (one program per layer; loops over any W shape)."""
    return dict(BLOCK_R=SN_BLOCK_R, BLOCK_C=SN_BLOCK_C, num_warps=4, num_stages=1)
