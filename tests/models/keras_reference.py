"""Keras Applications models as test oracles for the Keras layouts (JAX backend, random weights).

`build` makes a `keras.applications` model with `weights=None` and logits out, then gives every weight
seeded random values (BN scale, shift and moving statistics included), so a port that ignored any of
them would fail. Keras compiles one JAX random kernel per weight shape while it builds (~20 s for
InceptionV3 on this CPU) only to draw values we overwrite; during the build its variance-scaling
initialiser (the default of every conv / dense layer in these models) returns zeros instead.
`port_in_memory` copies the weights into tljax variables through the model's Keras table; `keras_taps`
runs the Keras model once for a set of its layers' outputs.
"""

from __future__ import annotations

import contextlib
import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from flax.traverse_util import flatten_dict, unflatten_dict  # noqa: E402
from keras.src.initializers import random_initializers  # noqa: E402

import tljax.models  # noqa: E402
import tljax.weights.keras_port  # noqa: E402, F401  (registers every Keras table)
from tljax.weights.keras_layouts import auto_name  # noqa: E402
from tljax.weights.keras_tables import keras_layer_table  # noqa: E402
from tljax.weights.porting import abstract_variables  # noqa: E402

assert keras.backend.backend() == "jax", "set KERAS_BACKEND=jax before keras is imported"


@contextlib.contextmanager
def _zero_initialisers():
    original = random_initializers.VarianceScaling.__call__
    random_initializers.VarianceScaling.__call__ = lambda self, shape, dtype=None: np.zeros(
        shape, dtype or "float32"
    )
    try:
        yield
    finally:
        random_initializers.VarianceScaling.__call__ = original


def build(app: str, seed: int = 0, **kwargs) -> keras.Model:
    """`keras.applications.<app>(weights=None, classifier_activation=None, **kwargs)` with seeded random
    weights: kernels with variance 1 / fan-in, biases and BN shifts/means small, BN scales and
    variances around 1. (With He's 2 / fan-in the activations grow through MobileNetV2's 50 layers and
    float32 rounding with them, ~2× every few blocks, to 1e-4 by the head; at 1 / fan-in they stay
    O(1) and every tap agrees to ~1e-6.)"""
    with _zero_initialisers():
        model = getattr(keras.applications, app)(weights=None, classifier_activation=None, **kwargs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape, name = tuple(variable.shape), variable.name
            if name in ("gamma", "moving_variance"):
                value = 0.5 + rng.random(shape)
            elif name in ("beta", "moving_mean", "bias"):
                value = 0.2 * rng.standard_normal(shape)
            else:  # kernels; a depthwise filter's fan-in is its kh·kw taps
                depthwise = name == "depthwise_kernel" or isinstance(
                    layer, keras.layers.DepthwiseConv2D
                )
                fan_in = int(np.prod(shape[:2] if depthwise else shape[:-1]))
                value = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
            values.append(value.astype(np.float32))
        if values:
            layer.set_weights(values)
    return model


def fresh_names(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Layers by the names a fresh Keras session would give them: an unnamed layer is
    `<snake_case class>_<counter>`, the counter shared by the whole session, so `conv2d_94` in a session
    that built another model first is this model's `conv2d`."""
    auto: dict[str, list[tuple[int, keras.layers.Layer]]] = {}
    out = {}
    for layer in model.layers:
        base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", type(layer).__name__).lower()
        match = re.fullmatch(rf"{base}(?:_(\d+))?", layer.name)
        if match:
            auto.setdefault(base, []).append((int(match.group(1) or 0), layer))
        else:
            out[layer.name] = layer
    for base, layers in auto.items():
        for rank, (_, layer) in enumerate(sorted(layers, key=lambda item: item[0])):
            out[base if rank == 0 else f"{base}_{rank}"] = layer
    return out


def port_in_memory(keras_model: keras.Model, flax_model) -> dict:
    """The Keras model's weights as `flax_model`'s variables, through its Keras table; asserts that the
    table lists the weighted layers in `model.layers` order (what `.weights.h5` keys count in), with
    Keras' classes and weight roles, and fills every variable with the right shape."""
    table = keras_layer_table(flax_model)
    by_name = fresh_names(keras_model)
    layer_names = {id(layer): name for name, layer in by_name.items()}
    weighted = [layer_names[id(la)] for la in keras_model.layers if la.weights]
    assert [spec.name for spec in table] == weighted
    expected = flatten_dict(abstract_variables(flax_model))
    flat = {}
    for spec in table:
        layer = by_name[spec.name]
        assert type(layer).__name__ == spec.class_name, (spec.name, type(layer).__name__)
        assert tuple(v.name for v in layer.weights) == spec.roles, spec.name
        for (_, target, kind), value in zip(spec.weights, layer.get_weights(), strict=True):
            if kind == "keras_depthwise":  # [kh, kw, in, mult] → [kh, kw, 1, in·mult]
                kh, kw, channels, mult = value.shape
                value = value.reshape(kh, kw, 1, channels * mult)
            assert value.shape == expected[target].shape, (spec.name, target)
            flat[target] = value
    assert set(flat) == set(expected)
    return unflatten_dict(flat)


def keras_taps(keras_model: keras.Model, layers: dict[str, str], x: np.ndarray) -> dict:
    """{tap: output of the Keras layer named layers[tap] (a fresh-session name)} for input x [B, H, W, 3],
    plus `logits` (the model's output) when the model has its top; one compiled forward pass."""
    by_name = fresh_names(keras_model)
    names = list(layers)
    outputs = [by_name[layers[t]].output for t in names]
    if "predictions" in by_name or "conv_preds" in by_name:
        names.append("logits")
        outputs.append(keras_model.output)
    probe = keras.Model(keras_model.input, outputs)
    values = probe.predict(x, verbose=0, batch_size=len(x))
    return dict(zip(names, map(np.asarray, values), strict=True))


def _mobilenet_v1_taps() -> dict[str, str]:
    return {"stem": "conv1_relu", **{f"blocks.{i}": f"conv_pw_{i}_relu" for i in range(1, 14)}}


def _mobilenet_v2_taps() -> dict[str, str]:
    taps = {"features.0": "Conv1_relu", "features.1": "expanded_conv_project_BN"}
    for k, spec in enumerate(tljax.models.get("mobilenet_v2_keras")._specs()[1:], start=1):
        residual = spec.stride == 1 and spec.in_ch == spec.out_ch
        taps[f"features.{k + 1}"] = f"block_{k}_add" if residual else f"block_{k}_project_BN"
    return {**taps, "features.18": "out_relu"}


def _inception_v3_taps() -> dict[str, str]:
    stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    taps = {name: auto_name("activation", i) for i, name in enumerate(stem)}
    taps |= {"maxpool1": "max_pooling2d", "maxpool2": "max_pooling2d_1"}
    return taps | {f"mixed{i}": f"mixed{i}" for i in range(11)}


def _xception_taps() -> dict[str, str]:
    adds = ["entry_flow.1", "entry_flow.2", "entry_flow.3"]
    adds += [f"middle_flow.{j}" for j in range(8)] + ["exit_flow.0"]
    taps = {"entry_flow.0": "block1_conv2_act", "exit_flow": "block14_sepconv2_act"}
    return taps | {tap: auto_name("add", i) for i, tap in enumerate(adds)}


# tljax name: (keras.applications constructor, native size, tap → Keras layer (fresh-session names),
# the last feature tap, whose global average is `pool`)
KERAS = {
    "mobilenet_v1": ("MobileNet", 224, _mobilenet_v1_taps, "blocks.13"),
    "mobilenet_v2_keras": ("MobileNetV2", 224, _mobilenet_v2_taps, "features.18"),
    "inception_v3_keras": ("InceptionV3", 299, _inception_v3_taps, "mixed10"),
    "xception": ("Xception", 299, _xception_taps, "exit_flow"),
}
