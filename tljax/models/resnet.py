"""ResNet18/34/50/101/152 (He et al. 2015) in torchvision's layout, and Keras Applications' variant.

Two variants of the bottleneck ResNets exist, and their weights do not fit each other:

* `resnet50` (torchvision, "v1.5"): the stride-2 of a stage's first block is on its 3×3 conv; convs
  have no bias; BN epsilon 1e-5.
* `resnet50_keras` (Keras Applications `ResNet50`/`101`/`152`, "v1" as in the paper): the stride is on
  the block's first 1×1 conv, every conv has a bias, BN epsilon 1.001e-5. Its weights come from Keras
  files (`tljax.weights.keras_tables`, Keras names `conv{s}_block{b}_{k}_conv` → `layer{s-1}_{b-1}/conv{k}`).

Both share the module names, which mirror torchvision's state_dict (`conv1`, `bn1`, `layer1_0/conv1`,
`layer1_0/downsample_conv`, …), the classifier is `classifier`, and the taps: `stem` (after the
max-pool), `layer{i}.{j}` (every block output), `pool` (global average), `logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tljax.models.common import TapRecorder, batch_norm, max_pool_torch
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's kaiming init


def torch_linear_init(fan_in: int):
    """torch.nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class ResidualBlock(nn.Module):
    """A BasicBlock (two 3×3 convs) or Bottleneck (1×1, 3×3 with the stride, 1×1 ×4) with projection."""

    features: int
    stride: int
    bottleneck: bool
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv
    stride_in_1x1: bool = False  # True: "v1" (Keras), the stride on the first 1×1 conv
    conv_bias: bool = False
    bn_epsilon: float = 1e-5

    def _conv(self, features, kernel, stride, name):
        pad = kernel // 2  # torchvision's symmetric padding (not 'SAME' on the stride-2 convs)
        return self.conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            use_bias=self.conv_bias,
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
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x):
        out_features = self.features * (4 if self.bottleneck else 1)
        residual = x
        if self.bottleneck:
            # A 1×1 conv with stride 2 and no padding reads pixels 0, 2, 4, … of either input parity.
            s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
            y = nn.relu(self._bn("bn1", self._conv(self.features, 1, s1, "conv1")(x)))
            y = nn.relu(self._bn("bn2", self._conv(self.features, 3, s3, "conv2")(y)))
            y = self._bn("bn3", self._conv(out_features, 1, 1, "conv3")(y))
        else:
            y = nn.relu(self._bn("bn1", self._conv(self.features, 3, self.stride, "conv1")(x)))
            y = self._bn("bn2", self._conv(self.features, 3, 1, "conv2")(y))
        if self.stride != 1 or x.shape[-1] != out_features:
            residual = self._bn(
                "downsample_bn", self._conv(out_features, 1, self.stride, "downsample_conv")(x)
            )
        return nn.relu(y + residual)


RESNET_LAYERS: dict[int, tuple[tuple[int, ...], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}


class ResNet(nn.Module):
    """ResNet of `depth` ∈ {18, 34, 50, 101, 152}; `include_top=False` returns pooled features [B, C].

    `stride_in_1x1`, `conv_bias`, `bn_epsilon` select the Keras "v1" variant (see the module docstring).
    """

    depth: int = 50
    num_classes: int = 1000
    include_top: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)
    stride_in_1x1: bool = False
    conv_bias: bool = False
    bn_epsilon: float = 1e-5

    def _blocks(self) -> list[tuple[str, str, int, int]]:
        """(module name, tap name, features, stride) of every residual block, in order."""
        counts, _ = RESNET_LAYERS[self.depth]
        blocks = []
        for layer, count in enumerate(counts, start=1):
            for index in range(count):
                stride = 2 if (index == 0 and layer > 1) else 1
                blocks.append(
                    (
                        f"layer{layer}_{index}",
                        f"layer{layer}.{index}",
                        64 * 2 ** (layer - 1),
                        stride,
                    )
                )
        return blocks

    def tap_names(self) -> tuple[str, ...]:
        names = ("stem", *(tap for _, tap, _, _ in self._blocks()), "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        counts, _ = RESNET_LAYERS[self.depth]
        out: list[tuple[str, ...]] = [("conv1", "bn1")]
        out += [
            tuple(f"layer{layer}_{i}" for i in range(n)) for layer, n in enumerate(counts, start=1)
        ]
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: the stem, every residual block, the classifier.

        The unit of "transfer the first n layers": a block is the smallest unit a residual network can
        be cut at without splitting a skip connection.
        """
        out = [("conv1", "bn1"), *((name,) for name, _, _, _ in self._blocks())]
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), f"resnet{self.depth}")
        _, bottleneck = RESNET_LAYERS[self.depth]
        x = x.astype(self.dtype)
        x = self.conv(
            64,
            (7, 7),
            strides=(2, 2),
            padding=((3, 3), (3, 3)),
            use_bias=self.conv_bias,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv1",
        )(x)
        x = batch_norm(
            self,
            "bn1",
            x,
            train=train,
            frozen_bn=self.frozen_bn,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        # Keras zero-pads before this pool where torch pads -inf: the same after the ReLU (x >= 0).
        x = max_pool_torch(nn.relu(x), 3, 2, padding=1)
        if rec.add("stem", x):
            return rec.outputs
        for name, tap, features, stride in self._blocks():
            x = ResidualBlock(
                features,
                stride,
                bottleneck,
                train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                self.conv,
                self.stride_in_1x1,
                self.conv_bias,
                self.bn_epsilon,
                name=name,
            )(x)
            if rec.add(tap, x):
                return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, C]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_linear_init(x.shape[-1]),
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


def _make(depth: int):
    def build(**kwargs) -> ResNet:
        return ResNet(depth=depth, **kwargs)

    build.__doc__ = f"ResNet-{depth} (torchvision layout)."
    return build


for _depth in RESNET_LAYERS:
    register(f"resnet{_depth}")(_make(_depth))


def _make_keras(depth: int):
    def build(**kwargs) -> ResNet:
        return ResNet(
            depth=depth, stride_in_1x1=True, conv_bias=True, bn_epsilon=1.001e-5, **kwargs
        )

    build.__doc__ = (
        f'ResNet-{depth} in Keras Applications\' layout ("v1": stride on the first 1×1 conv, conv '
        "biases, BN epsilon 1.001e-5); not interchangeable with torchvision's v1.5 `resnet{depth}`."
    )
    return build


for _depth in (50, 101, 152):  # the depths Keras Applications publishes
    register(f"resnet{_depth}_keras")(_make_keras(_depth))
