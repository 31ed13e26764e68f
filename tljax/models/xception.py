"""Xception (Chollet 2017) in Keras Applications' layout, 299×299 native.

Entry flow (a two-conv stem and three residual blocks that halve the resolution), middle flow (eight
residual blocks of three 728-wide separable convs) and exit flow (a residual block to 1024 channels, then
separable convs to 1536 and 2048), exactly as `keras.applications.Xception` builds them: every separable
conv is a 3×3 depthwise conv followed directly by a 1×1 pointwise conv — no BN or activation between,
no biases — padded 1 on every side; the stem convs are VALID; each down-sampling block adds a 1×1
stride-2 conv + BN shortcut to a 3×3 stride-2 max pool with TF 'same' padding (the extra window
bottom/right, padded with -inf); BN epsilon 1e-3, Keras momentum 0.99. Module names follow Keras'
(`block1/conv1`, `block1/conv1_bn`, `block2/sepconv1/{depthwise,pointwise}`, `block2/sepconv1_bn`, …,
`block2/residual_conv`, `block2/residual_bn` for Keras' unnamed shortcut layers, `predictions` →
`classifier`). Taps: `entry_flow.0` (stem, block 1), `entry_flow.1` … `entry_flow.3` (blocks 2–4),
`middle_flow.0` … `middle_flow.7` (blocks 5–12), `exit_flow.0` (block 13), `exit_flow` (block 14, the
features the classifier pools), `pool`, `logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.models.common import TapRecorder, batch_norm
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef

conv_init = nn.initializers.glorot_uniform()  # Keras' Conv2D / SeparableConv2D default
EPSILON, MOMENTUM = 1e-3, 0.99  # Keras BatchNormalization defaults

# Down-sampling blocks: Keras block id → (sepconv1 width, sepconv2 width, ReLU before sepconv1).
REDUCTION_BLOCKS = {
    2: (128, 128, False),
    3: (256, 256, True),
    4: (728, 728, True),
    13: (728, 1024, True),
}
MIDDLE_BLOCKS = tuple(range(5, 13))  # blocks 5..12: three 728-wide separable convs + identity
MIDDLE_WIDTH = 728


class SeparableConv(nn.Module):
    """Keras' `SeparableConv2D(features, 3, padding='same', use_bias=False)`: depthwise then pointwise."""

    features: int
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        common = dict(
            use_bias=False, kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype
        )
        x = self.conv(
            channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            feature_group_count=channels,
            name="depthwise",
            **common,
        )(x)
        return self.conv(self.features, (1, 1), padding="VALID", name="pointwise", **common)(x)


class XceptionBlock(nn.Module):
    """One Keras Xception block: `kind` 'stem' (block 1), 'reduction' (2–4, 13), 'middle' (5–12) or
    'exit' (14); `widths` are its convs' output channels."""

    kind: str
    widths: tuple[int, ...]
    relu_first: bool
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

    def _plain_conv(self, features, kernel, stride, name):
        return self.conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding="VALID",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _separable(self, i, x):
        sep = SeparableConv(
            self.widths[i - 1], self.dtype, self.param_dtype, self.conv, name=f"sepconv{i}"
        )
        return self._bn(f"sepconv{i}_bn", sep(x))

    @nn.compact
    def __call__(self, x):
        if self.kind == "stem":
            x = nn.relu(self._bn("conv1_bn", self._plain_conv(self.widths[0], 3, 2, "conv1")(x)))
            return nn.relu(self._bn("conv2_bn", self._plain_conv(self.widths[1], 3, 1, "conv2")(x)))
        if self.kind == "exit":
            x = nn.relu(self._separable(1, x))
            return nn.relu(self._separable(2, x))
        y = x
        for i in range(1, len(self.widths) + 1):
            if i > 1 or self.relu_first:
                y = nn.relu(y)
            y = self._separable(i, y)
        if self.kind == "middle":
            return y + x
        # A 1×1 'same' conv with stride 2 reads every other pixel, unpadded: VALID is the same thing.
        shortcut = self._bn(
            "residual_bn", self._plain_conv(self.widths[-1], 1, 2, "residual_conv")(x)
        )
        y = nn.max_pool(y, (3, 3), strides=(2, 2), padding="SAME")  # TF 'same', -inf padding
        return y + shortcut


def _blocks() -> list[tuple[int, str, tuple[int, ...], bool, str]]:
    """(Keras block id, kind, widths, ReLU first, tap) of every block, input → output."""
    out: list[tuple[int, str, tuple[int, ...], bool, str]] = [
        (1, "stem", (32, 64), False, "entry_flow.0")
    ]
    for i in (2, 3, 4):
        w1, w2, relu = REDUCTION_BLOCKS[i]
        out.append((i, "reduction", (w1, w2), relu, f"entry_flow.{i - 1}"))
    for j, i in enumerate(MIDDLE_BLOCKS):
        out.append((i, "middle", (MIDDLE_WIDTH,) * 3, True, f"middle_flow.{j}"))
    w1, w2, relu = REDUCTION_BLOCKS[13]
    out.append((13, "reduction", (w1, w2), relu, "exit_flow.0"))
    out.append((14, "exit", (1536, 2048), False, "exit_flow"))
    return out


class Xception(nn.Module):
    """Xception (Keras layout); `include_top=False` returns the pooled features [B, 2048]."""

    num_classes: int = 1000
    include_top: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)

    def tap_names(self) -> tuple[str, ...]:
        names = (*(tap for *_, tap in _blocks()), "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The stem (block 1), the rest of the entry flow (2–4), the middle flow (5–12), the exit flow
        (13, 14), the classifier."""
        out = [("block1",), ("block2", "block3", "block4")]
        out += [tuple(f"block{i}" for i in MIDDLE_BLOCKS), ("block13", "block14")]
        return (*out, ("classifier",)) if self.include_top else tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: each of the 14 blocks, the classifier."""
        out = [(f"block{i}",) for i, *_ in _blocks()]
        return (*out, ("classifier",)) if self.include_top else tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), "xception")
        x = x.astype(self.dtype)
        for i, kind, widths, relu_first, tap in _blocks():
            x = XceptionBlock(
                kind,
                widths,
                relu_first,
                train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                self.conv,
                name=f"block{i}",
            )(x)
            if rec.add(tap, x):
                return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, 2048]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dense(
            self.num_classes,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


@register("xception")
def xception(**kwargs) -> Xception:
    """Xception (Keras Applications layout, 299²)."""
    return Xception(**kwargs)
