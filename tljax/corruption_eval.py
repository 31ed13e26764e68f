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

from collections.abc import Sequence
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


def eval_forward(model: nn.Module) -> Any:
    """The jitted `(variables, images) -> predicted classes` in inference mode (build it once: each new
    one compiles again)."""
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


def test_pixels(config: Config) -> tuple[np.ndarray, np.ndarray, Any]:
    """The test split of a run's data config as RGB 0..255 `[N, S, S, 3]` (centre crops at the network's
    input size, index order), its labels, and the preprocessing it is normalised with."""
    from tljax.train import setup

    datasets = setup.build_data(config)
    if datasets.test is None:
        raise ValueError("the run's data config has no test split to corrupt")
    preprocessing = setup.resolve_preprocessing(config)
    images, labels = [], []
    for batch in datasets.test.iterator(int(config.train.eval_batch_size), augment=False, epochs=1):
        images.append(preprocess_lib.denormalize(batch["image"], preprocessing))
        labels.append(batch["label"])
    pixels = np.clip(np.round(np.concatenate(images)), 0, 255)
    return pixels, np.concatenate(labels), preprocessing


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
