"""Linear probe ("CNN features off-the-shelf", Razavian et al. 2014): frozen features + a linear classifier.

Features are extracted once per split from any taps of the pretrained network — spatial maps are
globally average-pooled to `[B, C]`, several taps are concatenated, and several input resolutions may be
concatenated too — and cached as `.npz` files keyed by everything they depend on (model, weights, taps,
resolution, preprocessing and the exact examples of the split). A scikit-learn LogisticRegression or
LinearSVC, or an optax-trained softmax layer, is then fitted on the training features and scored like the
other recipes (validation and test accuracy, confusion matrix, metrics.jsonl, results.json).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from tljax import fileio, parallel
from tljax.train import plots, setup
from tljax.train import workdir as workdir_lib
from tljax.train.writers import MetricWriter, NullWriter
from tljax.typing import Config


def _pool(x: jax.Array) -> jax.Array:
    """`[B, H, W, C]` → `[B, C]` by global average; `[B, C]` unchanged."""
    x = x.astype(jnp.float32)
    return x.mean(axis=(1, 2)) if x.ndim == 4 else x.reshape(x.shape[0], -1)


def _split_key(config: Config, split, taps: tuple[str, ...]) -> str:
    """Cache key: what the features of this split depend on, and nothing else (not the few-shot N of
    another split), so e.g. the 10,000 test features are shared by the 10- and 100-shot probes."""
    content = {
        "model": config.model.name,
        "dtype": config.model.dtype,
        "weights": setup.file_identity(config.weights.name),
        "taps": list(taps),
        "geometry": [split.geometry.resize, split.geometry.crop, split.geometry.interpolation],
        "normalizer": [
            np.asarray(getattr(split.normalizer, a, 0.0)).tolist() for a in ("scale", "offset")
        ],
        "source": [config.data.source, config.data.root, config.data.name, split.name],
        "examples": hashlib.sha256(
            np.asarray(split.indices).tobytes() + np.asarray(split.labels).tobytes()
        ).hexdigest(),
        "num_examples": split.num_examples,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def extract_features(
    model,
    variables,
    split,
    taps: tuple[str, ...],
    batch_size: int,
    placement: parallel.Placement | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, D], labels int32 [N]) of a split, unaugmented, in index order.

    Runs sharded over the mesh of `placement` (default: all devices on `data`; each process reads its
    rows of every batch). Batches are padded to `batch_size` (rounded up to a multiple of the devices)
    so the feature function compiles once; padding and undecodable images are dropped by their mask.
    """
    placement = placement or parallel.Placement.from_config({})

    @functools.partial(jax.jit, out_shardings=placement.batch)
    def features(variables, images):
        outputs = model.apply(variables, images, train=False, taps=taps)
        return jnp.concatenate([_pool(outputs[t]) for t in taps], axis=-1)

    variables = placement.put(variables)
    batch_size = placement.eval_batch(min(batch_size, split.num_examples))
    chunks = []
    for local in split.iterator(
        batch_size // placement.process_count,
        shuffle=False,
        epochs=1,
        drop_remainder=False,
        augment=False,
        process_index=placement.process_index,
        process_count=placement.process_count,
        pad_remainder=True,
    ):
        batch = parallel.global_batch(local, placement.batch)
        chunks.append((features(variables, batch["image"]), batch["label"], batch["mask"]))
    fetched = parallel.fetch(chunks)
    keep = np.concatenate([m for _, _, m in fetched]) > 0
    return (
        np.concatenate([f for f, _, _ in fetched])[keep].astype(np.float32),
        np.concatenate([label for _, label, _ in fetched])[keep].astype(np.int32),
    )


def cached_features(
    config, model, variables, split, taps, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """`extract_features`, read from / written to `cache_dir/<split>-<key>.npz`."""
    path = cache_dir / f"{split.name}-{_split_key(config, split, taps)}.npz"
    if path.exists():
        with np.load(path) as cached:
            logging.info("features of %s from cache %s", split.name, path)
            return cached["features"], cached["labels"]
    started = time.perf_counter()
    features, labels = extract_features(
        model,
        variables,
        split,
        taps,
        config.probe.batch_size,
        parallel.Placement.from_config(config),
    )
    seconds = time.perf_counter() - started
    logging.info(
        "extracted %s features %s in %.1f s (%.1f img/s)",
        split.name,
        features.shape,
        seconds,
        len(labels) / max(seconds, 1e-9),
    )
    if parallel.is_main_process():  # every process holds all the features; one writes them
        cache_dir.mkdir(parents=True, exist_ok=True)
        # A unique temporary name, then a rename: a killed run never leaves a truncated cache file,
        # and two probes sharing a cache directory never write into each other's temporary file.
        with fileio.atomic_path(path) as temporary:
            np.savez(temporary, features=features, labels=labels)
    return features, labels


class _Classifier:
    """A fitted linear classifier: `predict(features) -> labels`, `log_loss(features, labels)`."""

    def __init__(self, config: Config, num_classes: int):
        self.config, self.num_classes = config, num_classes
        self.mean = self.scale = None

    def _standardize(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale if self.mean is not None else features

    def fit(self, features: np.ndarray, labels: np.ndarray, seed: int) -> _Classifier:
        if self.config.standardize:
            self.mean = features.mean(0)
            self.scale = features.std(0) + 1e-6
        x = self._standardize(features)
        kind = self.config.classifier
        if kind == "logistic":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(
                C=self.config.C, max_iter=self.config.max_iter, random_state=seed
            )
            self.model.fit(x, labels)
        elif kind == "linear_svc":
            from sklearn.svm import LinearSVC

            self.model = LinearSVC(
                C=self.config.C, max_iter=self.config.max_iter, random_state=seed
            )
            self.model.fit(x, labels)
        elif kind == "optax":
            self.model = self._fit_optax(x, labels, seed)
        else:
            raise ValueError(f"probe.classifier {kind!r}: use 'logistic', 'linear_svc' or 'optax'")
        return self

    def _fit_optax(self, x: np.ndarray, labels: np.ndarray, seed: int):
        """Full-batch softmax regression with Adam and L2 = 1/(C·N), the logistic objective of sklearn."""
        dim, n = x.shape[1], len(labels)
        params = {"w": jnp.zeros((dim, self.num_classes)), "b": jnp.zeros(self.num_classes)}
        l2 = 1.0 / (self.config.C * n)
        tx = optax.adam(self.config.optax_lr)
        xs, y = jnp.asarray(x), jnp.asarray(labels)

        def loss_fn(p):
            logits = xs @ p["w"] + p["b"]
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, y
            ).mean() + 0.5 * l2 * jnp.sum(p["w"] ** 2)

        @jax.jit
        def train(params):
            def body(carry, _):
                p, s = carry
                grads = jax.grad(loss_fn)(p)
                updates, s = tx.update(grads, s, p)
                return (optax.apply_updates(p, updates), s), None

            (params, _), _ = jax.lax.scan(
                body, (params, tx.init(params)), None, length=self.config.optax_steps
            )
            return params

        del seed  # zero init: deterministic
        return jax.device_get(train(params))

    def decision(self, features: np.ndarray) -> np.ndarray:
        x = self._standardize(features)
        if isinstance(self.model, dict):
            return x @ self.model["w"] + self.model["b"]
        return self.model.decision_function(x)

    def predict(self, features: np.ndarray) -> np.ndarray:
        if isinstance(self.model, dict):
            return np.argmax(self.decision(features), -1)
        return self.model.predict(self._standardize(features))

    def log_loss(self, features: np.ndarray, labels: np.ndarray) -> float | None:
        """Cross-entropy of the predicted probabilities (None for an SVM, which has none)."""
        if isinstance(self.model, dict):
            logits = self.decision(features)
        elif hasattr(self.model, "predict_log_proba"):
            return float(
                -np.mean(
                    self.model.predict_log_proba(self._standardize(features))[
                        np.arange(len(labels)), labels
                    ]
                )
            )
        else:
            return None
        return float(
            optax.softmax_cross_entropy_with_integer_labels(
                jnp.asarray(logits), jnp.asarray(labels)
            ).mean()
        )


def run_linear_probe(config: Config, workdir: Path) -> dict[str, Any]:
    """The `linear_probe` recipe: features (cached) → linear classifier → accuracies and figures."""
    started = time.perf_counter()
    taps = tuple(config.probe.taps)
    base_size = config.data.image_size
    resolutions = tuple(config.probe.resolutions or (base_size,))
    cache_dir = Path(config.probe.cache_dir) if config.probe.cache_dir else workdir / "features"
    per_split: dict[str, list[np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    datasets = None
    for resolution in resolutions:
        resolution_config = copy.deepcopy(config)
        with resolution_config.unlocked():
            resolution_config.data.image_size = resolution
            if resolution != base_size:
                resolution_config.data.resize_size = None  # keep the weights' resize/crop ratio
        datasets = setup.build_data(resolution_config)
        model = setup.build_model(resolution_config, datasets.num_classes)
        size = setup.image_size(datasets)
        variables = setup.init_variables(resolution_config, model, size)
        for name in ("train", "val", "test"):
            split = getattr(datasets, name)
            if split is None:
                continue
            split_features, split_labels = cached_features(
                resolution_config, model, variables, split, taps, cache_dir
            )
            per_split.setdefault(name, []).append(split_features)
            if name in labels and not np.array_equal(labels[name], split_labels):
                raise RuntimeError(f"{name} examples differ between resolutions (decode failures?)")
            labels[name] = split_labels
    assert datasets is not None  # `resolutions` always holds at least the config's image size
    features = {name: np.concatenate(parts, axis=1) for name, parts in per_split.items()}
    extraction_seconds = time.perf_counter() - started
    logging.info("probe features: %s", {k: v.shape for k, v in features.items()})

    fit_started = time.perf_counter()
    classifier = _Classifier(config.probe, datasets.num_classes).fit(
        features["train"], labels["train"], config.seed
    )
    results: dict[str, Any] = {
        "recipe": "linear_probe",
        "model": config.model.name,
        "weights": config.weights.name or "random",
        "taps": list(taps),
        "resolutions": list(resolutions),
        "feature_dim": int(features["train"].shape[1]),
        "classifier": config.probe.classifier,
        "C": config.probe.C,
        "train_examples": int(len(labels["train"])),
        "train_accuracy": float(np.mean(classifier.predict(features["train"]) == labels["train"])),
    }
    main = parallel.is_main_process()  # one writer per run, whatever the number of processes
    writer = MetricWriter(workdir) if main else NullWriter()
    try:
        for name in ("val", "test"):
            if name not in features:
                continue
            predictions = classifier.predict(features[name])
            accuracy = float(np.mean(predictions == labels[name]))
            loss = classifier.log_loss(features[name], labels[name])
            results[f"{name}_accuracy"] = accuracy
            results[f"{name}_loss"] = loss
            results[f"{name}_examples"] = int(len(labels[name]))
            writer.write(
                name, 0, {"accuracy": accuracy, **({"loss": loss} if loss is not None else {})}
            )
            logging.info(
                "linear probe %s accuracy %.2f%% (%d images)",
                name,
                100 * accuracy,
                len(labels[name]),
            )
            if name == "test":
                matrix = plots.confusion_matrix(labels[name], predictions, datasets.num_classes)
                results["confusion_matrix"] = matrix.tolist()
                if main:
                    plots.plot_confusion_matrix(
                        matrix,
                        datasets.class_names,
                        workdir / "confusion_matrix.png",
                        title="linear probe test",
                    )
    finally:
        writer.close()
    results["extraction_seconds"] = extraction_seconds
    results["fit_seconds"] = time.perf_counter() - fit_started
    results["seconds"] = time.perf_counter() - started
    if main:
        return workdir_lib.write_results(workdir, results)
    return results
