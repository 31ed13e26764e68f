"""MobileNet V1, MobileNetV2, Inception V3 and Xception from Keras files: saved by Keras 3 at an odd,
non-square size (97×131, with the top), read by `tljax.weights.load` from every layout that names or
counts layers differently, and compared with Keras tap by tap, with and without the top.

The references come from `tests.keras_oracle` (built once, cached per Keras version, every weight
randomised there); each layout must port to bitwise the same variables. Every model in all four
layouts: Keras 3's positional `.weights.h5` checks the table's `model.layers` order (for Inception V3
Keras' graph order), the legacy weights-only `.h5` of the published files the names of the layers Keras
leaves unnamed, the whole-model `.h5` and the `.keras` archive their configs' names and classes.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

import tljax.models as models
from tests.keras_oracle import FORMATS, keras_reference
from tests.models import keras_reference as ref
from tests.models.torch_oracle import relative_error
from tljax.weights import load
from tljax.weights.keras import read_keras
from tljax.weights.keras_port import infer_keras_architecture

TOLERANCE = 1e-5
SIZE = (97, 131)
ALL = tuple(FORMATS.values())
FILE_FORMATS = {
    "mobilenet_v1": ALL,
    "mobilenet_v2_keras": ALL,
    "inception_v3_keras": ALL,
    "xception": ALL,
}


@functools.cache
def _reference(name: str):
    app, _, taps, _ = ref.KERAS[name]
    x = np.random.default_rng(3).standard_normal((2, *SIZE, 3)).astype(np.float32)
    layers = {
        **taps(),
        "logits": "predictions",
    }  # the logits: built with classifier_activation=None
    return keras_reference(
        f"{name}-tljax-layout",
        lambda: getattr(ref.keras.applications, app)(
            weights=None, input_shape=(*SIZE, 3), classifier_activation=None
        ),
        x,
        layers,
        formats=FILE_FORMATS[name],
    )


@pytest.mark.parametrize("name", list(FILE_FORMATS))
def test_keras_files_port_to_keras_numbers_with_and_without_top(name):
    reference = _reference(name)
    last = ref.KERAS[name][3]
    expected = {**reference.outputs, "pool": reference.outputs[last].mean(axis=(1, 2))}
    model = models.get(name)
    ported = {layout: load(path, model) for layout, path in reference.files.items()}
    first, *others = (flatten_dict(v) for v in ported.values())
    for layout, flat in zip(list(ported)[1:], others, strict=True):
        assert flat.keys() == first.keys(), layout
        for path, value in flat.items():
            np.testing.assert_array_equal(value, first[path], err_msg=f"{layout} {path}")
    for layout, path in reference.files.items():
        assert infer_keras_architecture(read_keras(path)) == (name, True), layout

    for include_top in (True, False):
        model = models.get(name, include_top=include_top)
        variables = load(next(iter(reference.files.values())), model)
        taps = models.tap_names(model)
        ours = jax.jit(model.apply, static_argnames="taps")(variables, reference.inputs, taps=taps)
        errors = {tap: relative_error(ours[tap], expected[tap]) for tap in taps}
        worst = max(errors, key=errors.get)
        assert errors[worst] <= TOLERANCE, f"{name} top={include_top}: {worst} {errors[worst]:.2e}"


def _renamed_like_keras2(source, target):
    """A copy of a legacy weights-only `.h5` whose layers all have other names (as Keras 2 numbered
    unnamed layers from `conv2d_1`), in the same order: what the published files look like."""
    import h5py

    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        names = [
            n.decode() if isinstance(n, bytes) else str(n) for n in handle.attrs["layer_names"]
        ]
        renamed = [f"keras2_layer_{i + 1}" for i in range(len(names))]
        for old, new in zip(names, renamed):
            handle.move(old, new)  # the weights inside keep their paths, as in Keras 2 files
        handle.attrs["layer_names"] = np.array([n.encode() for n in renamed])
    return target


@pytest.mark.parametrize("name", list(FILE_FORMATS))
def test_a_legacy_h5_with_other_layer_names_ports_by_position_like_keras(name, tmp_path):
    # Keras' load_weights(by_name=False) reads legacy files by position; the table's layer order must
    # be Keras' model.layers order for that to give the same variables as the named file.
    reference = _reference(name)
    named = reference.files["h5_weights"]
    model = models.get(name)
    renamed = _renamed_like_keras2(named, tmp_path / "keras2_names.h5")
    assert not {la.name for la in read_keras(renamed).layers} & {
        la.name for la in read_keras(named).layers
    }
    expected, got = flatten_dict(load(named, model)), flatten_dict(load(renamed, model))
    assert got.keys() == expected.keys()
    for path, value in got.items():
        np.testing.assert_array_equal(value, expected[path], err_msg=str(path))
