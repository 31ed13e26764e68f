"""Keras Applications models ported from every Keras layout give Keras 3's numbers, tap by tap.

Each Keras model is built once per test run (`tests.keras_oracle`, cached across runs and workers),
with random BN statistics and biases, saved as legacy `.h5` (whole model and, for ResNet50, weights
only: the published files' layout), `.weights.h5` and `.keras`. Every layout must port to bitwise the
same variables, and those give Keras' block outputs and logits within 1e-5 relative error (fp32,
inference mode).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import tljax.models as models
from tests.keras_oracle import FORMATS, keras_reference
from tests.models.random_init import random_variables
from tests.models.torch_oracle import relative_error
from tljax.weights import WeightMismatchError, load
from tljax.weights.keras import read_keras
from tljax.weights.keras_port import infer_keras_architecture, port_keras
from tljax.weights.keras_tables import KerasLayoutError, keras_layer_table, positional_keys

TOLERANCE = 1e-5


def _inputs(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, height, width, 3)).astype(np.float32)


RESNET_TAPS = {
    "stem": "pool1_pool",
    **{
        f"layer{s}.{b}": f"conv{s + 1}_block{b + 1}_out"
        for s, count in enumerate((3, 4, 6, 3), start=1)
        for b in range(count)
    },
    "pool": "avg_pool",
    "logits": "predictions",
}
# Keras fuses the ReLU into each Conv2D/Dense, so the post-ReLU tljax taps are the comparable ones.
VGG16_TAPS = {
    **{
        f"relu{s}_{i}": f"block{s}_conv{i}"
        for s, n in enumerate((2, 2, 3, 3, 3), start=1)
        for i in range(1, n + 1)
    },
    **{f"pool{s}": f"block{s}_pool" for s in range(1, 6)},
    "relu6": "fc1",
    "relu7": "fc2",
    "logits": "predictions",
}


def _resnet50():
    import keras

    # An odd, non-square input: Keras v1 strides its 1x1 convs, whose sampling parity this checks.
    return keras.applications.ResNet50(weights=None, input_shape=(97, 131, 3))


def _vgg16():
    import keras

    return keras.applications.VGG16(weights=None)  # Keras' Flatten top needs 224x224


# VGG16's files are 0.55 GB each: the legacy weights-only layout (the published files') is checked on
# ResNet50 only; both architectures are checked in .h5, .weights.h5 and .keras.
CASES = {
    "resnet50_keras": ("resnet50", _resnet50, (97, 131), RESNET_TAPS, tuple(FORMATS.values())),
    "vgg16_keras": ("vgg16", _vgg16, (224, 224), VGG16_TAPS, ("h5_model", "weights_h5", "keras")),
}


@functools.cache
def _reference(arch: str):
    """(tljax name, KerasReference): one Keras build per architecture per test run (or none: cached)."""
    key, builder, size, taps, formats = CASES[arch]
    return arch, keras_reference(
        key, builder, _inputs(*size), taps, logits_layer="predictions", formats=formats
    )


@pytest.fixture(params=list(CASES))
def reference(request):
    return _reference(request.param)


def test_every_keras_layout_ports_to_keras_numbers(reference):
    """Each layout: read (once: VGG16's files are 0.55 GB), told apart, ported to bitwise the same
    variables as the others; then Keras' taps and logits, the table's layer order, and partial loads."""
    arch, ref = reference
    model = models.get(arch)
    first = None
    for layout, path in ref.files.items():
        keras_file = read_keras(path)
        assert keras_file.format == layout
        assert infer_keras_architecture(keras_file) == (arch, True)
        variables, _ = port_keras(keras_file, model)
        if first is None:
            first, flat = variables, flatten_dict(variables)
            continue
        other = flatten_dict(variables)
        assert other.keys() == flat.keys(), layout
        for path_, value in other.items():
            np.testing.assert_array_equal(value, flat[path_], err_msg=f"{layout} {path_}")
        del variables, other

    taps = [t for t in models.tap_names(model) if t in ref.outputs]
    assert len(taps) >= 10 and "logits" in taps
    ours = jax.jit(model.apply, static_argnames="taps")(first, ref.inputs, taps=tuple(taps))
    errors = {tap: relative_error(ours[tap], ref.outputs[tap]) for tap in taps}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"{arch}: tap {worst} off by {errors[worst]:.2e}"
    # Keras' own output is the softmax of the logits tljax ports.
    probabilities = jax.nn.softmax(ours["logits"])
    assert relative_error(probabilities, ref.outputs["__model_output__"]) <= TOLERANCE

    # The table's order is Keras' model.layers order: the positional keys it computes carry the
    # layer names Keras wrote beside them (keras_file is the last layout read: .keras).
    assert keras_file.format == "keras"
    by_key = positional_keys(keras_layer_table(model))
    assert {la.key: la.name for la in keras_file.layers} == {k: s.name for k, s in by_key.items()}

    headless, report = port_keras(keras_file, models.get(arch, include_top=False))
    assert "predictions/kernel" in report.skipped_sources
    for path_, value in flatten_dict(headless).items():
        np.testing.assert_array_equal(value, flat[path_])
    seven = models.get(arch, num_classes=7)
    new_head, report = port_keras(
        keras_file, seven, skip=(r"classifier/.*",), init_variables=random_variables(seven)
    )
    assert report.skipped_targets == ["classifier/kernel", "classifier/bias"]
    assert new_head["params"]["classifier"]["kernel"].shape[-1] == 7


def test_registered_keras_weights_load_for_rgb_and_convert(monkeypatch, tmp_path):
    """`load("resnet50_keras")` finds the file in the cache (md5-checked), folds Keras' 'caffe' BGR
    order into conv1, and `convert` writes a checkpoint that loads to the same variables."""
    import hashlib

    from tljax.weights import convert, registry

    _, ref = _reference("resnet50_keras")
    path = ref.files["h5_weights"]  # the published files' layout
    spec = registry.get_spec("resnet50_keras")
    monkeypatch.setenv("TLJAX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "weights").mkdir(parents=True)
    (tmp_path / "cache" / "weights" / spec.filename).symlink_to(path)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(
        registry._REGISTRY, spec.name, registry.WeightSpec(**{**spec.__dict__, "md5": md5})
    )

    registered = load("resnet50_keras")
    as_is = load(path)
    kernel, flipped = as_is["params"]["conv1"]["kernel"], registered["params"]["conv1"]["kernel"]
    np.testing.assert_array_equal(flipped, kernel[:, :, ::-1, :])
    np.testing.assert_array_equal(
        registered["params"]["classifier"]["kernel"], as_is["params"]["classifier"]["kernel"]
    )

    out = convert(str(ref.files["keras"]), str(tmp_path / "converted"))
    for key, value in flatten_dict(load(out)).items():
        np.testing.assert_array_equal(value, flatten_dict(as_is)[key])


def test_a_keras_file_of_another_architecture_names_what_does_not_fit():
    _, vgg = _reference("vgg16_keras")
    with pytest.raises(WeightMismatchError) as error:
        load(vgg.files["h5_model"], models.get("resnet50_keras"))
    message = str(error.value)
    assert "holds vgg16_keras weights (told by its layers): pass --model=vgg16_keras" in message
    assert "layers the model does not have (15): block1_conv1, block1_conv2" in message
    assert "layers the file lacks (106): conv1_bn, conv1_conv" in message
    with pytest.raises(
        KerasLayoutError, match="load them into resnet50_keras, not the torchvision"
    ):
        load(vgg.files["keras"], models.get("resnet50"))
