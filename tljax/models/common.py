"""Building blocks shared by every tljax architecture.

* `TapRecorder`: hands out named intermediate activations in one forward pass and tells the model
  when every requested tap has been seen, so no layer past the deepest tap is computed.
* `batch_norm`: a BatchNorm whose inference/training mode is decided per layer (the BN policy of
  `tljax.optim` freezes some layers' statistics while others update), independent of the optimizer.
* Padding and pooling helpers that reproduce PyTorch and TensorFlow semantics exactly, so that ported
  weights give the numbers of the framework they came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class TapRecorder:
    """Records the activations a caller asked for, by name, during one forward pass.

    Usage inside a model's `__call__`:

        rec = TapRecorder(taps, self.tap_names(), type(self).__name__)
        x = ...
        if rec.add("conv1_1", x):
            return rec.outputs

    `add` returns True once every requested tap has been recorded, so the model returns early and never
    computes layers past the deepest tap. With `taps=None` nothing is recorded and `add` is always False.
    """

    def __init__(self, taps: Sequence[str] | None, valid: Sequence[str], model_name: str):
        if isinstance(taps, str):
            taps = (taps,)
        self.active = taps is not None
        self.pending = set(taps or ())
        unknown = [t for t in (taps or ()) if t not in valid]
        if unknown:
            raise ValueError(
                f"unknown tap name(s) {unknown} for {model_name}; valid taps are: {', '.join(valid)} "
                "(list them with tljax.models.tap_names(model))"
            )
        self.outputs: dict[str, Array] = {}

    def add(self, name: str, x: Array) -> bool:
        if not self.active:
            return False
        if name in self.pending:
            self.outputs[name] = x
            self.pending.discard(name)
        return not self.pending


def module_path(module: nn.Module, child: str) -> str:
    """'/'-joined path of submodule `child` of `module`, as it appears in the variable tree."""
    return "/".join((*module.path, child)) if module.path else child


def bn_is_frozen(path: str, frozen_bn: Sequence[str]) -> bool:
    """True if the BN layer at `path` matches one of the `frozen_bn` regexes (full match)."""
    return any(re.fullmatch(pattern, path) for pattern in frozen_bn)


def batch_norm(
    parent: nn.Module,
    name: str,
    x: Array,
    *,
    train: bool,
    frozen_bn: Sequence[str],
    epsilon: float,
    momentum: float = 0.9,
    use_scale: bool = True,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
) -> Array:
    """Applies BatchNorm `name` (a child of `parent`) with a per-layer mode.

    In training mode a layer normalises with batch statistics and updates its running averages, unless its
    path matches `frozen_bn`: then it uses (and keeps) the stored statistics, like Keras `training=False`.
    `momentum=0.9` in Flax equals PyTorch's default `momentum=0.1`. `use_scale=False` is a BN without a
    learned scale (Keras' `scale=False`, e.g. Keras Inception V3).
    """
    frozen = bn_is_frozen(module_path(parent, name), frozen_bn)
    return nn.BatchNorm(
        use_running_average=(not train) or frozen,
        momentum=momentum,
        epsilon=epsilon,
        use_scale=use_scale,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )(x)


def conv_bn_relu_taps(
    parent: nn.Module,
    rec: TapRecorder,
    x: Array,
    suffix: str,
    features: int,
    kernel: int,
    pad: int,
    *,
    train: bool,
    kernel_init: Any,
) -> tuple[Array, bool]:
    """torch-style `conv{suffix}` (symmetric padding) → `bn{suffix}` (if `parent.batch_norm`) →
    `relu{suffix}`, each recorded as a tap; returns the activation and whether every tap is recorded.

    The unit of VGG-like nets. `parent` supplies `batch_norm`, `frozen_bn`, `dtype`, `param_dtype`.
    """
    x = nn.Conv(
        features,
        (kernel, kernel),
        padding=((pad, pad), (pad, pad)),
        kernel_init=kernel_init,
        dtype=parent.dtype,
        param_dtype=parent.param_dtype,
        name=f"conv{suffix}",
    )(x)
    if rec.add(f"conv{suffix}", x):
        return x, True
    if parent.batch_norm:
        x = batch_norm(
            parent,
            f"bn{suffix}",
            x,
            train=train,
            frozen_bn=parent.frozen_bn,
            epsilon=1e-5,
            dtype=parent.dtype,
            param_dtype=parent.param_dtype,
        )
        if rec.add(f"bn{suffix}", x):
            return x, True
    x = nn.relu(x)
    return x, rec.add(f"relu{suffix}", x)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one spatial axis: the extra pixel goes bottom/right."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def max_pool_torch(
    x: Array, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> Array:
    """`torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=...)`, NHWC; padding is -inf.

    With `ceil_mode` the output size rounds up, (n + 2p - k) / s + 1, except that torch drops a last
    window that would start in the right/bottom padding; the extra windows are padded bottom/right.
    """
    if not ceil_mode:
        pad = ((padding, padding), (padding, padding))
        return nn.max_pool(x, (kernel, kernel), strides=(stride, stride), padding=pad)

    def pads(n: int) -> tuple[int, int]:
        out = -((-(n + 2 * padding - kernel)) // stride) + 1
        if (out - 1) * stride >= n + padding:
            out -= 1
        return (padding, (out - 1) * stride + kernel - n - padding)

    return nn.max_pool(
        x, (kernel, kernel), strides=(stride, stride), padding=(pads(x.shape[1]), pads(x.shape[2]))
    )


def adaptive_avg_pool(x: Array, out_hw: tuple[int, int]) -> Array:
    """`torch.nn.AdaptiveAvgPool2d(out_hw)` on NHWC input, bin edges exactly as PyTorch computes them.

    Bin i along an axis of length n covers [floor(i*n/out), ceil((i+1)*n/out)); bins may overlap or
    repeat when n < out (e.g. VGG at a small input size), which is why this is not a plain reshape-mean.
    """
    h, w = x.shape[1], x.shape[2]
    out_h, out_w = out_hw
    if (h, w) == (out_h, out_w):
        return x
    if h % out_h == 0 and w % out_w == 0:
        b, _, _, c = x.shape
        x = x.reshape(b, out_h, h // out_h, out_w, w // out_w, c)
        return x.mean(axis=(2, 4))

    def bins(n: int, out: int) -> list[tuple[int, int]]:
        return [((i * n) // out, -((-(i + 1) * n) // out)) for i in range(out)]

    rows = [x[:, a:b].mean(axis=1) for a, b in bins(h, out_h)]  # out_h × [B, W, C]
    x = jnp.stack(rows, axis=1)  # [B, out_h, W, C]
    cols = [x[:, :, a:b].mean(axis=2) for a, b in bins(w, out_w)]
    return jnp.stack(cols, axis=2)  # [B, out_h, out_w, C]


def init_size(model: nn.Module) -> int:
    """A square input size at which `model.init` creates every variable: 64 px, or the architecture's
    `init_input_size` where 64 is too small (Inception V3's VALID stem and auxiliary head)."""
    return max(64, int(getattr(model, "init_input_size", 64)))
