"""MobileNet V2 (Sandler et al. 2018) and V3 Large/Small (Howard et al. 2019) in torchvision's layout.

Both are a stem conv, a sequence of inverted residuals (1×1 expand → k×k depthwise → [SE] → 1×1 project,
identity skip when stride 1 and widths match) and a 1×1 head conv, exactly as `torchvision.models`
builds them: channel counts through `make_divisible` (TF slim's rounding to multiples of 8), torch's
symmetric padding `(k - 1) // 2` (not 'SAME'), BN eps 1e-5 for V2 and eps 1e-3 / torch momentum 0.01 for
V3, ReLU6 (V2) or ReLU / hard-swish (V3), and V3's squeeze-excite with a hard-sigmoid gate on a squeeze
width of `make_divisible(expanded // 4)`. Module names mirror torchvision's `features.N` (`features_N/
expand_conv`, `.../depthwise_bn`, `.../se_fc1`, …); V3's classifier is `classifier_hidden` (the 1280 or
1024-wide hard-swish layer) then `classifier`. Taps: `features.0` (stem) … `features.{N}` (head conv),
`pool`, `logits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from tljax.models.common import TapRecorder, batch_norm
from tljax.models.conv import Conv
from tljax.models.registry import register
from tljax.typing import ModuleDef

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's kaiming init
dense_init = nn.initializers.normal(0.01)  # torchvision's MobileNet Linear init


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `divisor`), never down by > 10%.

    The channel rounding of TF slim's MobileNet, which torchvision's `_make_divisible` reproduces.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


class InvertedResidualSpec(NamedTuple):
    in_ch: int
    kernel: int
    expanded: int
    out_ch: int
    use_se: bool
    activation: str  # "relu6" | "relu" | "hard_swish"
    stride: int


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu6": nn.relu6,
    "relu": nn.relu,
    "hard_swish": nn.hard_swish,  # x · relu6(x + 3) / 6, torch.nn.Hardswish
}

# MobileNetV2 (t expansion, c width, n repeats, s stride), torchvision's `inverted_residual_setting`.
V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# MobileNetV3 (in, kernel, expanded, out, SE, activation, stride): Tables 1 and 2 of the paper.
_RE, _HS = "relu", "hard_swish"
V3_LARGE = (
    (16, 3, 16, 16, False, _RE, 1),
    (16, 3, 64, 24, False, _RE, 2),
    (24, 3, 72, 24, False, _RE, 1),
    (24, 5, 72, 40, True, _RE, 2),
    (40, 5, 120, 40, True, _RE, 1),
    (40, 5, 120, 40, True, _RE, 1),
    (40, 3, 240, 80, False, _HS, 2),
    (80, 3, 200, 80, False, _HS, 1),
    (80, 3, 184, 80, False, _HS, 1),
    (80, 3, 184, 80, False, _HS, 1),
    (80, 3, 480, 112, True, _HS, 1),
    (112, 3, 672, 112, True, _HS, 1),
    (112, 5, 672, 160, True, _HS, 2),
    (160, 5, 960, 160, True, _HS, 1),
    (160, 5, 960, 160, True, _HS, 1),
)
V3_SMALL = (
    (16, 3, 16, 16, True, _RE, 2),
    (16, 3, 72, 24, False, _RE, 2),
    (24, 3, 88, 24, False, _RE, 1),
    (24, 5, 96, 40, True, _HS, 2),
    (40, 5, 240, 40, True, _HS, 1),
    (40, 5, 240, 40, True, _HS, 1),
    (40, 5, 120, 48, True, _HS, 1),
    (48, 5, 144, 48, True, _HS, 1),
    (48, 5, 288, 96, True, _HS, 2),
    (96, 5, 576, 96, True, _HS, 1),
    (96, 5, 576, 96, True, _HS, 1),
)

# name: (version, layout); V3's hidden classifier width is 1280 (Large) / 1024 (Small). The width
# multiplier is the model's `alpha` field.
MOBILENET_VARIANTS = {
    "mobilenet_v2": ("v2", "torchvision"),
    "mobilenet_v3_large": ("v3_large", "torchvision"),
    "mobilenet_v3_small": ("v3_small", "torchvision"),
    "mobilenet_v2_keras": ("v2", "keras"),
}


def block_specs(
    version: str, width: float = 1.0, layout: str = "torchvision"
) -> list[InvertedResidualSpec]:
    """Every inverted residual of a variant, in order, after width scaling (torchvision's arithmetic, or
    Keras' for V2, which truncates `c · α` to an int before rounding to a multiple of 8)."""
    if version == "v2":
        specs, in_ch = [], make_divisible(32 * width)
        for t, c, n, s in V2_SETTING:
            out_ch = make_divisible(int(c * width) if layout == "keras" else c * width)
            for i in range(n):
                # torchvision: hidden = int(round(inp * t)); the block expands only when t != 1.
                hidden = int(round(in_ch * t))
                specs.append(
                    InvertedResidualSpec(
                        in_ch, 3, hidden, out_ch, False, "relu6", s if i == 0 else 1
                    )
                )
                in_ch = out_ch
        return specs
    table = {"v3_large": V3_LARGE, "v3_small": V3_SMALL}[version]
    return [
        InvertedResidualSpec(
            make_divisible(i * width),
            k,
            make_divisible(e * width),
            make_divisible(o * width),
            se,
            act,
            s,
        )
        for i, k, e, o, se, act, s in table
    ]


def conv_padding(kernel: int, layout: str):
    """torch's symmetric `(k - 1) // 2`, or TF 'SAME' for the Keras layout: the same at stride 1; at
    stride 2 Keras' `correct_pad` + VALID puts the extra pixel bottom/right, which is what 'SAME' does."""
    if layout == "keras":
        return "SAME"
    pad = (kernel - 1) // 2
    return ((pad, pad), (pad, pad))


class InvertedResidual(nn.Module):
    """1×1 expand (if widths differ / t ≠ 1) → k×k depthwise (stride) → [SE] → 1×1 project (no activation)."""

    spec: InvertedResidualSpec
    expand: bool  # V2 expands iff t != 1, V3 iff expanded != in; decided by the caller
    epsilon: float
    momentum: float
    train: bool
    frozen_bn: Sequence[str]
    dtype: Any
    param_dtype: Any
    conv: ModuleDef = Conv
    layout: str = "torchvision"

    def _conv(self, features, kernel, name, stride=1, groups=1, bias=False):
        return self.conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding=conv_padding(kernel, self.layout),
            feature_group_count=groups,
            use_bias=bias,
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
            epsilon=self.epsilon,
            momentum=self.momentum,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x):
        s = self.spec
        act = ACTIVATIONS[s.activation]
        y = x
        if self.expand:
            y = act(self._bn("expand_bn", self._conv(s.expanded, 1, "expand_conv")(y)))
        y = self._conv(s.expanded, s.kernel, "depthwise_conv", stride=s.stride, groups=s.expanded)(
            y
        )
        y = act(self._bn("depthwise_bn", y))
        if s.use_se:
            # torchvision's SqueezeExcitation: mean → 1×1 conv → ReLU → 1×1 conv → hard-sigmoid → scale.
            squeeze = make_divisible(s.expanded // 4)
            scale = y.mean(axis=(1, 2), keepdims=True)  # [B, 1, 1, C]
            scale = nn.relu(self._conv(squeeze, 1, "se_fc1", bias=True)(scale))
            scale = nn.hard_sigmoid(self._conv(s.expanded, 1, "se_fc2", bias=True)(scale))
            y = y * scale
        y = self._bn("project_bn", self._conv(s.out_ch, 1, "project_conv")(y))
        if s.stride == 1 and s.in_ch == s.out_ch:
            y = y + x
        return y


class MobileNet(nn.Module):
    """MobileNet V2 / V3 Large / V3 Small; `variant` is a key of MOBILENET_VARIANTS, `alpha` the width
    multiplier.

    The Keras layout (`mobilenet_v2_keras`, `keras.applications.MobileNetV2`) is the same network with
    TF 'SAME' padding (the stride-2 convs pad bottom/right, torch symmetrically), BN eps 1e-3 and Keras
    momentum 0.999, Keras' width rounding, and no dropout before the classifier.
    """

    variant: str = "mobilenet_v2"
    alpha: float = 1.0
    num_classes: int = 1000
    include_top: bool = True
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    conv: ModuleDef = Conv  # every convolution; `nn.Conv` runs flax's (same variables)

    @property
    def version(self) -> str:
        return MOBILENET_VARIANTS[self.variant][0]

    @property
    def layout(self) -> str:
        return MOBILENET_VARIANTS[self.variant][1]

    def _specs(self) -> list[InvertedResidualSpec]:
        return block_specs(self.version, self.alpha, self.layout)

    def _expands(self, spec: InvertedResidualSpec) -> bool:
        return spec.expanded != spec.in_ch  # V2's t == 1 block is the only one with equal widths

    def _head_width(self) -> int:
        if self.version == "v2":
            return make_divisible(1280 * max(1.0, self.alpha))
        return 6 * self._specs()[-1].out_ch

    def _hidden_width(self) -> int:
        """V3's classifier hidden layer (`last_channel` in torchvision)."""
        return make_divisible((1280 if self.version == "v3_large" else 1024) * self.alpha)

    def _features(self) -> list[tuple[str, ...]]:
        """Top-level modules of torchvision's `features.0` (stem) … `features.{N}` (head conv), in order."""
        blocks = [(f"features_{i}",) for i in range(1, len(self._specs()) + 1)]
        return [("stem_conv", "stem_bn"), *blocks, ("head_conv", "head_bn")]

    def _classifier(self) -> tuple[str, ...]:
        return ("classifier",) if self.version == "v2" else ("classifier_hidden", "classifier")

    def tap_names(self) -> tuple[str, ...]:
        names = (*(f"features.{i}" for i in range(len(self._features()))), "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The stem, then one stage per output resolution (a new stage at every stride-2 block; the head
        conv joins the last one), the classifier."""
        features = self._features()
        out: list[list[str]] = [list(features[0]), []]
        for spec, modules in zip(self._specs(), features[1:-1], strict=True):
            if spec.stride == 2 and out[-1]:
                out.append([])
            out[-1] += modules
        out[-1] += features[-1]
        if self.include_top:
            out.append(list(self._classifier()))
        return tuple(map(tuple, out))

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Top-level modules per layer, input → output: the stem, every inverted residual, the head
        conv, each classifier layer (the unit of "transfer the first n layers")."""
        out = list(self._features())
        if self.include_top:
            out += [(c,) for c in self._classifier()]
        return tuple(out)

    def _conv_bn(self, x, features, kernel, stride, name, act, bn):
        x = self.conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding=conv_padding(kernel, self.layout),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f"{name}_conv",
        )(x)
        return act(batch_norm(self, f"{name}_bn", x, **bn))

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), self.variant)
        v2 = self.version == "v2"
        if self.layout == "keras":
            epsilon, momentum = 1e-3, 0.999  # Keras MobileNetV2's BatchNormalization
        else:  # V3: torch eps=0.001, momentum=0.01
            epsilon, momentum = (1e-5, 0.9) if v2 else (1e-3, 0.99)
        bn = dict(
            train=train,
            frozen_bn=self.frozen_bn,
            epsilon=epsilon,
            momentum=momentum,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        edge = nn.relu6 if v2 else nn.hard_swish
        specs = self._specs()
        x = x.astype(self.dtype)
        x = self._conv_bn(x, specs[0].in_ch, 3, 2, "stem", edge, bn)
        if rec.add("features.0", x):
            return rec.outputs
        for i, spec in enumerate(specs, start=1):
            x = InvertedResidual(
                spec,
                self._expands(spec),
                epsilon,
                momentum,
                train,
                tuple(self.frozen_bn),
                self.dtype,
                self.param_dtype,
                self.conv,
                self.layout,
                name=f"features_{i}",
            )(x)
            if rec.add(f"features.{i}", x):
                return rec.outputs
        x = self._conv_bn(x, self._head_width(), 1, 1, "head", edge, bn)
        if rec.add(f"features.{len(specs) + 1}", x):
            return rec.outputs
        x = x.mean(axis=(1, 2))  # [B, C]
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=dense_init)
        if not v2:
            x = nn.hard_swish(nn.Dense(self._hidden_width(), name="classifier_hidden", **dense)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, name="classifier", **dense)(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


def _make(variant: str):
    layout = MOBILENET_VARIANTS[variant][1]
    defaults: dict[str, Any] = {"dropout_rate": 0.0} if layout == "keras" else {}

    def build(**kwargs) -> MobileNet:
        return MobileNet(variant=variant, **{**defaults, **kwargs})

    build.__doc__ = f"{variant} ({layout} layout)."
    return build


for _variant in MOBILENET_VARIANTS:
    register(_variant)(_make(_variant))
