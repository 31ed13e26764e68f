"""A CaffeNet-like network (5 conv + 3 dense layers), the shape Yosinski et al. 2014 transferred.

Krizhevsky et al.'s AlexNet as Caffe ships it ("CaffeNet"): conv1–conv5 with max-pools after conv1, conv2
and conv5, then fc6, fc7 and the classifier (fc8), ReLU everywhere, dropout 0.5 before fc7 and fc8.
Scaled down for small images (Fashion-MNIST at 28–32 px): 5×5 convs with padding 2 for conv1–conv2,
3×3 with padding 1 for conv3–conv5, 2×2/2 max-pools, and a fixed 4×4 adaptive average pool before fc6
so the parameter shapes do not depend on the input size (a 32 px input is already 4×4 there). Local
response normalisation and conv grouping are left out (single device; LRN was later found to add
little); `batch_norm=True` adds BN after every conv for experiments on the BN policy.

Registered as `caffenet` (widths 16-32-48-48-32, fc 128: a CPU sweep of hundreds of runs fits in an
hour) and `caffenet_wide` (CaffeNet's channel counts 96-256-384-384-256, fc 4096, for GPUs).
Taps: `conv{i}`, `bn{i}` (with BN), `relu{i}` (i = 1..5), `pool1`, `pool2`, `pool5`, `pool` (global
average of pool5), `fc6`, `relu6`, `fc7`, `relu7`, `logits`. `layers()` is the 8-layer list of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.models.common import (
    TapRecorder,
    adaptive_avg_pool,
    conv_bn_relu_taps,
    max_pool_torch,
)
from tljax.models.registry import register

# (kernel, padding, pooled after) of conv1..conv5.
CONV_LAYOUT = ((5, 2, True), (5, 2, True), (3, 1, False), (3, 1, False), (3, 1, True))
POOL_GRID = (4, 4)  # adaptive average pool before fc6

# He-normal over the fan-in (ReLU nets trained from scratch without BN), zero biases.
kernel_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class CaffeNet(nn.Module):
    """CaffeNet-like: `widths` are conv1..conv5's channels, `fc_features` those of fc6 and fc7.

    `include_top=False` drops fc6/fc7/classifier and returns the global average of pool5, [B, widths[-1]].
    """

    widths: tuple[int, int, int, int, int] = (16, 32, 48, 48, 32)
    fc_features: int = 128
    batch_norm: bool = False
    num_classes: int = 1000
    include_top: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()

    def tap_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for i, (_, _, pooled) in enumerate(CONV_LAYOUT, start=1):
            names += [f"conv{i}", *((f"bn{i}",) if self.batch_norm else ()), f"relu{i}"]
            if pooled:
                names.append(f"pool{i}")
        names.append("pool")
        if self.include_top:
            names += ["fc6", "relu6", "fc7", "relu7", "logits"]
        return tuple(names)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: conv1..conv5 (each with its BN), fc6, fc7,
        classifier — Yosinski et al.'s eight layers, the unit of "transfer the first n layers"."""
        out = [
            (f"conv{i}", f"bn{i}") if self.batch_norm else (f"conv{i}",)
            for i in range(1, len(CONV_LAYOUT) + 1)
        ]
        if self.include_top:
            out += [("fc6",), ("fc7",), ("classifier",)]
        return tuple(out)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """Same as `layers()`: the network is too small for coarser stages to mean anything."""
        return self.layers()

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), "caffenet")
        if len(self.widths) != len(CONV_LAYOUT):
            raise ValueError(f"CaffeNet needs 5 conv widths, got {self.widths}")
        x = x.astype(self.dtype)  # [B, H, W, 3]
        for i, ((kernel, pad, pooled), features) in enumerate(
            zip(CONV_LAYOUT, self.widths, strict=True), start=1
        ):
            x, done = conv_bn_relu_taps(
                self, rec, x, str(i), features, kernel, pad, train=train, kernel_init=kernel_init
            )
            if done:
                return rec.outputs
            if pooled:
                x = max_pool_torch(x, 2, 2)
                if rec.add(f"pool{i}", x):
                    return rec.outputs

        if rec.active and "pool" in rec.pending or not self.include_top:
            pooled_features = x.mean(axis=(1, 2))  # [B, widths[-1]]
            if rec.add("pool", pooled_features) or not self.include_top:
                return rec.outputs if rec.active else pooled_features

        x = adaptive_avg_pool(x, POOL_GRID)  # [B, 4, 4, C5]
        x = x.reshape(x.shape[0], -1)  # NHWC flatten
        for index, name in enumerate(("fc6", "fc7")):
            if index:  # CaffeNet's dropout sits after relu6 and relu7
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = nn.Dense(
                self.fc_features,
                kernel_init=kernel_init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=name,
            )(x)
            if rec.add(name, x):
                return rec.outputs
            x = nn.relu(x)
            if rec.add(name.replace("fc", "relu"), x):
                return rec.outputs
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(
            self.num_classes,
            kernel_init=kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


@register("caffenet")
def caffenet(**kwargs) -> CaffeNet:
    """CaffeNet-like net sized for CPU sweeps: convs 16-32-48-48-32, fc6/fc7 128."""
    return CaffeNet(**kwargs)


@register("caffenet_wide")
def caffenet_wide(**kwargs) -> CaffeNet:
    """CaffeNet-like net with CaffeNet's channel counts: convs 96-256-384-384-256, fc6/fc7 4096."""
    return CaffeNet(widths=(96, 256, 384, 384, 256), fc_features=4096, **kwargs)
