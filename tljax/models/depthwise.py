"""Depthwise convolution as a sum of shifted slices, with its own backward pass: the XLA:CPU kernel.

XLA's CPU backend lowers `feature_group_count=C` convolutions to a generic grouped-conv loop that is
much slower than the same arithmetic written as a sum of k² shifted, strided slices times one kernel
tap each (which XLA fuses into a single elementwise loop; `bench/depthwise.py` measures both). This
module computes that shifted-slice sum, with a `jax.custom_vjp` whose backward pass stays in that form:
the input gradient is a (polyphase, for stride > 1) shifted-slice sum over the padded output gradient
with the flipped kernel, the kernel gradient one reduction per tap. `tljax.models.conv` selects it on
CPU (and XLA's grouped convolution elsewhere) with `jax.lax.platform_dependent`.

Padding is 'VALID' here: `tljax.models.conv` pads beforehand.
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def _accumulation_dtype(dtype) -> jnp.dtype:
    """Sums of k² products are accumulated in at least float32 (bf16 partial sums lose ~3 digits)."""
    return jnp.promote_types(dtype, jnp.float32)


def _tap(x: Array, row: int, col: int, rows: int, cols: int, stride: int) -> Array:
    """x[:, row::stride, col::stride, :] cut to [B, rows, cols, C]."""
    return lax.slice(
        x,
        (0, row, col, 0),
        (x.shape[0], row + stride * (rows - 1) + 1, col + stride * (cols - 1) + 1, x.shape[3]),
        (1, stride, stride, 1),
    )


def _output_size(size: int, k: int, stride: int) -> int:
    return (size - k) // stride + 1


def shifted_depthwise(x: Array, kernel: Array, stride: int) -> Array:
    """Depthwise VALID convolution as Σ_ij x[:, i::s, j::s] · kernel[i, j]; plain jnp, autodiff-able.

    x: [B, H, W, C]; kernel: [k, k, 1, C]; returns [B, Ho, Wo, C] in x's dtype.
    """
    k = kernel.shape[0]
    rows, cols = _output_size(x.shape[1], k, stride), _output_size(x.shape[2], k, stride)
    acc_dtype = _accumulation_dtype(x.dtype)
    taps = kernel[:, :, 0, :].astype(acc_dtype)  # [k, k, C]
    terms = (
        _tap(x, i, j, rows, cols, stride).astype(acc_dtype) * taps[i, j]
        for i in range(k)
        for j in range(k)
    )
    return functools.reduce(operator.add, terms).astype(x.dtype)


def _input_gradient(g: Array, kernel: Array, stride: int, height: int, width: int) -> Array:
    """d out / d x as shifted slices of the padded output gradient g: [B, Ho, Wo, C] → [B, H, W, C].

    x[y] receives g[p - m] · w[a + s·m] for y = s·p + a (a the phase, m the tap within that phase), so
    each of the s² phases of dx is a stride-1 shifted-slice sum over g with a sub-kernel w[a::s, b::s];
    the phases are then interleaved. This does k²·Ho·Wo multiplies rather than the k²·H·W of correlating
    a zero-dilated g. Rows/columns beyond the last window (when (H - k) % s ≠ 0) come out zero.
    """
    k, s = kernel.shape[0], stride
    acc_dtype = _accumulation_dtype(g.dtype)
    taps = kernel[:, :, 0, :].astype(acc_dtype)  # [k, k, C]
    reach = math.ceil(k / s)  # most taps a phase has along one axis
    phase_rows, phase_cols = math.ceil(height / s), math.ceil(width / s)
    g = g.astype(acc_dtype)
    g = jnp.pad(
        g,
        (
            (0, 0),
            (reach - 1, phase_rows - g.shape[1]),
            (reach - 1, phase_cols - g.shape[2]),
            (0, 0),
        ),
    )
    phases = []  # phases[a][b]: dx[:, a::s, b::s] as [B, phase_rows, phase_cols, C]
    for a in range(s):
        row = []
        for b in range(s):
            terms = (
                _tap(g, reach - 1 - m, reach - 1 - n, phase_rows, phase_cols, 1)
                * taps[a + s * m, b + s * n]
                for m in range(math.ceil((k - a) / s))
                for n in range(math.ceil((k - b) / s))
            )
            row.append(functools.reduce(operator.add, terms))
        phases.append(row)
    if s == 1:
        dx = phases[0][0]
    else:  # [B, P, s, Q, s, C] → [B, P·s, Q·s, C]: rows y = s·p + a, cols z = s·q + b
        dx = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
        dx = dx.reshape(dx.shape[0], phase_rows * s, phase_cols * s, dx.shape[-1])
    return dx[:, :height, :width]


# Kernel-gradient reductions read their inputs once per tap; chunking the batch so that one chunk of x
# stays in L2 (~1 MiB) makes the k² passes cache hits instead of k² passes over the whole batch.
_KERNEL_GRAD_CHUNK_BYTES = 1 << 20


def _tap_sums(x: Array, g: Array, k: int, stride: int) -> Array:
    """[k·k, C]: Σ_{b,h,w} g · x[:, i::s, j::s] for every tap (i, j), in g's dtype."""
    rows, cols = g.shape[1], g.shape[2]
    return jnp.stack(
        [
            jnp.sum(_tap(x, i, j, rows, cols, stride).astype(g.dtype) * g, axis=(0, 1, 2))
            for i in range(k)
            for j in range(k)
        ]
    )


def _kernel_gradient(x: Array, g: Array, k: int, stride: int) -> Array:
    """d out / d kernel: one reduction Σ_{b,h,w} g · x[:, i::s, j::s] per tap → [k, k, 1, C].

    The batch is walked in chunks (a `lax.scan`) small enough to stay in cache across the k² taps.
    """
    g = g.astype(_accumulation_dtype(g.dtype))
    batch, image_bytes = x.shape[0], math.prod(x.shape[1:]) * g.dtype.itemsize
    chunk = max(
        [
            n
            for n in range(1, batch + 1)
            if batch % n == 0 and n * image_bytes <= _KERNEL_GRAD_CHUNK_BYTES
        ]
        or [1]
    )
    if chunk == batch:
        sums = _tap_sums(x, g, k, stride)
    else:

        def add_chunk(total, chunk_xg):
            x_chunk, g_chunk = chunk_xg
            return total + _tap_sums(x_chunk, g_chunk, k, stride), None

        chunks = (
            x.reshape(batch // chunk, chunk, *x.shape[1:]),
            g.reshape(batch // chunk, chunk, *g.shape[1:]),
        )
        sums, _ = lax.scan(add_chunk, jnp.zeros((k * k, x.shape[-1]), g.dtype), chunks)
    return sums.reshape(k, k, 1, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def shifted_depthwise_vjp(x: Array, kernel: Array, stride: int) -> Array:
    """`shifted_depthwise` with a hand-written backward pass in the same shifted-slice form."""
    return shifted_depthwise(x, kernel, stride)


def _forward(x, kernel, stride):
    return shifted_depthwise(x, kernel, stride), (x, kernel)


def _backward(stride, residuals, g):
    x, kernel = residuals
    dx = _input_gradient(g, kernel, stride, x.shape[1], x.shape[2]).astype(x.dtype)
    dkernel = _kernel_gradient(x, g, kernel.shape[0], stride).astype(kernel.dtype)
    return dx, dkernel


shifted_depthwise_vjp.defvjp(_forward, _backward)


def grouped_conv_depthwise(x: Array, kernel: Array, stride: int) -> Array:
    """The reference: XLA's grouped convolution (what `nn.Conv(feature_group_count=C)` runs)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )
