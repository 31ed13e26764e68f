"""Top-5 ImageNet predictions for images: `python -m tljax.predict --model=efficientnet_lite0 cat.jpg …`.

Applies the weights' own preprocessing (resize, centre crop, mean/std). Directories are expanded to the
images inside. Unreadable files are reported and skipped; the others are still classified.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

from tljax import models, weights
from tljax.data.images import has_image_extension, is_hidden
from tljax.data.preprocess import load_eval_image
from tljax.weights.labels import imagenet_class_names

_MODEL = flags.DEFINE_string(
    "model", "efficientnet_lite0", "Architecture (tljax.models.list_models())."
)
_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "Registered weights name, .pth/.safetensors file or converted directory. "
    "Default: the first registered weights of --model.",
)
_TOP_K = flags.DEFINE_integer("top_k", 5, "How many classes to print per image.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per forward pass.")


def default_weights(arch: str) -> str:
    """The first registered weights for architecture `arch`."""
    for name in weights.list_weights():
        if weights.get_spec(name).arch == arch:
            return name
    raise ValueError(f"no registered weights for {arch!r}; pass --weights=PATH")


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; directories replaced by their (non-hidden) image files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f
                for f in p.iterdir()
                if f.is_file() and not is_hidden(f.name) and has_image_extension(f.name)
            )
        else:
            out.append(p)
    return out


@functools.cache
def _forward(model):
    """One jitted forward per model: a fresh `jax.jit(model.apply)` per batch would re-trace each time."""
    return jax.jit(model.apply)


def predict(model, variables, images: np.ndarray, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(indices [B, k], probabilities [B, k]) of the top-k classes for normalised images [B, H, W, 3]."""
    logits = _forward(model)(variables, images)
    probs = np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))
    top = np.argsort(-probs, axis=-1)[:, :top_k]
    return top, np.take_along_axis(probs, top, axis=-1)


def main(argv: Sequence[str]) -> int:
    paths = expand_paths(argv[1:])
    if not paths:
        raise app.UsageError(
            "give one or more image files or folders: python -m tljax.predict IMG…"
        )
    weights_name = _WEIGHTS.value or default_weights(_MODEL.value)
    try:
        preprocessing = weights.get_spec(weights_name).preprocessing
    except weights.UnknownWeightsError:
        preprocessing = weights.get_spec(default_weights(_MODEL.value)).preprocessing
    model = models.get(_MODEL.value)
    variables = weights.load(weights_name, model)
    names = imagenet_class_names()

    good: list[tuple[Path, np.ndarray]] = []
    failed = 0
    for path in paths:
        try:
            good.append((path, load_eval_image(path, preprocessing)))
        except (OSError, ValueError) as err:
            failed += 1
            logging.warning("skipping %s: %s", path, err)
            print(f"{path}: cannot read ({err}); skipped", file=sys.stderr)
    for start in range(0, len(good), _BATCH.value):
        chunk = good[start : start + _BATCH.value]
        top, probs = predict(model, variables, np.stack([x for _, x in chunk]), _TOP_K.value)
        for (path, _), indices, p in zip(chunk, top, probs):
            print(f"{path}")
            for i, prob in zip(indices, p):
                print(f"  {prob:7.2%}  {names[i]} ({i})")
    if failed:
        print(f"{failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed == len(paths) else 0


if __name__ == "__main__":
    app.run(main)
