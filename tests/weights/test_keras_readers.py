"""Keras files read with h5py only: every layout, every layer kind's conversion, and bad input.

A small Keras model with each weighted layer kind tljax ports (Conv2D, BatchNormalization without
scale, DepthwiseConv2D with a depth multiplier, SeparableConv2D, Dense with softmax) is saved in every
layout and ported into a Flax twin through the same table helpers the architectures use; the Flax twin
must give Keras' numbers. Bad files must each give one clear error.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import flax.linen as nn
import h5py
import jax
import numpy as np
import pytest

import tests.keras_oracle  # noqa: F401  (sets KERAS_BACKEND=jax before keras is imported)
from tests.models.torch_oracle import relative_error
from tljax.weights import WeightFileError, WeightMismatchError
from tljax.weights.keras import UnsafeKerasConfigError, read_keras, snake_case
from tljax.weights.keras_port import port_keras
from tljax.weights.keras_tables import (
    _KERAS_TABLES,
    batch_norm,
    conv,
    dense,
    depthwise,
    register_keras_table,
    separable,
)


class TinyNet(nn.Module):
    """The Flax twin of `_tiny_keras`: conv → BN (no scale) → ReLU → depthwise ×2 → separable → GAP → dense."""

    num_classes: int = 3
    include_top: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), padding="VALID", name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3, name="bn")(x)
        x = nn.relu(x)
        x = nn.Conv(8, (3, 3), padding="VALID", feature_group_count=4, name="dw")(x)
        # Keras' SeparableConv2D: depthwise then pointwise, nothing between (the bias after both).
        x = nn.Conv(
            8, (3, 3), padding="VALID", feature_group_count=8, use_bias=False, name="sep_dw"
        )(x)
        x = nn.Conv(5, (1, 1), name="sep_pw")(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x) if self.include_top else x


def tiny_table(model: TinyNet):
    table = [
        conv("c1", "conv"),
        batch_norm("b1", "bn", scale=False),
        depthwise("dw", "dw", bias=True),
        separable("sep", "sep_dw", "sep_pw", bias=True),
    ]
    return table + ([dense("fc", "fc")] if model.include_top else [])


@pytest.fixture(scope="module", autouse=True)
def _tiny_table_registered():
    register_keras_table(TinyNet, tiny_table, model_names=())
    yield
    _KERAS_TABLES[:] = [t for t in _KERAS_TABLES if t[0] is not TinyNet]


def _tiny_keras(extra_dense: bool = False, lam=None):
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((13, 11, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="b1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(5, 3, name="sep")(x)
    if lam is not None:
        x = keras.layers.Lambda(lam[0], arguments=lam[1], name="lam")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if extra_dense:
        x = keras.layers.Dense(5, name="extra")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="fc")(x))
    tests.keras_oracle.randomize(model, 1)
    return model


@functools.cache
def _saved(directory: str) -> dict[str, Path]:
    """The tiny model in every layout (built once per test module run)."""
    from keras.src.legacy.saving import legacy_h5_format

    model, root = _tiny_keras(), Path(directory)
    files = {
        "h5_model": root / "tiny.h5",
        "h5_weights": root / "tiny_weights.h5",
        "weights_h5": root / "tiny.weights.h5",
        "keras": root / "tiny.keras",
    }
    model.save(files["h5_model"])
    with h5py.File(files["h5_weights"], "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    model.save_weights(files["weights_h5"])
    model.save(files["keras"])
    x = np.random.default_rng(0).standard_normal((2, 13, 11, 3)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", np.asarray(model.predict(x, verbose=0)))
    np.save(root / "y_bgr.npy", np.asarray(model.predict(x[..., ::-1], verbose=0)))
    np.savez(root / "weights.npz", *[w for la in model.layers for w in la.get_weights()])
    return files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _saved(str(tmp_path_factory.mktemp("tiny_keras")))


def _logits(variables, x):
    return TinyNet().apply(variables, x)


def test_snake_case_is_keras():
    from keras.src.utils.naming import to_snake_case

    for name in [
        "Conv2D",
        "BatchNormalization",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Dense",
        "ReLU",
    ]:
        assert snake_case(name) == to_snake_case(name)


def test_every_layout_reads_keras_weights_in_order(tiny):
    with np.load(tiny["keras"].parent / "weights.npz") as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    counts = {"c1": 2, "b1": 3, "dw": 2, "sep": 3, "fc": 2}  # Keras' layer.get_weights(), in order
    expected, start = {}, 0
    for name, count in counts.items():
        expected[name], start = arrays[start : start + count], start + count
    for layout, path in tiny.items():
        keras_file = read_keras(path)
        assert keras_file.format == layout
        got = {layer.name: layer.weights for layer in keras_file.layers}
        assert got.keys() == expected.keys(), layout
        for name, weights in got.items():
            assert len(weights) == len(expected[name]), (layout, name)
            for ours, theirs in zip(weights, expected[name]):
                np.testing.assert_array_equal(ours, theirs)
    # Keras 3 files carry positional keys (ordered by class, then position: the model's order per
    # class), legacy files names in the model's order; .keras both, in its config's order.
    assert [la.key for la in read_keras(tiny["weights_h5"]).layers] == [
        "batch_normalization", "conv2d", "dense", "depthwise_conv2d", "separable_conv2d"
    ]  # fmt: skip
    archive = read_keras(tiny["keras"])
    assert [la.name for la in archive.layers] == ["c1", "b1", "dw", "sep", "fc"]
    assert archive.layers[1].class_name == "BatchNormalization"


def test_each_layer_kind_ports_to_keras_numbers(tiny):
    """BN without gamma, depthwise [kh, kw, in, mult], separable, softmax → logits: Keras' outputs."""
    x = np.load(tiny["keras"].parent / "x.npy")
    y = np.load(tiny["keras"].parent / "y.npy")
    for layout, path in tiny.items():
        variables, _ = port_keras(read_keras(path), TinyNet())
        ours = jax.nn.softmax(_logits(variables, x))
        assert relative_error(ours, y) <= 1e-5, layout


def test_weights_file_without_layer_names_ports_by_position(tiny, tmp_path):
    """Keras 3 files before the `name` attribute (and any file stripped of it) port by class and position."""
    path = tmp_path / "nameless.weights.h5"
    path.write_bytes(tiny["weights_h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        for group in handle["layers"].values():
            if "vars" in group:
                group["vars"].attrs.pop("name", None)
    keras_file = read_keras(path)
    assert not keras_file.named and keras_file.layers[0].label == "batch_normalization"
    x = np.load(tiny["keras"].parent / "x.npy")
    variables, _ = port_keras(keras_file, TinyNet())
    y = np.load(tiny["keras"].parent / "y.npy")
    assert relative_error(jax.nn.softmax(_logits(variables, x)), y) <= 1e-5


def test_bgr_to_rgb_folds_caffe_channel_order_into_the_first_conv(tiny):
    x = np.load(tiny["keras"].parent / "x.npy")
    y_bgr = np.load(tiny["keras"].parent / "y_bgr.npy")  # Keras fed the channel-reversed images
    variables, _ = port_keras(read_keras(tiny["keras"]), TinyNet(), bgr_to_rgb=True)
    assert relative_error(jax.nn.softmax(_logits(variables, x)), y_bgr) <= 1e-5


def test_weights_file_with_another_layer_count_is_refused(tmp_path):
    path = tmp_path / "extra.weights.h5"
    _tiny_keras(extra_dense=True).save_weights(path)
    with pytest.raises(WeightMismatchError) as error:
        port_keras(read_keras(path), TinyNet())
    message = str(error.value)
    assert "the file has 6 weighted layers, the model 5" in message
    assert "dense_1 (fc)" in message  # the positional key and the name Keras recorded


def test_h5_that_is_not_keras_is_refused(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((2, 3))
    with pytest.raises(WeightFileError, match="an HDF5 file but not a Keras weight file"):
        read_keras(path)


@pytest.mark.parametrize("layout", ["keras", "h5_model", "weights_h5"])
def test_truncated_keras_files_are_refused(tiny, tmp_path, layout):
    data = tiny[layout].read_bytes()
    path = tmp_path / tiny[layout].name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="truncated or corrupt") as error:
        read_keras(path)
    assert str(path) in str(error.value)


def test_hdf5_links_to_other_files_are_not_followed(tiny, tmp_path):
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"c1"]
        group = handle.create_group("c1")
        group.attrs["weight_names"] = [b"kernel"]
        group["kernel"] = h5py.ExternalLink(str(tiny["h5_weights"]), "/c1/c1/kernel")
    with pytest.raises(WeightFileError, match="does not follow links"):
        read_keras(path)


def test_keras_archive_with_a_lambda_is_refused_and_nothing_runs(tmp_path):
    import keras

    marker = tmp_path / "code_ran"

    # A Python lambda is saved as bytecode (its `arguments` in the config); it runs whenever the
    # layer is built or called.
    touch = lambda x, path: (open(path, "a").close(), x)[1]  # noqa: E731

    path = tmp_path / "lambda.keras"
    _tiny_keras(lam=(touch, {"path": str(marker)})).save(path)
    marker.unlink()  # building the model ran it once
    with pytest.raises(UnsafeKerasConfigError, match="Lambda layer 'lam'"):
        read_keras(path)
    assert not marker.exists()
    # The archive does carry code: Keras itself runs it when asked to deserialise unsafely.
    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


def test_custom_objects_in_a_config_are_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="Mine")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    keras.backend.clear_session()
    inputs = keras.Input((4,))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, keras.layers.Dense(2, name="fc")(Scale()(inputs))).save(path)
    with pytest.raises(UnsafeKerasConfigError, match="Scale"):
        read_keras(path)


def test_not_a_keras_file(tmp_path):
    path = tmp_path / "x.keras"
    path.write_bytes(b"hello world")
    with pytest.raises(WeightFileError, match="must start with a zip header"):
        read_keras(path)
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "hi")
    with pytest.raises(WeightFileError, match="without config.json"):
        read_keras(archive)
    assert os.path.exists(archive)


def test_oracle_builds_once_and_replaces_stale_references(tmp_path, monkeypatch):
    from tests.keras_oracle import keras_reference

    monkeypatch.setenv("TLJAX_KERAS_ORACLE_CACHE", str(tmp_path))
    builds = []

    def builder():
        builds.append(1)
        return _tiny_keras()

    x = np.random.default_rng(0).standard_normal((1, 13, 11, 3)).astype(np.float32)
    taps = {"c1": "c1"}
    first = keras_reference("tiny", builder, x, taps, formats=("weights_h5",))
    again = keras_reference("tiny", builder, x, taps, formats=("weights_h5",))
    assert len(builds) == 1 and again.seconds == 0.0 and again.directory == first.directory
    np.testing.assert_array_equal(again.outputs["c1"], first.outputs["c1"])
    assert list(first.files) == ["weights_h5"] and first.files["weights_h5"].is_file()
    other = keras_reference("tiny", builder, x + 1, taps, formats=("weights_h5",))
    assert len(builds) == 2 and other.directory != first.directory
    assert not first.directory.exists()  # the stale reference of the same name is gone
    assert not list(first.directory.parent.glob(".tiny-*"))  # no staging left behind
