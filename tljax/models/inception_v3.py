"""Inception V3 (Szegedy et al. 2015) in torchvision's or Keras' layout, 299×299 native, aux head optional.

`inception_v3` is torchvision's layout (below); `inception_v3_keras` (`layout="keras"`) is
`keras.applications.InceptionV3`: the same convolutions, but BN without a scale (Keras `scale=False`,
momentum 0.99), 3×3 average pools that divide by the real pixels only, no auxiliary head, no
`transform_input`, Mixed taps named `mixed0` … `mixed10`.

Every conv is torchvision's BasicConv2d (conv without bias, BN eps 1e-3, ReLU) with torch's symmetric
padding, including the factorised 1×7 / 7×1 and 1×3 / 3×1 convs; the average pools of the A, C and E
blocks count the zero padding (torch's `count_include_pad=True`); max pools are VALID. As in GoogLeNet,
`transform_input=True` (the default, what torchvision uses for its pretrained weights) maps
ImageNet-normalised input to the [-1, 1] scaling of the TF weights. Module names mirror torchvision's
state_dict (`Conv2d_1a_3x3/conv`, `Mixed_6b/branch7x7dbl_3/bn`, `AuxLogits/conv1`, `fc` →
`classifier`). With `aux_logits=True` the auxiliary classifier exists and comes back as the tap `aux`
(after Mixed_6e; its 5×5/3 pool and 5×5 conv need Mixed_6e ≥ 17×17, i.e. inputs ≥ 299 px, as in
torchvision); the output stays the main logits. Taps: `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3`, `maxpool1`, `Conv2d_3b_1x1`,
`Conv2d_4a_3x3`, `maxpool2`, `Mixed_5b` … `Mixed_7c`, `pool`, `logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.errors import ConfigError
from tljax.models.common import TapRecorder, max_pool_torch
from tljax.models.conv import Conv
from tljax.models.googlenet import _MEAN, _STD, BasicConv
from tljax.models.registry import register
from tljax.typing import ModuleDef

conv_init = nn.initializers.normal(
    0.1
)  # torchvision: trunc_normal(std=0.1) unless a layer says otherwise

STEM = (  # (name, features, kernel, stride, padding); the max pools sit after 2b and 4a
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
)
# (module name, block kind, argument): A's pool_features, C's channels_7x7.
MIXED = (
    ("Mixed_5b", "A", 32),
    ("Mixed_5c", "A", 64),
    ("Mixed_5d", "A", 64),
    ("Mixed_6a", "B", 0),
    ("Mixed_6b", "C", 128),
    ("Mixed_6c", "C", 160),
    ("Mixed_6d", "C", 160),
    ("Mixed_6e", "C", 192),
    ("Mixed_7a", "D", 0),
    ("Mixed_7b", "E", 0),
    ("Mixed_7c", "E", 0),
)

# Every BasicConv of each block kind: (name, features or None = the block argument, kernel, stride, pad).
_1x7, _7x1, _1x3, _3x1 = (1, 7), (7, 1), (1, 3), (3, 1)
BLOCK_CONVS: dict[str, tuple[tuple[str, int | None, Any, int, Any], ...]] = {
    "A": (
        ("branch1x1", 64, 1, 1, 0),
        ("branch5x5_1", 48, 1, 1, 0),
        ("branch5x5_2", 64, 5, 1, 2),
        ("branch3x3dbl_1", 64, 1, 1, 0),
        ("branch3x3dbl_2", 96, 3, 1, 1),
        ("branch3x3dbl_3", 96, 3, 1, 1),
        ("branch_pool", None, 1, 1, 0),
    ),
    "B": (
        ("branch3x3", 384, 3, 2, 0),
        ("branch3x3dbl_1", 64, 1, 1, 0),
        ("branch3x3dbl_2", 96, 3, 1, 1),
        ("branch3x3dbl_3", 96, 3, 2, 0),
    ),
    "C": (
        ("branch1x1", 192, 1, 1, 0),
        ("branch7x7_1", None, 1, 1, 0),
        ("branch7x7_2", None, _1x7, 1, (0, 3)),
        ("branch7x7_3", 192, _7x1, 1, (3, 0)),
        ("branch7x7dbl_1", None, 1, 1, 0),
        ("branch7x7dbl_2", None, _7x1, 1, (3, 0)),
        ("branch7x7dbl_3", None, _1x7, 1, (0, 3)),
        ("branch7x7dbl_4", None, _7x1, 1, (3, 0)),
        ("branch7x7dbl_5", 192, _1x7, 1, (0, 3)),
        ("branch_pool", 192, 1, 1, 0),
    ),
    "D": (
        ("branch3x3_1", 192, 1, 1, 0),
        ("branch3x3_2", 320, 3, 2, 0),
        ("branch7x7x3_1", 192, 1, 1, 0),
        ("branch7x7x3_2", 192, _1x7, 1, (0, 3)),
        ("branch7x7x3_3", 192, _7x1, 1, (3, 0)),
        ("branch7x7x3_4", 192, 3, 2, 0),
    ),
    "E": (
        ("branch1x1", 320, 1, 1, 0),
        ("branch3x3_1", 384, 1, 1, 0),
        ("branch3x3_2a", 384, _1x3, 1, (0, 1)),
        ("branch3x3_2b", 384, _3x1, 1, (1, 0)),
        ("branch3x3dbl_1", 448, 1, 1, 0),
        ("branch3x3dbl_2", 384, 3, 1, 1),
        ("branch3x3dbl_3a", 384, _1x3, 1, (0, 1)),
        ("branch3x3dbl_3b", 384, _3x1, 1, (1, 0)),
        ("branch_pool", 192, 1, 1, 0),
    ),
}


LAYOUTS = ("torchvision", "keras")
keras_conv_init = nn.initializers.glorot_uniform()  # Keras' Conv2D / Dense default


def _avg_pool_3x3(x, layout: str):
    """The 3×3 stride-1 average pool of the A, C and E blocks. torchvision's `F.avg_pool2d(x, 3, 1, 1)`
    counts the zero padding in the mean; Keras' `AveragePooling2D(3, 1, 'same')` divides by the number
    of real pixels in the window (the two differ on the border)."""
    return nn.avg_pool(
        x,
        (3, 3),
        strides=(1, 1),
        padding=((1, 1), (1, 1)),
        count_include_pad=layout == "torchvision",
    )


class Mixed(nn.Module):
    """One Inception V3 block of `kind` A (35×35), B (grid reduction), C (17×17, factorised 7×7),
    D (grid reduction) or E (8×8, expanded filter bank); branches concatenated on channels."""

    kind: str
    argument: int  # A: pool_features, C: channels_7x7
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv
    layout: str = "torchvision"

    @nn.compact
    def __call__(self, x):
        keras = self.layout == "keras"
        # Keras' `conv2d_bn`: BatchNormalization(scale=False), default momentum 0.99 (eps 1e-3 in both).
        bn: dict[str, Any] = {"momentum": 0.99, "bn_scale": False} if keras else {}
        convs = {}
        for name, features, kernel, stride, padding in BLOCK_CONVS[self.kind]:
            convs[name] = BasicConv(
                features or self.argument,
                kernel,
                self.train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                stride=stride,
                padding=padding,
                conv=self.conv,
                kernel_init=keras_conv_init if keras else conv_init,
                name=name,
                **bn,
            )

        def chain(*names):
            y = x
            for name in names:
                y = convs[name](y)
            return y

        if self.kind == "A":
            branches = [
                chain("branch1x1"),
                chain("branch5x5_1", "branch5x5_2"),
                chain("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                convs["branch_pool"](_avg_pool_3x3(x, self.layout)),
            ]
        elif self.kind == "B":
            branches = [
                chain("branch3x3"),
                chain("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                max_pool_torch(x, 3, 2),
            ]
        elif self.kind == "C":
            branches = [
                chain("branch1x1"),
                chain("branch7x7_1", "branch7x7_2", "branch7x7_3"),
                chain(*(f"branch7x7dbl_{i}" for i in range(1, 6))),
                convs["branch_pool"](_avg_pool_3x3(x, self.layout)),
            ]
        elif self.kind == "D":
            branches = [
                chain("branch3x3_1", "branch3x3_2"),
                chain(*(f"branch7x7x3_{i}" for i in range(1, 5))),
                max_pool_torch(x, 3, 2),
            ]
        else:  # E
            b3 = chain("branch3x3_1")
            b3dbl = chain("branch3x3dbl_1", "branch3x3dbl_2")
            branches = [
                chain("branch1x1"),
                convs["branch3x3_2a"](b3),
                convs["branch3x3_2b"](b3),
                convs["branch3x3dbl_3a"](b3dbl),
                convs["branch3x3dbl_3b"](b3dbl),
                convs["branch_pool"](_avg_pool_3x3(x, self.layout)),
            ]
        return jnp.concatenate(branches, axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e: 5×5/3 average pool → 1×1 conv 128 → 5×5 conv 768 → GAP → fc."""

    num_classes: int
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv

    @nn.compact
    def __call__(self, x):
        common = (self.train, tuple(self.frozen_bn), self.dtype, self.param_dtype)
        x = nn.avg_pool(x, (5, 5), strides=(3, 3))
        x = BasicConv(128, 1, *common, conv=self.conv, kernel_init=conv_init, name="conv0")(x)
        init = nn.initializers.normal(0.01)
        x = BasicConv(768, 5, *common, conv=self.conv, kernel_init=init, name="conv1")(x)
        x = x.mean(axis=(1, 2))  # [B, 768]
        return nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.normal(0.001),
            name="fc",
        )(x)


class InceptionV3(nn.Module):
    """Inception V3 in torchvision's (default) or Keras' `layout`; `include_top=False` returns pooled
    features [B, 2048].

    `layout="keras"` is `keras.applications.InceptionV3`: the same convolutions, but BN without a scale
    (Keras momentum 0.99), average pools that exclude the padding, no auxiliary head, and the Mixed
    blocks' taps named after Keras' `mixed0` … `mixed10` (module names stay `Mixed_5b` …).
    """

    num_classes: int = 1000
    include_top: bool = True
    aux_logits: bool = False
    transform_input: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)
    layout: str = "torchvision"  # or "keras"

    # Not a field: below 299 px the auxiliary head's 5×5 convolution has nothing to read, and below
    # 75 px the VALID stem runs out of pixels; variables are created at this size (common.init_size).
    init_input_size = 299

    def _aux(self) -> bool:
        return self.aux_logits and self.include_top

    def _mixed_tap(self, index: int) -> str:
        """The tap of the index-th Mixed block: torchvision's module name, or Keras' layer name."""
        return f"mixed{index}" if self.layout == "keras" else MIXED[index][0]

    def tap_names(self) -> tuple[str, ...]:
        stem = [name for name, *_ in STEM]
        names = [*stem[:3], "maxpool1", *stem[3:], "maxpool2"]
        for index, (name, _, _) in enumerate(MIXED):
            names.append(self._mixed_tap(index))
            if name == "Mixed_6e" and self._aux():
                names.append("aux")
        names.append("pool")
        return (*names, "logits") if self.include_top else tuple(names)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The stem convs, the 35×35 (Mixed_5), 17×17 (Mixed_6, with the auxiliary head that reads it)
        and 8×8 (Mixed_7) blocks, the classifier."""
        six = tuple(n for n, _, _ in MIXED if n.startswith("Mixed_6"))
        out = [
            tuple(name for name, *_ in STEM),
            tuple(n for n, _, _ in MIXED if n.startswith("Mixed_5")),
            (*six, *(("AuxLogits",) if self._aux() else ())),
            tuple(n for n, _, _ in MIXED if n.startswith("Mixed_7")),
        ]
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: every stem conv, every Mixed block (Mixed_6e
        with the auxiliary head), the classifier."""
        out: list[tuple[str, ...]] = [(name,) for name, *_ in STEM]
        for name, _, _ in MIXED:
            aux = ("AuxLogits",) if name == "Mixed_6e" and self._aux() else ()
            out.append((name, *aux))
        if self.include_top:
            out.append(("classifier",))
        return tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        if self.layout not in LAYOUTS:
            raise ConfigError(f"InceptionV3: layout={self.layout!r}; expected one of {LAYOUTS}")
        keras = self.layout == "keras"
        if keras and self.aux_logits:
            raise ConfigError(
                "InceptionV3: Keras' Inception V3 has no auxiliary head; use aux_logits=False with "
                "layout='keras' (or the torchvision layout, `inception_v3`, for the head)"
            )
        rec = TapRecorder(taps, self.tap_names(), f"inception_v3{'_keras' if keras else ''}")
        common = (train, tuple(self.frozen_bn), self.dtype, self.param_dtype)
        bn: dict[str, Any] = {"momentum": 0.99, "bn_scale": False} if keras else {}
        x = x.astype(self.dtype)
        if self.transform_input:
            mean, std = jnp.asarray(_MEAN, self.dtype), jnp.asarray(_STD, self.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        for name, features, kernel, stride, padding in STEM:
            x = BasicConv(
                features,
                kernel,
                *common,
                stride=stride,
                padding=padding,
                conv=self.conv,
                kernel_init=keras_conv_init if keras else conv_init,
                name=name,
                **bn,
            )(x)
            if rec.add(name, x):
                return rec.outputs
            if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
                pool = "maxpool1" if name == "Conv2d_2b_3x3" else "maxpool2"
                x = max_pool_torch(x, 3, 2)
                if rec.add(pool, x):
                    return rec.outputs
        for index, (name, kind, argument) in enumerate(MIXED):
            x = Mixed(kind, argument, *common, conv=self.conv, layout=self.layout, name=name)(x)
            if rec.add(self._mixed_tap(index), x):
                return rec.outputs
            if name == "Mixed_6e" and self._aux():
                if rec.active and "aux" in rec.pending or self.is_initializing():
                    # Only computed when asked for (or to create its variables): eval never needs it.
                    head = InceptionAux(self.num_classes, *common, conv=self.conv, name="AuxLogits")
                    if rec.add("aux", head(x)):
                        return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, 2048]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=keras_conv_init if keras else conv_init,
            name="classifier",
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


@register("inception_v3")
def inception_v3(**kwargs) -> InceptionV3:
    """Inception V3 (torchvision layout, 299², `transform_input=True` like its pretrained weights)."""
    return InceptionV3(**kwargs)


@register("inception_v3_keras")
def inception_v3_keras(**kwargs) -> InceptionV3:
    """Inception V3 (Keras Applications layout, 299²): its weights take [-1, 1] input directly (no
    transform_input) and its classifier has no dropout."""
    return InceptionV3(
        **{"layout": "keras", "transform_input": False, "dropout_rate": 0.0, **kwargs}
    )
