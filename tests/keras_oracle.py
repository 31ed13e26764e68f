"""Keras 3 reference models for the Keras parity tests, built once and cached on disk (test oracle only).

`keras_reference(name, builder, inputs, taps)` builds `builder()` (Keras' JAX backend, seeded, random BN
statistics and biases), saves it in every Keras layout tljax reads, and records the outputs of the
named Keras layers on `inputs`. Building a Keras Applications model takes 10–50 s on a small CPU, so the
result lives in a cache directory keyed by the Keras version, the model name and a digest of what was
asked (inputs, taps, this file's ORACLE_VERSION): later tests, reruns and the other xdist workers reuse
it. A lock makes concurrent workers wait for one build; the directory appears atomically (renamed into
place when complete), so an interrupted build leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported anywhere

ORACLE_VERSION = 2  # bump when what is saved or how the model is randomised changes

# The files a reference holds: (file name, how tljax names the layout).
FORMATS = {
    "model.h5": "h5_model",  # legacy whole model: model.save("x.h5")
    "weights.h5": "h5_weights",  # legacy weights only: the layout of the published ImageNet files
    "model.weights.h5": "weights_h5",  # Keras 3 save_weights: positional keys
    "model.keras": "keras",  # Keras 3 archive: config.json + model.weights.h5
}


@dataclass(frozen=True)
class KerasReference:
    """A cached Keras reference: its directory, the saved files by layout, the inputs and the outputs
    (`outputs[tap]`, plus `outputs['__model_output__']`: the model's own output, e.g. softmax)."""

    directory: Path
    files: dict[str, Path]
    inputs: np.ndarray
    outputs: dict[str, np.ndarray]
    seconds: float  # what the build cost (0.0 when it came from the cache)


def cache_root() -> Path:
    """`$TLJAX_KERAS_ORACLE_CACHE`, else a per-user folder in the system temp dir."""
    env = os.environ.get("TLJAX_KERAS_ORACLE_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"tljax-test-keras-{os.getuid()}"


def randomize(model, seed: int) -> None:
    """Gives every weight a seeded random value: kernels Glorot-uniform (Keras' default), BN gamma /
    beta / moving statistics and biases non-trivial, so that a port which ignored or swapped any of
    them fails (Keras initialises BN and biases to 1/0)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape, leaf = tuple(weight.shape), weight.path.split("/")[-1]
            if isinstance(layer, keras.layers.BatchNormalization):
                value = {
                    "gamma": 0.5 + rng.random(shape),
                    "beta": 0.2 * rng.standard_normal(shape),
                    "moving_mean": 0.2 * rng.standard_normal(shape),
                    "moving_variance": 0.5 + rng.random(shape),
                }[leaf]
            elif leaf == "bias":
                value = 0.05 * rng.standard_normal(shape)
            else:  # kernels: [kh, kw, in, out] or [in, out]
                receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
                fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                value = rng.uniform(-limit, limit, shape)
            values.append(value.astype(np.float32))
        if values:
            layer.set_weights(values)


@contextlib.contextmanager
def _zero_initializers():
    """Keras' variance-scaling initialisers (every conv/dense default) return zeros while a model is
    built: drawing values that `randomize` overwrites compiles one JAX kernel per weight shape, 9 of
    the 10 CPU seconds of building ResNet50."""
    import jax.numpy as jnp
    from keras.src.initializers import random_initializers

    original = random_initializers.VarianceScaling.__call__
    random_initializers.VarianceScaling.__call__ = lambda self, shape, dtype=None: jnp.zeros(
        shape, dtype or "float32"
    )
    try:
        yield
    finally:
        random_initializers.VarianceScaling.__call__ = original


def _build(
    directory: Path,
    builder: Callable[[], object],
    inputs: np.ndarray,
    taps: Mapping[str, str],
    logits_layer: str | None,
    seed: int,
    formats: tuple[str, ...],
) -> None:
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.backend.clear_session()  # reproducible layer names
    keras.utils.set_random_seed(seed)
    with _zero_initializers():
        model = builder()
    randomize(model, seed + 1)
    if "h5_model" in formats:
        model.save(directory / "model.h5")
    if "h5_weights" in formats:
        with h5py.File(directory / "weights.h5", "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    if "weights_h5" in formats:
        model.save_weights(directory / "model.weights.h5")
    if "keras" in formats:
        model.save(directory / "model.keras")
    outputs = {"__model_output__": np.asarray(model.predict(inputs, verbose=0))}
    if logits_layer is not None:
        # The classifier's pre-activation (Keras' default softmax removed): what tljax ports.
        model.get_layer(logits_layer).activation = keras.activations.linear
    probe = keras.Model(model.inputs, [model.get_layer(layer).output for layer in taps.values()])
    values = probe.predict(inputs, verbose=0, batch_size=len(inputs))
    outputs.update({tap: np.asarray(v) for tap, v in zip(taps, values)})
    np.savez(directory / "reference.npz", inputs=inputs, **outputs)


def keras_reference(
    name: str,
    builder: Callable[[], object],
    inputs: np.ndarray,
    taps: Mapping[str, str],
    *,
    logits_layer: str | None = None,
    seed: int = 0,
    formats: tuple[str, ...] = tuple(FORMATS.values()),
) -> KerasReference:
    """The cached reference for `name` (built by `builder()` on a miss; see the module docstring).

    `name` identifies one reference: building it for other inputs or taps replaces the cached one.

    `taps` maps tljax tap names to Keras layer names whose outputs are recorded on `inputs` (NHWC
    float32). `logits_layer`: a layer whose activation is replaced by the identity before the taps
    are recorded, so the tap mapped to it is the logits of a softmax classifier. `formats`: the layouts
    to save (`FORMATS`' values; fewer for the largest models, whose files are ~0.5 GB each).
    """
    import time

    import keras

    digest = hashlib.sha256(
        json.dumps([ORACLE_VERSION, dict(taps), logits_layer, seed, inputs.shape, formats]).encode()
        + np.ascontiguousarray(inputs, np.float32).tobytes()
    ).hexdigest()[:16]
    root = cache_root() / f"keras-{keras.__version__}"
    directory = root / f"{name}-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build; other workers wait for it and then read it
        if not (directory / "reference.npz").is_file():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
            try:
                start = time.perf_counter()
                inputs = np.asarray(inputs, np.float32)
                _build(staging, builder, inputs, taps, logits_layer, seed, tuple(formats))
                seconds = time.perf_counter() - start
                shutil.rmtree(directory, ignore_errors=True)
                os.rename(staging, directory)
                # Older references of this name (another digest: the oracle or the inputs changed)
                # are stale; VGG16's hold 1.6 GB.
                for stale in root.glob(f"{name}-*"):
                    if stale != directory and re.fullmatch(
                        rf"{re.escape(name)}-[0-9a-f]{{16}}", stale.name
                    ):
                        shutil.rmtree(stale, ignore_errors=True)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    with np.load(directory / "reference.npz") as data:
        arrays = {k: data[k] for k in data.files}
    files = {layout: directory / name for name, layout in FORMATS.items() if layout in formats}
    return KerasReference(directory, files, arrays.pop("inputs"), arrays, seconds)
