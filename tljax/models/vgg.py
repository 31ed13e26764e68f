"""VGG11/13/16/19 with and without BatchNorm, laid out like torchvision's `vgg*` / `vgg*_bn`.

Simonyan & Zisserman 2014. Every 3×3 conv uses padding 1, max-pools are 2×2/2 (`ceil_mode=False`), and
the classifier sees torchvision's adaptive 7×7 average pool, so any input of at least 32 px works and
gives torchvision's numbers. Tap names follow the paper's `conv{stage}_{index}` convention.
`vgg16_keras`/`vgg19_keras` are the same network without dropout, for Keras Applications' weights.
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

# Output channels of the convs in each of the five stages.
VGG_STAGES: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

# torchvision's init: kaiming-normal (fan_out) convs, N(0, 0.01) linears, zero biases.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.normal(0.01)


class VGG(nn.Module):
    """VGG network. `depth` ∈ {11, 13, 16, 19}; `batch_norm` adds BN after every conv.

    `include_top=False` drops fc6/fc7/classifier and returns the global average of pool5, [B, 512].
    """

    depth: int = 16
    batch_norm: bool = False
    num_classes: int = 1000
    include_top: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()

    def tap_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for stage, widths in enumerate(VGG_STAGES[self.depth], start=1):
            for index in range(1, len(widths) + 1):
                names.append(f"conv{stage}_{index}")
                if self.batch_norm:
                    names.append(f"bn{stage}_{index}")
                names.append(f"relu{stage}_{index}")
            names.append(f"pool{stage}")
        names.append("pool")
        if self.include_top:
            names += ["avgpool", "fc6", "relu6", "fc7", "relu7", "logits"]
        return tuple(names)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        out = []
        for stage, widths in enumerate(VGG_STAGES[self.depth], start=1):
            names = []
            for index in range(1, len(widths) + 1):
                names.append(f"conv{stage}_{index}")
                if self.batch_norm:
                    names.append(f"bn{stage}_{index}")
            out.append(tuple(names))
        if self.include_top:
            out += [("fc6",), ("fc7",), ("classifier",)]
        return tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: every conv (with its BN), fc6, fc7, classifier.

        The unit of "transfer the first n layers" (Yosinski et al. 2014 count conv and dense layers).
        """
        out = [
            (f"conv{stage}_{index}", f"bn{stage}_{index}")
            if self.batch_norm
            else (f"conv{stage}_{index}",)
            for stage, widths in enumerate(VGG_STAGES[self.depth], start=1)
            for index in range(1, len(widths) + 1)
        ]
        if self.include_top:
            out += [("fc6",), ("fc7",), ("classifier",)]
        return tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(
            taps, self.tap_names(), f"vgg{self.depth}{'_bn' if self.batch_norm else ''}"
        )
        x = x.astype(self.dtype)
        for stage, widths in enumerate(VGG_STAGES[self.depth], start=1):
            for index, features in enumerate(widths, start=1):
                x, done = conv_bn_relu_taps(
                    self,
                    rec,
                    x,
                    f"{stage}_{index}",
                    features,
                    3,
                    1,
                    train=train,
                    kernel_init=conv_init,
                )
                if done:
                    return rec.outputs
            x = max_pool_torch(x, 2, 2)
            if rec.add(f"pool{stage}", x):
                return rec.outputs

        if rec.active and "pool" in rec.pending or not self.include_top:
            pooled = x.mean(axis=(1, 2))  # [B, 512]
            if rec.add("pool", pooled) or not self.include_top:
                return rec.outputs if rec.active else pooled

        x = adaptive_avg_pool(x, (7, 7))  # [B, 7, 7, 512]
        if rec.add("avgpool", x):
            return rec.outputs
        # Flattened in NHWC order; the weight port permutes torchvision's NCHW-ordered fc6 to match.
        x = x.reshape(x.shape[0], -1)
        for name in ("fc6", "fc7"):
            x = nn.Dense(
                4096,
                kernel_init=dense_init,
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
            kernel_init=dense_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


def _make(depth: int, bn: bool):
    def build(**kwargs) -> VGG:
        return VGG(depth=depth, batch_norm=bn, **kwargs)

    build.__doc__ = f"VGG{depth}{' with BatchNorm' if bn else ''} (torchvision layout)."
    return build


for _depth in VGG_STAGES:
    register(f"vgg{_depth}")(_make(_depth, False))
    register(f"vgg{_depth}_bn")(_make(_depth, True))


def _make_keras(depth: int):
    def build(**kwargs) -> VGG:
        kwargs.setdefault("dropout_rate", 0.0)  # Keras' fc1/fc2 have no dropout
        return VGG(depth=depth, **kwargs)

    build.__doc__ = (
        f"VGG{depth} for Keras Applications' weights (`block{{s}}_conv{{i}}`, `fc1`, `fc2`, "
        "`predictions`; NHWC flatten, no dropout). The same network as torchvision's; Keras itself runs "
        "the top at 224x224 only, tljax's adaptive 7x7 pool (the identity at 224) at any size."
    )
    return build


for _depth in (16, 19):
    register(f"vgg{_depth}_keras")(_make_keras(_depth))
