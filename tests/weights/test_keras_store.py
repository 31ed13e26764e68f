"""Keras Applications registry entries: Keras' own URLs, md5 digests and preprocessing, without a network."""

from __future__ import annotations

import hashlib
import inspect
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

import tests.keras_oracle  # noqa: F401  (KERAS_BACKEND=jax before keras is imported)
import tljax.models as models
from tljax.weights import registry, store
from tljax.weights.registry import get_spec, keras_preprocessing, list_weights
from tljax.weights.store import ChecksumError, WeightsUnavailableError, resolve

CAFFE = ["resnet50_keras", "resnet101_keras", "resnet152_keras", "vgg16_keras", "vgg19_keras"]
TF = ["mobilenet_v1", "mobilenet_v2_keras", "inception_v3_keras", "xception"]


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TLJAX_CACHE", str(tmp_path / "tljax_cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


def test_entries_are_the_files_keras_applications_downloads():
    from keras.src.applications import (
        inception_v3,
        mobilenet,
        mobilenet_v2,
        resnet,
        vgg16,
        vgg19,
        xception,
    )

    assert [n for n in list_weights() if get_spec(n).source == "keras"] == CAFFE + TF
    for depth in (50, 101, 152):
        spec = get_spec(f"resnet{depth}_keras")
        assert spec.url == f"{resnet.BASE_WEIGHTS_PATH}{spec.filename}"
        assert spec.filename == f"resnet{depth}_weights_tf_dim_ordering_tf_kernels.h5"
        assert spec.md5 == resnet.WEIGHTS_HASHES[f"resnet{depth}"][0]  # include_top=True's file
    for name, module in (
        ("vgg16_keras", vgg16),
        ("vgg19_keras", vgg19),
        ("inception_v3_keras", inception_v3),
        ("xception", xception),
    ):
        spec = get_spec(name)
        assert spec.url == module.WEIGHTS_PATH
        # Keras passes these digests inline to get_file, right after the URL constant.
        pattern = rf'\bWEIGHTS_PATH,\s*cache_subdir="models",\s*file_hash="{spec.md5}"'
        assert re.search(pattern, inspect.getsource(module)), name
    assert get_spec("mobilenet_v1").url == mobilenet.BASE_WEIGHT_PATH + "mobilenet_1_0_224_tf.h5"
    assert get_spec("mobilenet_v2_keras").url == (
        mobilenet_v2.BASE_WEIGHT_PATH + "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    )
    for name, module in (("mobilenet_v1", mobilenet), ("mobilenet_v2_keras", mobilenet_v2)):
        # Keras publishes no digest for these files, so none is checked.
        assert "file_hash" not in inspect.getsource(module) and get_spec(name).md5 is None
    for name in CAFFE + TF:
        spec = get_spec(name)
        assert spec.arch == name and spec.arch in models.list_models() and spec.sha256 is None
        assert spec.keras_mode == ("caffe" if name in CAFFE else "tf")
        assert spec.md5 is None or len(spec.md5) == 32
        big = name in ("inception_v3_keras", "xception")
        assert (spec.preprocessing.crop, spec.preprocessing.resize) == (
            (299, 342) if big else (224, 256)
        )
    tops = [get_spec(n).top1 for n in ("resnet50_keras", "vgg16_keras") + tuple(TF)]
    assert tops == [74.9, 71.3, 70.4, 71.3, 77.9, 79.0]  # the keras.io table


@pytest.mark.parametrize(
    "mode, keras_module", [("caffe", "vgg16"), ("tf", "mobilenet_v2"), ("torch", "densenet")]
)
def test_preprocessing_modes_are_keras_preprocess_input(mode, keras_module):
    """tljax's Preprocessing on RGB == Keras' preprocess_input; for 'caffe' up to the BGR order, which
    the port folds into the first conv (`bgr_to_rgb`, checked in test_keras_readers)."""
    import importlib

    preprocess_input = importlib.import_module(
        f"keras.src.applications.{keras_module}"
    ).preprocess_input
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    ours = keras_preprocessing(mode).normalize(rgb)
    theirs = np.asarray(preprocess_input(rgb.copy()))
    if mode == "caffe":
        ours = ours[..., ::-1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)


def _no_network(*args, **kwargs):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


def test_offline_message_names_the_keras_url_and_the_cache_path(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    spec = get_spec("vgg16_keras")
    with pytest.raises(WeightsUnavailableError) as error:
        resolve("vgg16_keras")
    message = str(error.value)
    assert (
        spec.url in message and str(tmp_path / "tljax_cache" / "weights" / spec.filename) in message
    )


def test_md5_is_checked_in_the_tljax_and_keras_caches(monkeypatch, tmp_path):
    payload = b"not really resnet50 weights"
    spec = get_spec("resnet50_keras")
    cached = (
        tmp_path / "keras_home" / "models" / spec.filename
    )  # where keras.utils.get_file puts it
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload)
    with pytest.raises(ChecksumError, match=f"md5 .* is not the published {spec.md5}"):
        resolve("resnet50_keras", download=False)
    good = registry.WeightSpec(**{**spec.__dict__, "md5": hashlib.md5(payload).hexdigest()})
    monkeypatch.setitem(registry._REGISTRY, "resnet50_keras", good)
    assert resolve("resnet50_keras", download=False) == cached  # Keras' cache, reused read-only


def test_download_checks_the_md5(monkeypatch, tmp_path):
    class Response:
        headers = {"Content-Length": "3"}

        def __init__(self):
            self.chunks = [b"abc", b""]

        def read(self, _size):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    target = tmp_path / "x.h5"
    with pytest.raises(ChecksumError, match="md5"):
        store.download_file("http://example/x.h5", target, md5="0" * 32, progress=False)
    assert not target.exists()
    store.download_file(
        "http://example/x.h5", target, md5=hashlib.md5(b"abc").hexdigest(), progress=False
    )
    assert target.read_bytes() == b"abc"
