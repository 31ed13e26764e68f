"""EfficientNet-Lite0..4 (Tan & Le 2019, the "lite" variant for mobile accelerators).

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excite, and the stem (32 ch), the
head (1280 ch) and the repeats of the first and last block groups are not scaled. Convolutions use
TensorFlow 'SAME' padding (extra pixel bottom/right), BN epsilon 1e-3. Module names map one-to-one onto
the `efficientnet-lite-pytorch` state_dict (`_conv_stem` → `stem_conv`, `_blocks.N._bn1` →
`blocks_N/depthwise_bn`, …). Taps: `stem`, `blocks.0` … `blocks.{N-1}`, `head`, `pool`, `logits`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from tljax.models.common import TapRecorder, batch_norm, tf_same_padding
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef


class BlockGroup(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# The EfficientNet-B0 / Lite0 block groups: r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, ...
LITE_GROUPS = (
    BlockGroup(1, 3, 1, 1, 32, 16),
    BlockGroup(2, 3, 2, 6, 16, 24),
    BlockGroup(2, 5, 2, 6, 24, 40),
    BlockGroup(3, 3, 2, 6, 40, 80),
    BlockGroup(3, 5, 1, 6, 80, 112),
    BlockGroup(4, 5, 2, 6, 112, 192),
    BlockGroup(1, 3, 1, 6, 192, 320),
)

# name: (width multiplier, depth multiplier, native resolution, dropout before the classifier)
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by `width`, rounded to a multiple of `divisor` and never down by >10%."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class BlockSpec(NamedTuple):
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int
    group: int  # index into LITE_GROUPS


def block_specs(width: float, depth: float) -> list[BlockSpec]:
    """Every MBConv block of a Lite variant, in order, after width/depth scaling."""
    specs = []
    last = len(LITE_GROUPS) - 1
    for g, group in enumerate(LITE_GROUPS):
        in_ch = 32 if g == 0 else round_filters(group.in_ch, width)  # the stem is not scaled
        out_ch = round_filters(group.out_ch, width)
        repeats = group.repeats if g in (0, last) else int(math.ceil(depth * group.repeats))
        for r in range(repeats):
            specs.append(
                BlockSpec(
                    group.kernel,
                    group.stride if r == 0 else 1,
                    group.expand,
                    in_ch if r == 0 else out_ch,
                    out_ch,
                    g,
                )
            )
    return specs


def same_padding(x: jax.Array, kernel: int, stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """TensorFlow-'SAME' padding of x [B, H, W, C] as (low, high) pairs, for a conv's `padding`."""
    return (
        tf_same_padding(x.shape[1], kernel, stride),
        tf_same_padding(x.shape[2], kernel, stride),
    )


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise (stride) → 1×1 project; identity skip if shapes match."""

    spec: BlockSpec
    drop_path_rate: float
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    def _pointwise(self, features, name):
        return self.conv(
            features,
            (1, 1),
            padding="VALID",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _bn(self, name, x):
        return batch_norm(
            self,
            name,
            x,
            train=self.train,
            frozen_bn=self.frozen_bn,
            epsilon=1e-3,
            momentum=0.99,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x):
        s = self.spec
        hidden = s.in_ch * s.expand
        y = x
        if s.expand != 1:
            y = nn.relu6(self._bn("expand_bn", self._pointwise(hidden, "expand_conv")(y)))
        y = self.conv(
            hidden,
            (s.kernel, s.kernel),
            strides=(s.stride, s.stride),
            padding=same_padding(y, s.kernel, s.stride),
            feature_group_count=hidden,  # depthwise: one [k, k] filter per channel
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="depthwise_conv",
        )(y)
        y = nn.relu6(self._bn("depthwise_bn", y))
        y = self._bn("project_bn", self._pointwise(s.out_ch, "project_conv")(y))
        if s.stride == 1 and s.in_ch == s.out_ch:
            if self.train and self.drop_path_rate > 0:
                # Stochastic depth: drop the whole residual branch per example.
                keep = 1.0 - self.drop_path_rate
                mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (y.shape[0], 1, 1, 1))
                y = jnp.where(mask, y / keep, 0).astype(y.dtype)
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; `variant` is a key of LITE_VARIANTS."""

    variant: str = "efficientnet_lite0"
    num_classes: int = 1000
    include_top: bool = True
    drop_path_rate: float = 0.2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)

    def _specs(self) -> list[BlockSpec]:
        width, depth, _, _ = LITE_VARIANTS[self.variant]
        return block_specs(width, depth)

    def tap_names(self) -> tuple[str, ...]:
        names = ("stem", *(f"blocks.{i}" for i in range(len(self._specs()))), "head", "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        groups: list[list[str]] = [[] for _ in LITE_GROUPS]
        for i, spec in enumerate(self._specs()):
            groups[spec.group].append(f"blocks_{i}")
        out = [("stem_conv", "stem_bn"), *map(tuple, groups), ("head_conv", "head_bn")]
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: the stem, every MBConv block, the head, the
        classifier (the unit of "transfer the first n layers")."""
        out = [
            ("stem_conv", "stem_bn"),
            *((f"blocks_{i}",) for i in range(len(self._specs()))),
            ("head_conv", "head_bn"),
        ]
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), self.variant)
        bn = dict(
            train=train,
            frozen_bn=self.frozen_bn,
            epsilon=1e-3,
            momentum=0.99,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        conv = dict(
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = x.astype(self.dtype)
        stem_padding = same_padding(x, 3, 2)
        x = self.conv(32, (3, 3), strides=(2, 2), padding=stem_padding, name="stem_conv", **conv)(x)
        x = nn.relu6(batch_norm(self, "stem_bn", x, **bn))
        if rec.add("stem", x):
            return rec.outputs
        specs = self._specs()
        for i, spec in enumerate(specs):
            rate = self.drop_path_rate * i / len(specs)  # linearly deeper, as in the reference
            x = MBConv(
                spec,
                rate,
                train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                self.conv,
                name=f"blocks_{i}",
            )(x)
            if rec.add(f"blocks.{i}", x):
                return rec.outputs
        x = self.conv(1280, (1, 1), padding="VALID", name="head_conv", **conv)(x)
        x = nn.relu6(batch_norm(self, "head_bn", x, **bn))
        if rec.add("head", x):
            return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, 1280]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dropout(LITE_VARIANTS[self.variant][3], deterministic=not train)(x)
        bound = 1.0 / x.shape[-1] ** 0.5
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
            kernel_init=lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, -bound, bound),
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


def _make(variant: str):
    def build(**kwargs) -> EfficientNetLite:
        return EfficientNetLite(variant=variant, **kwargs)

    build.__doc__ = f"{variant} (efficientnet-lite-pytorch layout, TF-SAME padding)."
    return build


for _variant in LITE_VARIANTS:
    register(_variant)(_make(_variant))
