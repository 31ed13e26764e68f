"""Linear probe: features from several taps concatenated, cached and reused, a linear classifier on top."""

from __future__ import annotations

import fixtures
import numpy as np
import pytest
import tiny_model

from tljax.train import linear_probe, train_and_evaluate


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(tmp_path_factory.mktemp("data"))


def _probe_config(data_root, classifier="logistic"):
    tiny_model.register()
    config = fixtures.tiny_config(data_root, recipe="linear_probe")
    with config.unlocked():
        config.probe.taps = ("stem", "pool")  # an [B, 8, 8, 8] map (pooled) + the [B, 16] pool
        config.probe.classifier = classifier
        config.probe.batch_size = 16
    return config


def test_probe_caches_features_and_beats_chance(data_root, tmp_path, monkeypatch):
    config = _probe_config(data_root)
    results = train_and_evaluate(config, tmp_path)
    assert results["feature_dim"] == 8 + 16
    assert (
        results["train_examples"] == 40
        and results["val_examples"] == 8
        and results["test_examples"] == 24
    )
    # Random conv features of colour-cast images are linearly separable enough to beat 25% chance clearly.
    assert results["test_accuracy"] >= 0.6
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "features").glob("*.npz"))
    assert cached == ["test", "train", "val"]

    # The cached features are exactly what a fresh extraction gives, and a second run reads them only.
    with np.load(next((tmp_path / "features").glob("test-*.npz"))) as stored:
        stored_features = stored["features"]
    calls = []
    original = linear_probe.extract_features
    monkeypatch.setattr(
        linear_probe, "extract_features", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    again = train_and_evaluate(config, tmp_path)
    assert calls == [] and again["test_accuracy"] == results["test_accuracy"]

    from tljax.train import setup

    datasets = setup.build_data(config)
    model = setup.build_model(config, datasets.num_classes)
    variables = setup.init_variables(config, model, 16)
    fresh, labels = original(model, variables, datasets.test, ("stem", "pool"), 16)
    np.testing.assert_array_equal(fresh, stored_features)
    np.testing.assert_array_equal(labels, datasets.test.labels)


def test_optax_head_matches_sklearn_closely(data_root, tmp_path):
    sk = train_and_evaluate(_probe_config(data_root, "logistic"), tmp_path / "sk")
    ox = train_and_evaluate(_probe_config(data_root, "optax"), tmp_path / "optax")
    assert abs(sk["test_accuracy"] - ox["test_accuracy"]) <= 2 / 24  # same objective, two solvers


def test_several_resolutions_are_concatenated(data_root, tmp_path):
    config = _probe_config(data_root)
    with config.unlocked():
        config.probe.taps = ("pool",)
        config.probe.resolutions = (16, 24)
    results = train_and_evaluate(config, tmp_path)
    assert results["feature_dim"] == 2 * 16 and results["resolutions"] == [16, 24]
    assert (
        len(list((tmp_path / "features").glob("test-*.npz"))) == 2
    )  # one cache entry per resolution
