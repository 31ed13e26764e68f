"""MobileNet V1 (Howard et al. 2017) in Keras Applications' layout: width multiplier α, depth multiplier.

Registered as `mobilenet_v1` (α = 1) and `mobilenet_v1_025`, `_050`, `_075` (the α Keras publishes
ImageNet weights for); `alpha` and `depth_multiplier` are fields, as in `keras.applications.MobileNet`.

A full 3×3 stride-2 conv stem (`conv1`, 32·α channels) and 13 depthwise-separable blocks, each a 3×3
depthwise conv → BN → ReLU6 → 1×1 pointwise conv → BN → ReLU6, exactly as
`keras.applications.MobileNet` builds them: widths `int(w · α)`, the depthwise conv producing
`channels · depth_multiplier` maps, no conv biases, BN epsilon 1e-3 (Keras' default, torch's is 1e-5) and
Keras momentum 0.99. Padding is TensorFlow's: the stem is 'same' (the extra pixel bottom/right, e.g.
(0, 1) at 224 px), stride-1 depthwise convs pad 1 on every side, and a stride-2 block pads
((0, 1), (0, 1)) explicitly before a VALID conv (Keras' `ZeroPadding2D` — not torch's symmetric pad, and
not 'same' either at odd sizes). The head is global average pooling → dropout → Keras' 1×1 `conv_preds` with a bias (kept a 1×1 conv,
named `classifier`, so its [1, 1, C, K] kernel is Keras' own). Module names:
`conv1`, `conv1_bn`, `blocks_N/{conv_dw, conv_dw_bn, conv_pw, conv_pw_bn}` for Keras' `conv_dw_N` /
`conv_pw_N` (N = 1..13, Keras' block ids), `classifier`. Taps: `stem`, `blocks.1` … `blocks.13`, `pool`,
`logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.errors import ConfigError
from tljax.models.common import TapRecorder, batch_norm
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef

# (pointwise width before α, depthwise stride) of Keras' blocks 1..13.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)
STEM_WIDTH = 32
ALPHAS = (0.25, 0.5, 0.75, 1.0)  # the widths Keras publishes ImageNet weights for

conv_init = nn.initializers.glorot_uniform()  # Keras' Conv2D default
EPSILON, MOMENTUM = 1e-3, 0.99  # Keras BatchNormalization defaults


class DepthwiseSeparable(nn.Module):
    """Keras' `_depthwise_conv_block`: 3×3 depthwise (stride) → BN → ReLU6 → 1×1 pointwise → BN → ReLU6."""

    features: int
    stride: int
    depth_multiplier: int
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    def _bn(self, name, x):
        return batch_norm(
            self,
            name,
            x,
            train=self.train,
            frozen_bn=self.frozen_bn,
            epsilon=EPSILON,
            momentum=MOMENTUM,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        # Keras: stride 1 is 'same' (1 on every side); stride 2 is ZeroPadding2D((0, 1), (0, 1)) + VALID.
        pad = ((1, 1), (1, 1)) if self.stride == 1 else ((0, 1), (0, 1))
        x = self.conv(
            channels * self.depth_multiplier,
            (3, 3),
            strides=(self.stride, self.stride),
            padding=pad,
            feature_group_count=channels,
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv_dw",
        )(x)
        x = nn.relu6(self._bn("conv_dw_bn", x))
        x = self.conv(
            self.features,
            (1, 1),
            padding="VALID",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv_pw",
        )(x)
        return nn.relu6(self._bn("conv_pw_bn", x))


class MobileNetV1(nn.Module):
    """MobileNet V1 (Keras layout); `include_top=False` returns the pooled features [B, 1024·α]."""

    alpha: float = 1.0
    depth_multiplier: int = 1
    num_classes: int = 1000
    include_top: bool = True
    dropout_rate: float = 1e-3  # Keras' default
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)

    def widths(self) -> list[int]:
        """Output channels of the stem and of blocks 1..13 (Keras' `int(w · α)`)."""
        return [int(w * self.alpha) for w in (STEM_WIDTH, *(w for w, _ in BLOCKS))]

    def tap_names(self) -> tuple[str, ...]:
        names = ("stem", *(f"blocks.{i}" for i in range(1, len(BLOCKS) + 1)), "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The stem, then one stage per output resolution (a new stage at every stride-2 block), the
        classifier."""
        out: list[list[str]] = [["conv1", "conv1_bn"], []]
        for i, (_, stride) in enumerate(BLOCKS, start=1):
            if stride == 2 and out[-1]:
                out.append([])
            out[-1].append(f"blocks_{i}")
        if self.include_top:
            out.append(["classifier"])
        return tuple(map(tuple, out))

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: the stem, each depthwise-separable block, the
        classifier (the unit of "transfer the first n layers")."""
        out = [("conv1", "conv1_bn"), *((f"blocks_{i}",) for i in range(1, len(BLOCKS) + 1))]
        return (*out, ("classifier",)) if self.include_top else tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        if self.depth_multiplier < 1 or self.alpha <= 0:
            raise ConfigError(
                f"MobileNetV1: alpha={self.alpha}, depth_multiplier={self.depth_multiplier}; "
                "need alpha > 0 (Keras' ImageNet weights: 0.25, 0.5, 0.75, 1.0) and an integer "
                "depth_multiplier ≥ 1"
            )
        rec = TapRecorder(taps, self.tap_names(), "mobilenet_v1")
        widths = self.widths()
        x = x.astype(self.dtype)
        x = self.conv(
            widths[0],
            (3, 3),
            strides=(2, 2),
            padding="SAME",  # TF 'same': at even sizes the extra pixel goes bottom/right
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv1",
        )(x)
        x = batch_norm(
            self,
            "conv1_bn",
            x,
            train=train,
            frozen_bn=self.frozen_bn,
            epsilon=EPSILON,
            momentum=MOMENTUM,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = nn.relu6(x)
        if rec.add("stem", x):
            return rec.outputs
        for i, ((_, stride), width) in enumerate(zip(BLOCKS, widths[1:], strict=True), start=1):
            x = DepthwiseSeparable(
                width,
                stride,
                self.depth_multiplier,
                train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                self.conv,
                name=f"blocks_{i}",
            )(x)
            if rec.add(f"blocks.{i}", x):
                return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, C]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = self.conv(  # Keras' `conv_preds`: a 1×1 conv (with bias) on the [B, 1, 1, C] pooled map
            self.num_classes,
            (1, 1),
            padding="VALID",
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x[:, None, None, :])[:, 0, 0, :]
        if rec.add("logits", x):
            return rec.outputs
        return x


def _make(alpha: float):
    def build(**kwargs) -> MobileNetV1:
        return MobileNetV1(**{"alpha": alpha, **kwargs})

    build.__doc__ = f"MobileNet V1, α = {alpha} (Keras Applications layout)."
    return build


# `mobilenet_v1` is α = 1; the narrower ones Keras publishes weights for are registered by name too.
for _alpha in ALPHAS:
    register("mobilenet_v1" if _alpha == 1.0 else f"mobilenet_v1_{int(_alpha * 100):03d}")(
        _make(_alpha)
    )
