"""Keras name tables of the Keras-only architectures: MobileNet V1, MobileNetV2, Inception V3, Xception.

Each table lists the weighted layers of the `keras.applications` model in Keras' `model.layers` order
(see `tljax.weights.keras_tables`) with the tljax module each goes to. Layers Keras leaves unnamed get
the names a fresh Keras session gives them, in the order they are created: `conv2d`, `conv2d_1`, …,
`batch_normalization`, `batch_normalization_1`, … (Inception V3's every conv and BN, Xception's four
shortcut convs and their BNs). Their place in `model.layers` is Keras' graph order, which for
Inception V3's branching blocks is not the order they are written in: `keras_layer_order` computes it
the way Keras does, from a description of the graph.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from tljax.models.inception_v3 import BLOCK_CONVS, MIXED, STEM, InceptionV3
from tljax.models.mobilenet import MobileNet
from tljax.models.mobilenet_v1 import ALPHAS, BLOCKS, MobileNetV1
from tljax.models.xception import Xception, _blocks
from tljax.weights.keras_tables import (
    KerasLayerSpec,
    KerasLayoutError,
    batch_norm,
    conv,
    dense,
    depthwise,
    register_keras_table,
    separable,
)


def auto_name(base: str, index: int) -> str:
    """The name Keras gives the index-th unnamed layer of a class in a fresh session: `conv2d`,
    `conv2d_1`, …"""
    return base if index == 0 else f"{base}_{index}"


def keras_layer_order(inputs: Mapping[str, Sequence[str]], output: str) -> list[str]:
    """The nodes of a layer graph in a Keras Functional model's `model.layers` order.

    `inputs` maps every layer to the layers it is called on, in call order. Keras sorts layers by
    decreasing depth (the longest path from the layer to `output`), and layers of equal depth by the
    order a depth-first walk from `output`, visiting each layer's inputs in call order, first meets them
    (`keras.src.ops.function.map_graph`).
    """
    visited: dict[str, int] = {}
    stack = [output]
    while stack:  # pre-order DFS, iterative (Inception's graph is ~300 layers deep)
        node = stack.pop()
        if node in visited:
            continue
        visited[node] = len(visited)
        stack.extend(reversed(inputs[node]))
    consumers: dict[str, list[str]] = {node: [] for node in inputs}
    for node, sources in inputs.items():
        for source in sources:
            consumers[source].append(node)

    @functools.cache
    def depth(node: str) -> int:
        return max((depth(c) + 1 for c in consumers[node]), default=0)

    for node in sorted(
        visited, key=lambda node: visited[node], reverse=True
    ):  # fill the cache leaves-first
        depth(node)
    return sorted(visited, key=lambda node: (-depth(node), visited[node]))


# ----------------------------------------------------------------------------------------------
# MobileNet V1 and MobileNetV2: sequential graphs, named layers.


def mobilenet_v1_keras_table(model: MobileNetV1) -> list[KerasLayerSpec]:
    """Keras `MobileNet`: `conv1`, `conv1_bn`, `conv_dw_N`, `conv_dw_N_bn`, `conv_pw_N`, `conv_pw_N_bn`
    (N = 1..13), `conv_preds` → `conv1`, `conv1_bn`, `blocks_N/…`, `classifier`."""
    table = [conv("conv1", "conv1", bias=False), batch_norm("conv1_bn", "conv1_bn")]
    for i in range(1, len(BLOCKS) + 1):
        for part in ("dw", "pw"):
            layer, dst = f"conv_{part}_{i}", f"blocks_{i}/conv_{part}"
            make = depthwise if part == "dw" else functools.partial(conv, bias=False)
            table += [make(layer, dst), batch_norm(f"{layer}_bn", f"{dst}_bn")]
    if model.include_top:
        table.append(conv("conv_preds", "classifier"))
    return table


def mobilenet_v2_keras_table(model: MobileNet) -> list[KerasLayerSpec]:
    """Keras `MobileNetV2`: `Conv1`, `bn_Conv1`, `expanded_conv_*` (block 0, no expansion),
    `block_{k}_{expand,depthwise,project}[_BN]`, `Conv_1`, `Conv_1_bn`, `predictions` → `stem_*`,
    `features_{k+1}/…`, `head_*`, `classifier`."""
    if model.layout != "keras" or model.version != "v2":
        raise KerasLayoutError(
            f"Keras MobileNetV2 files are the Keras layout (TF 'same' padding, BN eps 1e-3): load them "
            f"into mobilenet_v2_keras, not {model.variant}"
        )
    table = [conv("Conv1", "stem_conv", bias=False), batch_norm("bn_Conv1", "stem_bn")]
    for k, spec in enumerate(model._specs()):
        prefix, dst = (f"block_{k}_" if k else "expanded_conv_"), f"features_{k + 1}"
        parts = (("expand", "expand"),) if model._expands(spec) else ()
        for keras_part, ours in (*parts, ("depthwise", "depthwise"), ("project", "project")):
            make = depthwise if keras_part == "depthwise" else functools.partial(conv, bias=False)
            table.append(make(f"{prefix}{keras_part}", f"{dst}/{ours}_conv"))
            table.append(batch_norm(f"{prefix}{keras_part}_BN", f"{dst}/{ours}_bn"))
    table += [conv("Conv_1", "head_conv", bias=False), batch_norm("Conv_1_bn", "head_bn")]
    if model.include_top:
        table.append(dense("predictions", "classifier"))
    return table


# ----------------------------------------------------------------------------------------------
# Inception V3: every conv and BN unnamed, branching blocks.

# Each Mixed block's branches, as Keras calls them: conv names of BLOCK_CONVS, pools, and (E blocks)
# a pair of convs that both read the previous one and are concatenated.
_BRANCHES: dict[str, tuple[tuple[str | tuple[str, str], ...], ...]] = {
    "A": (
        ("branch1x1",),
        ("branch5x5_1", "branch5x5_2"),
        ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
        ("avgpool", "branch_pool"),
    ),
    "B": (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), ("maxpool",)),
    "C": (
        ("branch1x1",),
        ("branch7x7_1", "branch7x7_2", "branch7x7_3"),
        tuple(f"branch7x7dbl_{i}" for i in range(1, 6)),
        ("avgpool", "branch_pool"),
    ),
    "D": (
        ("branch3x3_1", "branch3x3_2"),
        tuple(f"branch7x7x3_{i}" for i in range(1, 5)),
        ("maxpool",),
    ),
    "E": (
        ("branch1x1",),
        ("branch3x3_1", ("branch3x3_2a", "branch3x3_2b")),
        ("branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")),
        ("avgpool", "branch_pool"),
    ),
}


def _inception_v3_graph(include_top: bool) -> tuple[dict[str, list[str]], str, dict[str, int]]:
    """Keras InceptionV3's layer graph (every conv → BN → ReLU unit as three layers), its output, and
    tljax path → creation index of every conv-BN unit (its Keras names are `conv2d_{index}`,
    `batch_normalization_{index}`)."""
    inputs: dict[str, list[str]] = {"input": []}
    names: dict[str, int] = {}

    def unit(path: str, source: str) -> str:
        """A `conv2d_bn` reading `source`; returns its ReLU's node."""
        names[path] = len(names)
        inputs[f"{path}/conv"], inputs[f"{path}/bn"] = [source], [f"{path}/conv"]
        inputs[f"{path}/relu"] = [f"{path}/bn"]
        return f"{path}/relu"

    def op(node: str, sources: list[str]) -> str:
        inputs[node] = sources
        return node

    x = "input"
    for name, *_ in STEM:
        x = unit(name, x)
        if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
            x = op(f"{name}/maxpool", [x])
    for block, kind, _ in MIXED:
        ends = []
        for b, branch in enumerate(_BRANCHES[kind]):
            y = x
            for step in branch:
                if isinstance(step, tuple):  # two convs on the same input, concatenated
                    y = op(f"{block}/{b}/concat", [unit(f"{block}/{c}", y) for c in step])
                elif step in ("avgpool", "maxpool"):
                    y = op(f"{block}/{b}/{step}", [y])
                else:
                    y = unit(f"{block}/{step}", y)
            ends.append(y)
        x = op(block, ends)
    if include_top:
        x = op("classifier", [op("pool", [x])])
    return inputs, x, names


def inception_v3_keras_table(model: InceptionV3) -> list[KerasLayerSpec]:
    """Keras `InceptionV3`: `conv2d{_k}` (no bias), `batch_normalization{_k}` (`scale=False`),
    `predictions` → `{stem conv}/{conv,bn}`, `Mixed_*/{branch}/{conv,bn}`, `classifier`, in Keras' graph
    order (`keras_layer_order`)."""
    if model.layout != "keras":
        raise KerasLayoutError(
            "Keras InceptionV3 files are the Keras layout (BN without scale, average pools that exclude "
            "padding): load them into inception_v3_keras, not the torchvision inception_v3"
        )
    inputs, output, names = _inception_v3_graph(model.include_top)
    expected = {name for name, *_ in STEM}
    expected |= {f"{block}/{c}" for block, kind, _ in MIXED for c, *_ in BLOCK_CONVS[kind]}
    assert set(names) == expected, sorted(set(names) ^ expected)  # the graph covers every conv
    table = []
    for node in keras_layer_order(inputs, output):
        path, _, role = node.rpartition("/")
        if role == "conv":
            table.append(conv(auto_name("conv2d", names[path]), f"{path}/conv", bias=False))
        elif role == "bn":
            bn_name = auto_name("batch_normalization", names[path])
            table.append(batch_norm(bn_name, f"{path}/bn", scale=False))
        elif node == "classifier":
            table.append(dense("predictions", "classifier"))
    return table


# ----------------------------------------------------------------------------------------------
# Xception: named layers except the shortcut convs / BNs, which follow their block's separable convs
# in `model.layers` (the main branch is the Add's first input).


def xception_keras_table(model: Xception) -> list[KerasLayerSpec]:
    """Keras `Xception`: `block1_conv{1,2}[_bn]`, `block{i}_sepconv{j}[_bn]`, the unnamed shortcut
    `conv2d{_r}` / `batch_normalization{_r}` of blocks 2, 3, 4, 13, `predictions`."""
    table: list[KerasLayerSpec] = []
    shortcut = 0
    for i, kind, widths, _, _ in _blocks():
        if kind == "stem":
            for j in (1, 2):
                table.append(conv(f"block1_conv{j}", f"block1/conv{j}", bias=False))
                table.append(batch_norm(f"block1_conv{j}_bn", f"block1/conv{j}_bn"))
            continue
        for j in range(1, len(widths) + 1):
            layer, dst = f"block{i}_sepconv{j}", f"block{i}/sepconv{j}"
            table.append(separable(layer, f"{dst}/depthwise", f"{dst}/pointwise"))
            table.append(batch_norm(f"{layer}_bn", f"{dst}_bn"))
        if kind == "reduction":
            table.append(conv(auto_name("conv2d", shortcut), f"block{i}/residual_conv", bias=False))
            table.append(
                batch_norm(auto_name("batch_normalization", shortcut), f"block{i}/residual_bn")
            )
            shortcut += 1
    if model.include_top:
        table.append(dense("predictions", "classifier"))
    return table


# Layer names do not tell α apart: files are recognised as `mobilenet_v1` (α = 1), which names the
# mis-shaped layers of a narrower file.
register_keras_table(
    MobileNetV1,
    mobilenet_v1_keras_table,
    model_names=(
        "mobilenet_v1",
        *(f"mobilenet_v1_{int(a * 100):03d}" for a in ALPHAS if a != 1.0),
    ),
)
register_keras_table(MobileNet, mobilenet_v2_keras_table, model_names=("mobilenet_v2_keras",))
register_keras_table(InceptionV3, inception_v3_keras_table, model_names=("inception_v3_keras",))
register_keras_table(Xception, xception_keras_table, model_names=("xception",))
