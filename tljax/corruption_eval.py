"""Robustness evaluation of a trained network: the corruption suite, with and without transductive
adaptation (AdaBN, TENT). The command line is `tljax.robustness` (a thin main over this module, kept
apart so that importing the library defines no absl flags):

    python -m tljax.robustness --workdir=RUN [--test_per_class=100] [--adapt=none,adabn,tent]

reads a finished tljax run (`run:RUN` final variables, its own data config), corrupts its test images
(`tljax.data.corruptions`, every corruption × severity 1–5, seeded), and writes `RUN/robustness.json`
(atomic): for each adaptation the clean accuracy and `accuracies[corruption][severity]`. Adaptation is
reset for every (corruption, severity) set, as in the TENT paper's protocol, and sees the test images
only: labels are read after the predictions, for scoring. It adapts the BN layers whose statistics the
run estimated on its own training data (`trained_bn_layers`, see `tljax.adapt`): all of them for
`scratch`, the top ones for `finetune_top`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tljax import adapt
from tljax.data import corruptions
from tljax.data import preprocess as preprocess_lib
from tljax.optim import bn_module_paths
from tljax.typing import Config, PyTree

ADAPTATIONS = ("none", "adabn", "tent")


def _batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    # Equal batch sizes (AdaBN averages per-batch statistics; TENT compiles once): the tail is dropped
    # from adaptation *and* scoring, so every method is scored on the same images.
    count = len(images) // batch_size
    if count == 0:
        raise ValueError(f"need at least batch_size={batch_size} test images, got {len(images)}")
    return [images[i * batch_size : (i + 1) * batch_size] for i in range(count)]


@functools.lru_cache(maxsize=8)
def eval_forward(model: nn.Module) -> Any:
    """The jitted `(variables, images) -> predicted classes` in inference mode, one per model (cached: a
    new one would compile again for every run scored in the same process)."""
    return jax.jit(lambda v, x: jnp.argmax(jnp.asarray(model.apply(v, x, train=False)), -1))


def predict(
    model: nn.Module,
    variables: PyTree,
    pixels: np.ndarray,
    preprocessing: Any,
    adaptation: str,
    *,
    batch_size: int = 100,
    tent_steps: int = 1,
    forward: Any = None,
    adapt_layers: Sequence[str] | None = None,
) -> np.ndarray:
    """Predicted classes `int [N']` for RGB `pixels` 0..255 `[N, H, W, 3]` (N' = N rounded down to a
    multiple of `batch_size`) after `adaptation` ∈ {none, adabn, tent} of the BN layers `adapt_layers`
    (default: all) on these pixels (no labels)."""
    if adaptation not in ADAPTATIONS:
        raise ValueError(f"unknown adaptation {adaptation!r}; known: {', '.join(ADAPTATIONS)}")
    batches = [
        jnp.asarray(preprocess_lib.normalize(b, preprocessing))
        for b in _batches(pixels, batch_size)
    ]
    if adaptation == "tent":
        logits, _ = adapt.tent(model, variables, batches, steps=tent_steps, layers=adapt_layers)
        return np.concatenate([np.asarray(jnp.argmax(x, -1)) for x in logits])
    if adaptation == "adabn":
        variables = adapt.adabn(model, variables, batches, layers=adapt_layers)
    forward = forward or eval_forward(model)
    return np.concatenate([np.asarray(forward(variables, b)) for b in batches])


def evaluate_robustness(
    model: nn.Module,
    variables: PyTree,
    pixels: np.ndarray,
    labels: np.ndarray,
    preprocessing: Any,
    *,
    adaptations: Sequence[str] = ADAPTATIONS,
    names: Sequence[str] = tuple(corruptions.CORRUPTIONS),
    severities: Sequence[int] = corruptions.SEVERITIES,
    seed: int = 0,
    batch_size: int = 100,
    tent_steps: int = 1,
    adapt_layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Clean and corrupted accuracy of `model` on `pixels` (RGB 0..255 `[N, H, W, 3]`, the network's
    input size) for each adaptation of the BN layers `adapt_layers` (default: all):
    `{adaptation: {"clean_accuracy", "accuracies": {name: {s: acc}}, "corruption_accuracy"}}` plus
    `"examples"` and `"adapted_bn_layers"`. The same corrupted images serve every adaptation."""
    n = (len(pixels) // batch_size) * batch_size
    truth = np.asarray(labels)[:n]
    forward = eval_forward(model)

    def accuracy(images: np.ndarray, adaptation: str) -> float:
        predicted = predict(
            model,
            variables,
            images,
            preprocessing,
            adaptation,
            batch_size=batch_size,
            tent_steps=tent_steps,
            forward=forward,
            adapt_layers=adapt_layers,
        )
        return float(np.mean(predicted == truth))

    corrupted = {
        (name, s): corruptions.corrupt(pixels[:n], name, s, seed=seed)
        for name in names
        for s in severities
    }
    every = bn_module_paths(variables["batch_stats"])
    adapted = len(every) if adapt_layers is None else len(adapt_layers)
    results: dict[str, Any] = {"examples": int(n), "adapted_bn_layers": f"{adapted}/{len(every)}"}
    for adaptation in adaptations:
        accuracies: dict[str, dict[int, float]] = {name: {} for name in names}
        for (name, s), images in corrupted.items():
            accuracies[name][s] = accuracy(images, adaptation)
        clean = accuracy(pixels[:n], adaptation)
        results[adaptation] = {
            **corruptions.corruption_report(clean, accuracies),
            "accuracies": {k: {str(s): v for s, v in a.items()} for k, a in accuracies.items()},
        }
    return results


def trained_bn_layers(config: Config, model: nn.Module, variables: PyTree) -> tuple[str, ...]:
    """The BN layers whose running statistics the run `config` estimated on its training data: those its
    BN policy (`config.bn.rules`, default: follow the parameter groups) updated, in tree order. For
    `scratch` that is every layer; for `finetune_top` the trained top, not the frozen backbone whose
    statistics are still the pretraining data's."""
    from tljax.train import setup

    decisions = setup.build_groups(config, model, variables).bn_decisions
    return tuple(path for path, decision in decisions.items() if decision == "update")


def split_pixels(config: Config, split: str = "test") -> tuple[np.ndarray, np.ndarray, Any]:
    """The `split` ("train" or "test") of a run's data config as RGB 0..255 `[N, S, S, 3]` (centre crops
    at the network's input size, no augmentation, index order), its labels, and the preprocessing it
    is normalised with."""
    from tljax.train import setup

    if split not in ("train", "test"):
        raise ValueError(f"split {split!r}: use 'train' or 'test'")
    datasets = setup.build_data(config)
    dataset = datasets.test if split == "test" else datasets.train
    if dataset is None:
        raise ValueError(f"the run's data config has no {split} split")
    preprocessing = setup.resolve_preprocessing(config)
    images, labels = [], []
    for batch in dataset.iterator(int(config.train.eval_batch_size), augment=False, epochs=1):
        images.append(preprocess_lib.denormalize(batch["image"], preprocessing))
        labels.append(batch["label"])
    pixels = np.clip(np.round(np.concatenate(images)), 0, 255)
    return pixels, np.concatenate(labels), preprocessing


def test_pixels(config: Config) -> tuple[np.ndarray, np.ndarray, Any]:
    """`split_pixels(config, "test")`: the test images the corruption suite corrupts."""
    return split_pixels(config, "test")


def evaluate_run(
    workdir: str | Path,
    *,
    test_per_class: int | None = None,
    adaptations: Sequence[str] = ADAPTATIONS,
    names: Sequence[str] = tuple(corruptions.CORRUPTIONS),
    severities: Sequence[int] = corruptions.SEVERITIES,
    seed: int = 0,
    batch_size: int = 100,
    adapt_layers: str = "trained",
) -> dict[str, Any]:
    """`evaluate_robustness` of a finished run's final variables on its own test split (the first
    `test_per_class` images per class of its seeded subset when given), adapting its `trained_bn_layers`
    (`adapt_layers="trained"`) or every BN layer (`"all"`). What `python -m tljax.robustness` runs."""
    from tljax import models
    from tljax.weights import runs

    if adapt_layers not in ("trained", "all"):
        raise ValueError(f"adapt_layers {adapt_layers!r}: use 'trained' or 'all'")
    source = f"run:{workdir}"
    meta = runs.run_meta(source)
    config = recorded_config(runs.run_config(source))
    if test_per_class is not None:
        config.data.test_per_class = int(test_per_class)
    model = models.get(meta["model"], num_classes=int(meta["num_classes"]))
    variables = runs.load_run(source, model)
    pixels, labels, preprocessing = test_pixels(config)
    layers = trained_bn_layers(config, model, variables) if adapt_layers == "trained" else None
    return evaluate_robustness(
        model,
        variables,
        pixels,
        labels,
        preprocessing,
        adaptations=adaptations,
        names=names,
        severities=severities,
        seed=seed,
        batch_size=batch_size,
        adapt_layers=layers,
    )


def recorded_config(record: dict[str, Any]) -> Any:
    """tljax's default config with the values a run recorded (`config.json`) put back, JSON lists as the
    tuples the config holds; keys this tljax does not know are ignored (a newer run's extras)."""
    from tljax.train.defaults import default_config

    config = default_config()

    def put(node: Any, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in node:
                continue
            if isinstance(value, dict) and hasattr(node[key], "keys"):
                put(node[key], value)
            else:
                with node.ignore_type():
                    node[key] = tuple(value) if isinstance(value, list) else value

    with config.unlocked():
        put(config, record)
    return config
