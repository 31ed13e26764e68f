"""Name tables from PyTorch state_dicts to Flax variables, and the strict loader that applies them.

Every tljax architecture has an explicit table `source key → Flax path`, built from the same
architecture description the Flax module is built from (so the two cannot drift apart). Conversions:
conv kernels OIHW → HWIO, dense weights transposed, torchvision VGG's fc6 re-ordered from an NCHW to an
NHWC flatten, BatchNorm running statistics into `batch_stats`, `num_batches_tracked` dropped. Every shape
is checked against `jax.eval_shape(model.init, …)`; missing, unexpected and mis-shaped keys are reported
by name and refused, except keys whose Flax path matches a `skip` regex (a new head), which are named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from tljax.errors import UserError
from tljax.models.common import init_size
from tljax.models.efficientnet_lite import EfficientNetLite
from tljax.models.googlenet import INCEPTION_BLOCKS, GoogLeNet
from tljax.models.inception_v3 import BLOCK_CONVS, MIXED, STEM, InceptionV3
from tljax.models.mobilenet import MobileNet
from tljax.models.resnet import RESNET_LAYERS, ResNet
from tljax.models.vgg import VGG, VGG_STAGES
from tljax.rng import make_key


class WeightMismatchError(ValueError, UserError):
    """A weight file does not fit the model: missing, unexpected or mis-shaped keys (listed by name)."""


@dataclass(frozen=True)
class Entry:
    """One tensor of the table: `source` key → Flax `target` path, converted by `kind`."""

    source: str
    target: tuple[str, ...]  # ('params', 'layer1_0', 'conv1', 'kernel')
    kind: str  # conv | dense | dense_nchw7 | copy | keras_depthwise


def _conv(src: str, dst: str, bias: bool = False) -> list[Entry]:
    out = [Entry(f"{src}.weight", ("params", *dst.split("/"), "kernel"), "conv")]
    if bias:
        out.append(Entry(f"{src}.bias", ("params", *dst.split("/"), "bias"), "copy"))
    return out


def _dense(src: str, dst: str, kind: str = "dense") -> list[Entry]:
    path = dst.split("/")
    return [
        Entry(f"{src}.weight", ("params", *path, "kernel"), kind),
        Entry(f"{src}.bias", ("params", *path, "bias"), "copy"),
    ]


def _bn(src: str, dst: str) -> list[Entry]:
    path = tuple(dst.split("/"))
    return [
        Entry(f"{src}.weight", ("params", *path, "scale"), "copy"),
        Entry(f"{src}.bias", ("params", *path, "bias"), "copy"),
        Entry(f"{src}.running_mean", ("batch_stats", *path, "mean"), "copy"),
        Entry(f"{src}.running_var", ("batch_stats", *path, "var"), "copy"),
    ]


def vgg_table(model: VGG) -> list[Entry]:
    """torchvision `features.{i}` / `classifier.{0,3,6}` → `conv{s}_{i}`, `bn{s}_{i}`, `fc6`, `fc7`, `classifier`."""
    table: list[Entry] = []
    index = 0  # position in torchvision's `features` nn.Sequential
    for stage, widths in enumerate(VGG_STAGES[model.depth], start=1):
        for i in range(1, len(widths) + 1):
            table += _conv(f"features.{index}", f"conv{stage}_{i}", bias=True)
            index += 1
            if model.batch_norm:
                table += _bn(f"features.{index}", f"bn{stage}_{i}")
                index += 1
            index += 1  # ReLU
        index += 1  # MaxPool
    if model.include_top:
        table += _dense("classifier.0", "fc6", kind="dense_nchw7")
        table += _dense("classifier.3", "fc7")
        table += _dense("classifier.6", "classifier")
    return table


def resnet_table(model: ResNet) -> list[Entry]:
    """torchvision `conv1`, `bn1`, `layer{l}.{b}.{conv,bn}{k}`, `downsample.{0,1}`, `fc`."""
    table = _conv("conv1", "conv1") + _bn("bn1", "bn1")
    counts, bottleneck = RESNET_LAYERS[model.depth]
    for layer, count in enumerate(counts, start=1):
        for b in range(count):
            src, dst = f"layer{layer}.{b}", f"layer{layer}_{b}"
            for k in range(1, 4 if bottleneck else 3):
                table += _conv(f"{src}.conv{k}", f"{dst}/conv{k}") + _bn(
                    f"{src}.bn{k}", f"{dst}/bn{k}"
                )
            if b == 0 and (
                layer > 1 or bottleneck
            ):  # the block that changes shape has a projection
                table += _conv(f"{src}.downsample.0", f"{dst}/downsample_conv")
                table += _bn(f"{src}.downsample.1", f"{dst}/downsample_bn")
    if model.include_top:
        table += _dense("fc", "classifier")
    return table


def efficientnet_lite_table(model: EfficientNetLite) -> list[Entry]:
    """efficientnet-lite-pytorch `_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`, `_fc`."""
    table = _conv("_conv_stem", "stem_conv") + _bn("_bn0", "stem_bn")
    for i, spec in enumerate(model._specs()):
        src, dst = f"_blocks.{i}", f"blocks_{i}"
        if spec.expand != 1:
            table += _conv(f"{src}._expand_conv", f"{dst}/expand_conv") + _bn(
                f"{src}._bn0", f"{dst}/expand_bn"
            )
        table += _conv(f"{src}._depthwise_conv", f"{dst}/depthwise_conv") + _bn(
            f"{src}._bn1", f"{dst}/depthwise_bn"
        )
        table += _conv(f"{src}._project_conv", f"{dst}/project_conv") + _bn(
            f"{src}._bn2", f"{dst}/project_bn"
        )
    table += _conv("_conv_head", "head_conv") + _bn("_bn1", "head_bn")
    if model.include_top:
        table += _dense("_fc", "classifier")
    return table


def mobilenet_table(model: MobileNet) -> list[Entry]:
    """torchvision `features.{i}` (`Conv2dNormActivation` = `.0` conv, `.1` BN), `classifier.{1 | 0, 3}`.

    V2 blocks are `features.i.conv.{0,1,2,3}` (expand conv-BN, depthwise conv-BN, project conv, BN; no
    expand: `conv.{0,1,2}`); V3 blocks are `features.i.block.{j}` with the SE layer's `fc1`/`fc2` as
    one entry between the depthwise and the project conv-BN.
    """
    specs = model._specs()
    table = _conv("features.0.0", "stem_conv") + _bn("features.0.1", "stem_bn")
    for i, spec in enumerate(specs, start=1):
        dst, j = f"features_{i}", 0
        src = f"features.{i}.conv" if model.version == "v2" else f"features.{i}.block"
        if model._expands(spec):
            table += _conv(f"{src}.{j}.0", f"{dst}/expand_conv") + _bn(
                f"{src}.{j}.1", f"{dst}/expand_bn"
            )
            j += 1
        table += _conv(f"{src}.{j}.0", f"{dst}/depthwise_conv")
        table += _bn(f"{src}.{j}.1", f"{dst}/depthwise_bn")
        j += 1
        if spec.use_se:
            table += _conv(f"{src}.{j}.fc1", f"{dst}/se_fc1", bias=True)
            table += _conv(f"{src}.{j}.fc2", f"{dst}/se_fc2", bias=True)
            j += 1
        if model.version == "v2":  # torchvision's V2 project conv and BN are separate entries
            table += _conv(f"{src}.{j}", f"{dst}/project_conv") + _bn(
                f"{src}.{j + 1}", f"{dst}/project_bn"
            )
        else:
            table += _conv(f"{src}.{j}.0", f"{dst}/project_conv")
            table += _bn(f"{src}.{j}.1", f"{dst}/project_bn")
    head = f"features.{len(specs) + 1}"
    table += _conv(f"{head}.0", "head_conv") + _bn(f"{head}.1", "head_bn")
    if model.include_top:
        if model.version == "v2":
            table += _dense("classifier.1", "classifier")
        else:
            table += _dense("classifier.0", "classifier_hidden") + _dense(
                "classifier.3", "classifier"
            )
    return table


def _basic_conv(src: str, dst: str) -> list[Entry]:
    """torchvision's BasicConv2d: `{src}.conv` (no bias) + `{src}.bn`."""
    return _conv(f"{src}.conv", f"{dst}/conv") + _bn(f"{src}.bn", f"{dst}/bn")


def googlenet_table(model: GoogLeNet) -> list[Entry]:
    """torchvision `conv{1,2,3}`, `inception{3a..5b}.branch{1, 2.0, 2.1, 3.0, 3.1, 4.1}`, `aux{1,2}`, `fc`."""
    table = [e for c in ("conv1", "conv2", "conv3") for e in _basic_conv(c, c)]
    for block in INCEPTION_BLOCKS:
        src = dst = f"inception{block}"
        table += _basic_conv(f"{src}.branch1", f"{dst}/branch1")
        for branch, index in [(2, 0), (2, 1), (3, 0), (3, 1), (4, 1)]:
            table += _basic_conv(f"{src}.branch{branch}.{index}", f"{dst}/branch{branch}_{index}")
    if model._aux():
        for aux in ("aux1", "aux2"):  # fc1 reads a (C, H, W) flatten; the model transposes first
            table += _basic_conv(f"{aux}.conv", f"{aux}/conv")
            table += _dense(f"{aux}.fc1", f"{aux}/fc1") + _dense(f"{aux}.fc2", f"{aux}/fc2")
    if model.include_top:
        table += _dense("fc", "classifier")
    return table


def inception_v3_table(model: InceptionV3) -> list[Entry]:
    """torchvision `Conv2d_*`, `Mixed_*.branch*` (each a BasicConv2d), `AuxLogits.{conv0,conv1,fc}`, `fc`."""
    table = [e for name, *_ in STEM for e in _basic_conv(name, name)]
    for name, kind, _ in MIXED:
        for conv, *_ in BLOCK_CONVS[kind]:
            table += _basic_conv(f"{name}.{conv}", f"{name}/{conv}")
    if model._aux():
        table += _basic_conv("AuxLogits.conv0", "AuxLogits/conv0")
        table += _basic_conv("AuxLogits.conv1", "AuxLogits/conv1")
        table += _dense("AuxLogits.fc", "AuxLogits/fc")
    if model.include_top:
        table += _dense("fc", "classifier")
    return table


_TABLES: list[tuple[type, Callable[..., list[Entry]]]] = [
    (VGG, vgg_table),
    (ResNet, resnet_table),
    (EfficientNetLite, efficientnet_lite_table),
    (MobileNet, mobilenet_table),
    (GoogLeNet, googlenet_table),
    (InceptionV3, inception_v3_table),
]

# Bookkeeping tensors that carry no weights.
IGNORED_SOURCE_KEYS = re.compile(r".*\.num_batches_tracked$")


def name_table(model: nn.Module) -> list[Entry]:
    """The explicit source-key → Flax-path table for `model` (with or without its top)."""
    if getattr(model, "layout", "torchvision") == "keras":  # mobilenet_v2_keras, inception_v3_keras
        raise WeightMismatchError(
            f"{type(model).__name__} in the Keras layout takes Keras files (.h5, .weights.h5, .keras), "
            "not PyTorch state_dicts: build the torchvision layout for those "
            "(e.g. mobilenet_v2, inception_v3)"
        )
    for cls, fn in _TABLES:
        if isinstance(model, cls):
            return fn(model)
    raise TypeError(f"no weight name table for {type(model).__name__}")


def convert_tensor(value: np.ndarray, kind: str) -> np.ndarray:
    """Converts one PyTorch tensor to the Flax layout."""
    value = np.asarray(value)
    if (
        kind == "conv"
    ):  # OIHW → HWIO (depthwise: [C,1,k,k] → [k,k,1,C], what feature_group_count wants)
        return value.transpose(2, 3, 1, 0)
    if kind == "dense":
        return value.T
    if (
        kind == "keras_depthwise"
    ):  # Keras [kh, kw, in, mult] → [kh, kw, 1, in·mult] (channel i·mult + m)
        kh, kw, channels, mult = value.shape
        return value.reshape(kh, kw, 1, channels * mult)
    if kind == "dense_nchw7":
        # torchvision flattens [512, 7, 7] (C,H,W); tljax flattens [7, 7, 512] (H,W,C).
        out_features, in_features = value.shape
        channels = in_features // 49
        return (
            value.reshape(out_features, channels, 7, 7)
            .transpose(2, 3, 1, 0)
            .reshape(in_features, out_features)
        )
    return value


def source_shape(target_shape: Sequence[int], kind: str) -> tuple[int, ...]:
    """The PyTorch shape that `convert_tensor(value, kind)` turns into `target_shape` (the Flax shape)."""
    shape = tuple(int(n) for n in target_shape)
    if kind == "conv" and len(shape) == 4:  # HWIO → OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if kind in ("dense", "dense_nchw7") and len(shape) == 2:
        return (shape[1], shape[0])
    if kind == "keras_depthwise" and len(shape) == 4:  # depth multiplier 1
        return (shape[0], shape[1], shape[3], 1)
    return shape


def _convertible(value: np.ndarray, kind: str) -> bool:
    """Whether `convert_tensor` can rearrange `value` at all (right rank; fc6 inputs a multiple of 7x7)."""
    if kind in ("conv", "keras_depthwise"):
        return value.ndim == 4
    if kind == "dense":
        return value.ndim == 2
    if kind == "dense_nchw7":
        return value.ndim == 2 and value.shape[1] % 49 == 0
    return True


def abstract_variables(model: nn.Module, image_size: int | None = None) -> dict:
    """Shapes/dtypes of `model`'s variables, without allocating or computing anything (at
    `image_size`, by default one at which every variable exists, `tljax.models.common.init_size`)."""
    size = image_size or init_size(model)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(model.init, make_key(0), x)


@dataclass
class PortReport:
    """What a port did: loaded Flax paths, and the source keys / Flax paths skipped by `skip`."""

    loaded: list[str] = field(default_factory=list)
    skipped_targets: list[str] = field(default_factory=list)
    skipped_sources: list[str] = field(default_factory=list)


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(re.fullmatch(p, path) for p in patterns)


def _path_str(target: Iterable[str]) -> str:
    """'params/layer1_0/conv1/kernel' → 'layer1_0/conv1/kernel' (collection dropped for skip regexes)."""
    return "/".join(list(target)[1:])


def port_state_dict(
    state_dict: Mapping[str, np.ndarray],
    model: nn.Module,
    *,
    skip: Sequence[str] = (),
    init_variables: Mapping | None = None,
    rng: jax.Array | None = None,
    table_fn: Callable[[nn.Module], list[Entry]] = name_table,
    source_format: str = "PyTorch",
) -> tuple[dict, PortReport]:
    """Converts a PyTorch `state_dict` into `model`'s Flax variables, strictly.

    `skip`: regexes over '/'-joined Flax paths without the collection (e.g. `classifier/.*`) that are not
    loaded from the file (they keep `init_variables`, or a fresh `model.init(rng)`); their source keys may
    be present with any shape, or absent. A model built with `include_top=False` takes a full file and
    drops its head (named in the report). Anything else missing, unexpected or mis-shaped raises
    `WeightMismatchError` naming every offending key. Returns (variables, report). `table_fn` and
    `source_format` let another source reuse the machinery (`tljax.weights.keras_tables` for Keras).
    """
    table = table_fn(model)
    expected = flatten_dict(abstract_variables(model))
    table_targets = {e.target for e in table}
    if table_targets != set(expected):  # a bug in a table, never a user error
        raise AssertionError(
            f"name table of {type(model).__name__} disagrees with the module: "
            f"{sorted(map(_path_str, table_targets ^ set(expected)))[:10]}"
        )

    report = PortReport()
    missing, mis_shaped, flat = [], [], {}
    for entry in table:
        path = _path_str(entry.target)
        if _matches(path, skip):
            report.skipped_targets.append(path)
            if entry.source in state_dict:
                report.skipped_sources.append(entry.source)
            continue
        if entry.source not in state_dict:
            missing.append(f"{entry.source} (→ {path})")
            continue
        source = np.asarray(state_dict[entry.source])
        want = expected[entry.target].shape
        if not _convertible(source, entry.kind):
            # Checked before any transpose, which would fail with numpy's "axes don't match array".
            mis_shaped.append(
                f"{entry.source}: file {tuple(source.shape)} vs model "
                f"{source_shape(want, entry.kind)} in {source_format} layout (→ {path})"
            )
            continue
        value = convert_tensor(source, entry.kind)
        if value.shape != want:
            mis_shaped.append(
                f"{entry.source}: file {tuple(value.shape)} vs model {tuple(want)} (→ {path})"
            )
            continue
        flat[entry.target] = value.astype(expected[entry.target].dtype)
        report.loaded.append(path)
    known = {e.source for e in table}
    full = _full_model(model)
    if full is not model:
        # A full file into a model built without its head (include_top=False) or auxiliary heads
        # (aux_logits=False): those tensors were dropped on purpose, and are named in the report.
        head = [e.source for e in table_fn(full) if e.source not in known]
        report.skipped_sources += [k for k in head if k in state_dict]
        known |= set(head)
    unexpected = [k for k in state_dict if k not in known and not IGNORED_SOURCE_KEYS.fullmatch(k)]
    if missing or mis_shaped or unexpected:
        raise WeightMismatchError(
            mismatch_message(type(model).__name__, missing, unexpected, mis_shaped)
        )

    if report.skipped_targets:
        if init_variables is None:
            key = rng if rng is not None else make_key(0)
            size = init_size(model)
            init_variables = jax.jit(model.init)(key, jnp.zeros((1, size, size, 3), jnp.float32))
        init_flat = flatten_dict(dict(init_variables))
        for target in expected:
            if target not in flat:
                flat[target] = init_flat[target]
    # One device_put of the whole tree: jnp.asarray per leaf compiles a small program per shape.
    return jax.device_put(unflatten_dict(flat)), report


def _full_model(model: nn.Module) -> nn.Module:
    """`model` with every optional head on (`include_top`, `aux_logits`), or `model` itself if none is off."""
    off: dict[str, Any] = {
        name: True for name in ("include_top", "aux_logits") if getattr(model, name, True) is False
    }
    return model.clone(**off) if off else model


def mismatch_message(model_name: str, missing, unexpected, mis_shaped, limit: int = 20) -> str:
    def listing(title, keys):
        if not keys:
            return ""
        more = f"\n    … and {len(keys) - limit} more" if len(keys) > limit else ""
        return f"\n  {title} ({len(keys)}):\n    " + "\n    ".join(keys[:limit]) + more

    return (
        f"weight file does not fit {model_name}:"
        + listing("missing keys", missing)
        + listing("unexpected keys", unexpected)
        + listing("mis-shaped keys", mis_shaped)
        + "\n  Fix: pick the model that matches the file (tljax.weights.list_weights() shows which "
        "architecture each registered file is for); to load a backbone into a model with a new head, pass "
        "skip=(r'classifier/.*',)."
    )
