"""Top-5 ImageNet predictions for images: `python -m tljax.predict --model=efficientnet_lite0 cat.jpg …`.

Applies the weights' own preprocessing (resize, centre crop, mean/std). Directories are expanded to the
images inside. A file that cannot be decoded (corrupt, truncated, a decompression bomb, not an image) is
reported on one line and skipped, the same policy as the training pipeline; the others are still
classified. Exit codes: 0 when at least one image was classified, 1 when none could be read, 2 (one
`error: ...` line) for bad flags, unknown or unreadable weights.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import flags

from tljax import cli, models, weights
from tljax.data.images import has_image_extension, is_hidden
from tljax.data.preprocess import load_eval_image
from tljax.errors import EXIT_FAILED, EXIT_OK, BadImageError, UserError
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
    raise UserError(f"no registered weights for --model={arch}; pass --weights=PATH")


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


def iter_batches(
    paths: Sequence[Path],
    preprocessing: Any,
    batch_size: int,
    on_skip: Callable[[BadImageError], None],
) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """Lists of up to `batch_size` (path, normalised `float32 [crop, crop, 3]`), decoded as they are
    needed, so memory holds one batch whatever the number of files; each file that cannot be decoded
    goes to `on_skip` and the others still come."""
    chunk: list[tuple[Path, np.ndarray]] = []
    for path in paths:
        try:
            chunk.append((path, load_eval_image(str(path), preprocessing)))
        except BadImageError as error:
            on_skip(error)
            continue
        if len(chunk) == batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _shown(path: Path) -> str:
    """`path` for printing: a name that is not valid UTF-8 (kept by Python as surrogates, which a strict
    stdout cannot encode) is shown with its odd bytes escaped, `\\xff`, instead of crashing the run."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def main(argv: Sequence[str]) -> int:
    """Prints the top-k classes of every readable image in `argv[1:]`; returns the exit code."""
    if _MODEL.value not in models.list_models():
        raise UserError(
            f"unknown --model={_MODEL.value}; known models: {', '.join(models.list_models())}"
        )
    if _TOP_K.value < 1 or _BATCH.value < 1:
        raise UserError(
            f"--top_k={_TOP_K.value} and --batch_size={_BATCH.value} must both be at least 1"
        )
    paths = expand_paths(argv[1:])
    if not paths:
        raise UserError(
            "no images given (folders given hold no image files): "
            "python -m tljax.predict IMAGE_OR_FOLDER..."
        )
    weights_name = _WEIGHTS.value or default_weights(_MODEL.value)
    try:
        spec = weights.get_spec(weights_name)
    except weights.UnknownWeightsError:
        spec = weights.get_spec(default_weights(_MODEL.value))
    preprocessing = spec.preprocessing
    model = models.get(_MODEL.value)
    # The preprocessing is RGB; a Keras 'caffe' network (also a file given by path for a Keras layout)
    # reads BGR, folded into its first conv as for the registered file.
    variables = weights.load(weights_name, model, bgr_to_rgb=spec.keras_mode == "caffe")
    names = imagenet_class_names()

    failed = 0

    def report(error: BadImageError) -> None:
        nonlocal failed
        failed += 1
        print(f"skipped: {error}", file=sys.stderr)  # the message names the file and the cause

    for chunk in iter_batches(paths, preprocessing, _BATCH.value, report):
        top, probs = predict(model, variables, np.stack([x for _, x in chunk]), _TOP_K.value)
        for (path, _), indices, p in zip(chunk, top, probs):
            print(_shown(path))
            for i, prob in zip(indices, p):
                print(f"  {prob:7.2%}  {names[i]} ({i})")
    if failed:
        print(f"{failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return EXIT_FAILED if failed == len(paths) else EXIT_OK


if __name__ == "__main__":
    cli.run(main)
