"""GoogLeNet / Inception V1 (Szegedy et al. 2014) in torchvision's layout, auxiliary heads optional.

torchvision's variant, not the paper's: every conv is conv (no bias) + BN (eps 1e-3) + ReLU, the "5×5"
branch is a 3×3 (torchvision issue 906, kept so that its weights fit), no local response norm, max pools
with `ceil_mode=True`, and `transform_input` re-normalises ImageNet-normalised input to the [-1, 1]
scaling the ported TF weights expect (torchvision turns it on for its pretrained weights, so it is the
default here). Module names mirror torchvision's state_dict (`conv1/conv`, `inception3a/branch2_1/bn`,
`aux1/fc1`, …; `fc` → `classifier`). With `aux_logits=True` the two auxiliary classifiers exist (their
weights load) and come back as the taps `aux1` (after inception_4a) and `aux2` (after inception_4d); the
model's output stays the main logits. Taps: `conv1`, `maxpool1`, `conv2`, `conv3`, `maxpool2`,
`inception_3a`, `inception_3b`, `maxpool3`, `inception_4a` … `inception_4e`, `maxpool4`, `inception_5a`,
`inception_5b`, `pool`, `logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.models.common import TapRecorder, adaptive_avg_pool, batch_norm, max_pool_torch
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef

weight_init = nn.initializers.normal(0.01)  # torchvision: trunc_normal(std=0.01, a=-2, b=2)

# name: (in, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool proj), torchvision's Inception arguments.
INCEPTION_BLOCKS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}

# ImageNet mean/std of the input normalisation; transform_input maps (x - mean) / std to (x - 0.5) / 0.5.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class BasicConv(nn.Module):
    """torchvision's BasicConv2d: conv (no bias, symmetric padding) → BN (eps 1e-3) → ReLU."""

    features: int
    kernel: int | tuple[int, int]  # (kh, kw) for Inception V3's 1×7 / 7×1 factorised convs
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    stride: int = 1
    padding: int | tuple[int, int] = 0  # torch's symmetric (ph, pw)
    epsilon: float = 1e-3
    momentum: float = 0.9  # Flax's 0.9 is torch's default 0.1; Keras' default is 0.99
    bn_scale: bool = True  # Keras Inception V3's `conv2d_bn` has BatchNormalization(scale=False)
    conv: ModuleDef = Conv
    kernel_init: Any = weight_init

    @nn.compact
    def __call__(self, x):
        kh, kw = (self.kernel, self.kernel) if isinstance(self.kernel, int) else self.kernel
        ph, pw = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
        x = self.conv(
            self.features,
            (kh, kw),
            strides=(self.stride, self.stride),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        x = batch_norm(
            self,
            "bn",
            x,
            train=self.train,
            frozen_bn=self.frozen_bn,
            epsilon=self.epsilon,
            momentum=self.momentum,
            use_scale=self.bn_scale,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        return nn.relu(x)


class Inception(nn.Module):
    """Four branches concatenated on channels: 1×1 | 1×1 → 3×3 | 1×1 → 3×3 | 3×3 max-pool → 1×1."""

    widths: tuple[int, ...]
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x):
        _, ch1, ch3_red, ch3, ch5_red, ch5, pool_proj = self.widths
        common = (self.train, tuple(self.frozen_bn), self.dtype, self.param_dtype)

        def basic(features, kernel, name, padding=0):
            return BasicConv(features, kernel, *common, padding=padding, conv=self.conv, name=name)

        b1 = basic(ch1, 1, "branch1")(x)
        b2 = basic(ch3, 3, "branch2_1", padding=1)(basic(ch3_red, 1, "branch2_0")(x))
        b3 = basic(ch5, 3, "branch3_1", padding=1)(basic(ch5_red, 1, "branch3_0")(x))
        b4 = basic(pool_proj, 1, "branch4_1")(max_pool_torch(x, 3, 1, padding=1, ceil_mode=True))
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: adaptive 4×4 average pool → 1×1 conv 128 → fc 1024 + ReLU → dropout → fc."""

    num_classes: int
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x):
        x = adaptive_avg_pool(x, (4, 4))
        x = BasicConv(
            128,
            1,
            self.train,
            tuple(self.frozen_bn),
            self.dtype,
            self.param_dtype,
            conv=self.conv,
            name="conv",
        )(x)
        # torchvision flattens [128, 4, 4] as (C, H, W): transpose first so fc1 is a plain port.
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # [B, 2048]
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=weight_init)
        x = nn.relu(nn.Dense(1024, name="fc1", **dense)(x))
        x = nn.Dropout(0.7, deterministic=not self.train)(x)
        return nn.Dense(self.num_classes, name="fc2", **dense)(x)


class GoogLeNet(nn.Module):
    """GoogLeNet (torchvision layout); `include_top=False` returns the pooled 1024-d features [B, 1024]."""

    num_classes: int = 1000
    include_top: bool = True
    aux_logits: bool = False
    transform_input: bool = True
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)

    def _aux(self) -> bool:
        return self.aux_logits and self.include_top

    def tap_names(self) -> tuple[str, ...]:
        names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception_3a", "inception_3b"]
        names += ["maxpool3", "inception_4a", *(["aux1"] if self._aux() else [])]
        names += [
            "inception_4b",
            "inception_4c",
            "inception_4d",
            *(["aux2"] if self._aux() else []),
        ]
        names += ["inception_4e", "maxpool4", "inception_5a", "inception_5b", "pool"]
        return (*names, "logits") if self.include_top else tuple(names)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """Stem, inception 3, inception 4 (with the auxiliary heads that read it), inception 5, head."""
        four = tuple(f"inception4{c}" for c in "abcde") + (("aux1", "aux2") if self._aux() else ())
        out = [("conv1", "conv2", "conv3"), ("inception3a", "inception3b"), four]
        out.append(("inception5a", "inception5b"))
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: the three stem convs, every inception block
        (4a with aux1 and 4d with aux2, the heads that read them), the classifier."""
        out: list[tuple[str, ...]] = [("conv1",), ("conv2",), ("conv3",)]
        for block in INCEPTION_BLOCKS:
            aux = {"4a": ("aux1",), "4d": ("aux2",)}.get(block, ()) if self._aux() else ()
            out.append((f"inception{block}", *aux))
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), "googlenet")
        common = (train, tuple(self.frozen_bn), self.dtype, self.param_dtype)
        x = x.astype(self.dtype)
        if self.transform_input:
            mean, std = jnp.asarray(_MEAN, self.dtype), jnp.asarray(_STD, self.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        x = BasicConv(64, 7, *common, stride=2, padding=3, conv=self.conv, name="conv1")(x)
        if rec.add("conv1", x):
            return rec.outputs
        stem = [
            ("maxpool1", None),
            ("conv2", (64, 1, 0)),
            ("conv3", (192, 3, 1)),
            ("maxpool2", None),
        ]
        for name, spec in stem:
            if spec is None:
                x = max_pool_torch(x, 3, 2, ceil_mode=True)
            else:
                features, kernel, padding = spec
                x = BasicConv(
                    features, kernel, *common, padding=padding, conv=self.conv, name=name
                )(x)
            if rec.add(name, x):
                return rec.outputs
        for block, widths in INCEPTION_BLOCKS.items():
            if block in ("4a", "5a"):
                pool = "maxpool3" if block == "4a" else "maxpool4"
                x = max_pool_torch(x, 3 if block == "4a" else 2, 2, ceil_mode=True)
                if rec.add(pool, x):
                    return rec.outputs
            x = Inception(widths, *common, conv=self.conv, name=f"inception{block}")(x)
            if rec.add(f"inception_{block}", x):
                return rec.outputs
            if self._aux() and block in ("4a", "4d"):
                aux = "aux1" if block == "4a" else "aux2"
                if rec.active and aux in rec.pending or self.is_initializing():
                    # Only computed when asked for (or to create its variables): eval never needs it.
                    head = InceptionAux(self.num_classes, *common, conv=self.conv, name=aux)
                    if rec.add(aux, head(x)):
                        return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, 1024]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=weight_init,
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


@register("googlenet")
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet / Inception V1 (torchvision layout, `transform_input=True` like its pretrained weights)."""
    return GoogLeNet(**kwargs)
