"""The one conv switch: XLA's convolution on every platform, faster kernels for XLA:CPU where they exist.

Two kinds of convolution are much slower on XLA's CPU backend than the same arithmetic written another
way (measured in `bench/depthwise.py`, `bench/forward.py` and `bench/train_step.py`):

* a 1×1 convolution is a matrix product over the channel axis, `x[:, ::s, ::s] @ W[0, 0]`, and its
  kernel gradient in particular runs on the CPU's GEMM instead of the generic convolution loop;
* a depthwise convolution (`feature_group_count` = channels, one filter per channel) is a sum of k²
  shifted, strided slices times one kernel tap each (`tljax.models.depthwise`, with its own VJP).

`conv_nhwc` picks the kernel with `jax.lax.platform_dependent`, so the choice is made for the platform
the computation is *lowered for*, not the default backend of the process at trace time: a computation
pinned to a CPU device on a GPU host gets the CPU kernels, and one exported or AOT-lowered for `cuda`
gets the convolution. Every other convolution is `lax.conv_general_dilated` on every platform.

`Conv` is a drop-in for `flax.linen.Conv` on NHWC images (same parameter names, shapes, initialisers and
dtype promotion) that calls `conv_nhwc`; the architectures take it as a field (`conv: ModuleDef = Conv`,
like flax's examples), so `ResNet(conv=nn.Conv)` runs the same network with flax's convolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from tljax.models.depthwise import shifted_depthwise_vjp

Array = jax.Array
Padding = str | int | Sequence[int | tuple[int, int]]
Kernel = Callable[[Array, Array], Array]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def pointwise_matmul(
    x: Array, kernel: Array, strides: tuple[int, int] = (1, 1), precision: Any = None
) -> Array:
    """A 1×1 VALID convolution as a matrix product: x [B, H, W, C], kernel [1, 1, C, O] → [B, Ho, Wo, O]."""
    if strides != (1, 1):
        x = x[:, :: strides[0], :: strides[1]]
    return jnp.matmul(x, kernel[0, 0], precision=precision)  # [B, Ho, Wo, C] @ [C, O]


def _explicit_pads(
    x_shape: Sequence[int], kernel_shape: Sequence[int], strides: tuple[int, int], padding: Padding
) -> list[tuple[int, int]]:
    """Padding as (low, high) pairs for the two spatial axes, the way `lax.conv_general_dilated` reads it."""
    if isinstance(padding, str):
        return [
            (int(lo), int(hi))
            for lo, hi in lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding)
        ]
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    pads = [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]
    if len(pads) != 2:
        raise ValueError(f"padding {padding!r}: expected a string, an int or two (low, high) pairs")
    return pads


def _cpu_kernel(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: tuple[int, int],
    pads: list[tuple[int, int]],
    feature_group_count: int,
    precision: Any,
) -> Kernel | None:
    """The faster XLA:CPU formulation of this convolution, or None where XLA's own is the one to use."""
    kh, kw, per_group, _ = kernel_shape
    no_padding = all(p == (0, 0) for p in pads)
    if (kh, kw) == (1, 1) and feature_group_count == 1 and no_padding:
        return lambda x, kernel: pointwise_matmul(x, kernel, strides, precision)
    depthwise = feature_group_count == x_shape[3] == kernel_shape[3] and per_group == 1 and kh == kw
    if depthwise and strides[0] == strides[1]:

        def shifted(x: Array, kernel: Array) -> Array:
            if not no_padding:
                x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
            return shifted_depthwise_vjp(x, kernel, strides[0])

        return shifted
    return None


def conv_nhwc(
    x: Array,
    kernel: Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    feature_group_count: int = 1,
    precision: Any = None,
) -> Array:
    """`lax.conv_general_dilated` on x [B, H, W, C] with an HWIO kernel [kh, kw, C/groups, O], per platform.

    On CPU, 1×1 convolutions run as a matrix product and depthwise ones as a shifted-slice sum; every
    platform other than CPU, and every other convolution, runs XLA's convolution. The choice is a
    `jax.lax.platform_dependent` branch, resolved when the computation is lowered for its platform.
    Both branches give the same numbers up to float rounding (tests/models/test_conv.py).
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(
            f"conv_nhwc takes x [B, H, W, C] and kernel [kh, kw, C/groups, O]; got x {x.shape}, "
            f"kernel {kernel.shape}"
        )
    stride_pair = (strides, strides) if isinstance(strides, int) else tuple(strides)
    if len(stride_pair) != 2:
        raise ValueError(f"strides {strides!r}: expected an int or two ints")
    strides_hw = (int(stride_pair[0]), int(stride_pair[1]))
    pads = _explicit_pads(x.shape, kernel.shape, strides_hw, padding)

    def xla(x: Array, kernel: Array) -> Array:
        return lax.conv_general_dilated(
            x,
            kernel,
            strides_hw,
            pads,
            dimension_numbers=_DIMENSION_NUMBERS,
            feature_group_count=feature_group_count,
            precision=precision,
        )

    cpu = _cpu_kernel(x.shape, kernel.shape, strides_hw, pads, feature_group_count, precision)
    if cpu is None:
        return xla(x, kernel)
    return lax.platform_dependent(x, kernel, cpu=cpu, default=xla)


class Conv(nn.Module):
    """`flax.linen.Conv` for NHWC images with the CPU kernels of `conv_nhwc`: same params, same numbers.

    The fields mean what they mean for `nn.Conv` (`kernel` [kh, kw, C/groups, features] and optional
    `bias` [features], the same default initialisers, compute in `dtype`, store in `param_dtype`), so the
    variables of a model built with `Conv` and with `nn.Conv` are interchangeable.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel_size = tuple(self.kernel_size)
        channels = x.shape[-1]
        if len(kernel_size) != 2 or x.ndim != 4:
            raise ValueError(
                f"Conv {self.name}: takes images [B, H, W, C] and a 2-D kernel_size; got input "
                f"{x.shape} and kernel_size {self.kernel_size} (use flax.linen.Conv for other ranks)"
            )
        if channels % self.feature_group_count:
            raise ValueError(
                f"Conv {self.name}: {channels} input channels do not split into "
                f"feature_group_count={self.feature_group_count} groups"
            )
        kernel = self.param(
            "kernel",
            self.kernel_init,
            (*kernel_size, channels // self.feature_group_count, self.features),
            self.param_dtype,
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv_nhwc(
            x, kernel, self.strides, self.padding, self.feature_group_count, self.precision
        )
        return y + bias if bias is not None else y
