"""Name tables from Keras layers to Flax variables, and the strict port of a `KerasFile` through them.

A Keras table is the list of a model's weighted Keras layers **in Keras' own layer order**
(`model.layers`), each with its weights in Keras' order and the Flax path each goes to. The order
matters: a Keras 3 `.weights.h5` names layers only by class and position (`conv2d_3` is the fourth
Conv2D of `model.layers`), and a Functional model's `model.layers` is its graph order, not the order the
layers were written in (ResNet's `conv2_block1_0_conv` shortcut comes after `_2_conv`).

Conversions (`tljax.weights.porting.Entry` kinds): Keras conv kernels are already HWIO and dense
kernels `[in, out]` (`copy`); depthwise kernels `[kh, kw, in, mult]` become tljax's
`feature_group_count` layout `[kh, kw, 1, in·mult]` (`keras_depthwise`); BatchNormalization weights are
`gamma, beta, moving_mean, moving_variance`, without `gamma` (`scale=False`) or `beta`
(`center=False`) where the layer has none. The port then runs `porting.port_state_dict`: every shape
checked against `eval_shape`, missing / unexpected / mis-shaped named, `skip=` regexes, and
`include_top=False` dropping the head by name. A softmax classifier is ported as its logits (tljax
heads return logits; apply `jax.nn.softmax` for Keras' probabilities).

Adding a table for another architecture (used by `tljax.models.mobilenet_v1`, `xception`, …):

    def my_table(model: MyNet) -> list[KerasLayerSpec]:
        table = [conv("conv1", "stem_conv", bias=False), batch_norm("conv1_bn", "stem_bn")]
        table += [depthwise("conv_dw_1", "blocks_0/depthwise"), separable("sep", "b/dw", "b/pw")]
        return table + ([dense("predictions", "classifier")] if model.include_top else [])

    register_keras_table(MyNet, my_table, model_names=("mynet_keras",))

`model_names` are the `tljax.models` names whose Keras files the table reads (used to tell the
architecture of a file by its layers). The Keras layers a tljax module has no weights for (ReLU,
padding, pooling, Add) are not listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import flax.linen as nn

from tljax.errors import UserError
from tljax.models.resnet import RESNET_LAYERS, ResNet
from tljax.models.vgg import VGG, VGG_STAGES
from tljax.weights.keras import KerasFile, snake_case
from tljax.weights.porting import Entry

__all__ = [
    "KerasLayerSpec",
    "KerasLayoutError",
    "batch_norm",
    "conv",
    "dense",
    "depthwise",
    "keras_entries",
    "keras_layer_table",
    "keras_model_names",
    "positional_keys",
    "register_keras_table",
    "separable",
]


class KerasLayoutError(ValueError, UserError):
    """A tljax model that has no Keras layout (e.g. torchvision's ResNet v1.5 for a Keras ResNet file)."""


@dataclass(frozen=True)
class KerasLayerSpec:
    """One weighted Keras layer: its name, class, and (role, Flax path, kind) per weight in Keras' order."""

    name: str  # 'conv2_block1_1_conv'
    class_name: str  # 'Conv2D'
    weights: tuple[
        tuple[str, tuple[str, ...], str], ...
    ]  # ('kernel', ('params', 'conv1', 'kernel'), 'copy')

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _, _ in self.weights)


def _target(collection: str, dst: str, leaf: str) -> tuple[str, ...]:
    return (collection, *dst.split("/"), leaf)


def conv(layer: str, dst: str, bias: bool = True) -> KerasLayerSpec:
    """A Keras `Conv2D` (kernel HWIO already, optional bias) → the Flax conv at `dst` ('a/b')."""
    weights = [("kernel", _target("params", dst, "kernel"), "copy")]
    if bias:
        weights.append(("bias", _target("params", dst, "bias"), "copy"))
    return KerasLayerSpec(layer, "Conv2D", tuple(weights))


def dense(layer: str, dst: str, bias: bool = True) -> KerasLayerSpec:
    """A Keras `Dense` (kernel `[in, out]`, as Flax) → the Flax Dense at `dst`."""
    weights = [("kernel", _target("params", dst, "kernel"), "copy")]
    if bias:
        weights.append(("bias", _target("params", dst, "bias"), "copy"))
    return KerasLayerSpec(layer, "Dense", tuple(weights))


def batch_norm(layer: str, dst: str, scale: bool = True, center: bool = True) -> KerasLayerSpec:
    """A Keras `BatchNormalization` → the Flax BatchNorm at `dst`: `gamma`→scale, `beta`→bias (each
    only if the layer has it: `scale=False` / `center=False`), moving mean/variance → `batch_stats`."""
    weights = []
    if scale:
        weights.append(("gamma", _target("params", dst, "scale"), "copy"))
    if center:
        weights.append(("beta", _target("params", dst, "bias"), "copy"))
    weights.append(("moving_mean", _target("batch_stats", dst, "mean"), "copy"))
    weights.append(("moving_variance", _target("batch_stats", dst, "var"), "copy"))
    return KerasLayerSpec(layer, "BatchNormalization", tuple(weights))


def depthwise(layer: str, dst: str, bias: bool = False) -> KerasLayerSpec:
    """A Keras `DepthwiseConv2D` (`[kh, kw, in, mult]`) → a Flax grouped conv at `dst` (`[kh, kw, 1,
    in·mult]`, output channel `i·mult + m`, what `feature_group_count=in` computes)."""
    weights = [("kernel", _target("params", dst, "kernel"), "keras_depthwise")]
    if bias:
        weights.append(("bias", _target("params", dst, "bias"), "copy"))
    return KerasLayerSpec(layer, "DepthwiseConv2D", tuple(weights))


def separable(
    layer: str, depthwise_dst: str, pointwise_dst: str, bias: bool = False
) -> KerasLayerSpec:
    """A Keras `SeparableConv2D`: its depthwise kernel → the grouped conv at `depthwise_dst`, its
    pointwise `[1, 1, in·mult, out]` kernel (and bias) → the 1×1 conv at `pointwise_dst`. Keras applies
    the two with nothing between them, so the Flax model must too."""
    weights = [
        ("depthwise_kernel", _target("params", depthwise_dst, "kernel"), "keras_depthwise"),
        ("pointwise_kernel", _target("params", pointwise_dst, "kernel"), "copy"),
    ]
    if bias:
        weights.append(("bias", _target("params", pointwise_dst, "bias"), "copy"))
    return KerasLayerSpec(layer, "SeparableConv2D", tuple(weights))


_KERAS_TABLES: list[tuple[type, Callable[..., list[KerasLayerSpec]], tuple[str, ...]]] = []


def register_keras_table(
    model_class: type,
    table_fn: Callable[..., list[KerasLayerSpec]],
    *,
    model_names: Sequence[str],
) -> None:
    """Makes `table_fn(model) -> [KerasLayerSpec, …]` the Keras table of `model_class` instances, for
    the `tljax.models` names `model_names` (their Keras files are recognised by their layer names).
    `table_fn` raises `KerasLayoutError` for instances whose layout Keras does not have."""
    if any(cls is model_class for cls, _, _ in _KERAS_TABLES):
        raise ValueError(f"Keras table for {model_class.__name__} registered twice")
    _KERAS_TABLES.append((model_class, table_fn, tuple(model_names)))


def keras_model_names() -> list[str]:
    """The `tljax.models` names that have a Keras table (candidates when telling a file's architecture)."""
    return [name for _, _, names in _KERAS_TABLES for name in names]


def keras_layer_table(model: nn.Module) -> list[KerasLayerSpec]:
    """`model`'s weighted Keras layers, in Keras' `model.layers` order (with or without its top)."""
    for cls, fn, _ in _KERAS_TABLES:
        if isinstance(model, cls):
            return fn(model)
    raise KerasLayoutError(
        f"tljax has no Keras layout for {type(model).__name__}; Keras files fit: "
        f"{', '.join(keras_model_names())}"
    )


def layer_source(spec: KerasLayerSpec, role: str) -> str:
    """The source key of one weight in a port: 'conv1_conv/kernel'."""
    return f"{spec.name}/{role}"


def keras_entries(model: nn.Module) -> list[Entry]:
    """`keras_layer_table(model)` flattened to `porting.Entry`s (source `layer/role`)."""
    return [
        Entry(layer_source(spec, role), target, kind)
        for spec in keras_layer_table(model)
        for role, target, kind in spec.weights
    ]


def positional_keys(table: Sequence[KerasLayerSpec]) -> dict[str, KerasLayerSpec]:
    """Keras 3 `.weights.h5` key → layer: the N-th layer of a class is `<snake_case class>_N` (the first
    has no suffix), counted in the table's (= `model.layers`') order."""
    seen: dict[str, int] = {}
    keys = {}
    for spec in table:
        base = snake_case(spec.class_name)
        count = seen.get(base)
        seen[base] = 0 if count is None else count + 1
        keys[base if count is None else f"{base}_{count + 1}"] = spec
    return keys


def file_layer_ids(keras_file: KerasFile) -> list[str]:
    """How a port identifies the file's layers: positional keys where it has them, else names."""
    return [str(la.key if keras_file.positional else la.name) for la in keras_file.layers]


def table_layer_ids(
    keras_file: KerasFile, table: Sequence[KerasLayerSpec]
) -> dict[str, KerasLayerSpec]:
    """The table's layers under the identifiers `file_layer_ids` uses for `keras_file`."""
    if keras_file.positional:
        return positional_keys(table)
    return {spec.name: spec for spec in table}


# ----------------------------------------------------------------------------------------------
# Tables of the Keras Applications layouts of the architectures in tljax.models.resnet / vgg.


def resnet_keras_table(model: ResNet) -> list[KerasLayerSpec]:
    """Keras `ResNet50/101/152`: `conv1_conv`, `conv1_bn`, `conv{s}_block{b}_{0..3}_{conv,bn}`,
    `predictions` → `conv1`, `bn1`, `layer{s-1}_{b-1}/{downsample_,}{conv,bn}{k}`, `classifier`.

    In `model.layers` a stage's first block runs `_1`, `_2`, then the shortcut `_0_conv` beside `_3_conv`
    and `_0_bn` beside `_3_bn` (graph order: the two branches meet at the Add).
    """
    counts, bottleneck = RESNET_LAYERS[model.depth]
    if not (model.stride_in_1x1 and model.conv_bias and bottleneck):
        raise KerasLayoutError(
            f'Keras ResNet files are the "v1" layout (stride on the first 1x1 conv, conv biases): '
            f"load them into resnet{model.depth}_keras, not the torchvision v1.5 resnet{model.depth}"
        )
    table = [conv("conv1_conv", "conv1"), batch_norm("conv1_bn", "bn1")]
    for stage, count in enumerate(counts, start=1):
        for b in range(count):
            src, dst = f"conv{stage + 1}_block{b + 1}", f"layer{stage}_{b}"
            for k in (1, 2):
                table += [
                    conv(f"{src}_{k}_conv", f"{dst}/conv{k}"),
                    batch_norm(f"{src}_{k}_bn", f"{dst}/bn{k}"),
                ]
            if b == 0:
                table += [
                    conv(f"{src}_0_conv", f"{dst}/downsample_conv"),
                    conv(f"{src}_3_conv", f"{dst}/conv3"),
                    batch_norm(f"{src}_0_bn", f"{dst}/downsample_bn"),
                    batch_norm(f"{src}_3_bn", f"{dst}/bn3"),
                ]
            else:
                table += [
                    conv(f"{src}_3_conv", f"{dst}/conv3"),
                    batch_norm(f"{src}_3_bn", f"{dst}/bn3"),
                ]
    if model.include_top:
        table.append(dense("predictions", "classifier"))
    return table


def vgg_keras_table(model: VGG) -> list[KerasLayerSpec]:
    """Keras `VGG16`/`VGG19`: `block{s}_conv{i}`, `fc1`, `fc2`, `predictions` → `conv{s}_{i}`, `fc6`,
    `fc7`, `classifier`. Keras flattens pool5 NHWC, as tljax does: fc1 is copied unpermuted."""
    if model.batch_norm or model.depth not in (16, 19):
        raise KerasLayoutError(
            f"Keras has VGG16 and VGG19 without BatchNorm only, not vgg{model.depth}"
            f"{'_bn' if model.batch_norm else ''}"
        )
    table = [
        conv(f"block{stage}_conv{i}", f"conv{stage}_{i}")
        for stage, widths in enumerate(VGG_STAGES[model.depth], start=1)
        for i in range(1, len(widths) + 1)
    ]
    if model.include_top:
        table += [dense("fc1", "fc6"), dense("fc2", "fc7"), dense("predictions", "classifier")]
    return table


register_keras_table(
    ResNet, resnet_keras_table, model_names=("resnet50_keras", "resnet101_keras", "resnet152_keras")
)
register_keras_table(VGG, vgg_keras_table, model_names=("vgg16_keras", "vgg19_keras"))
