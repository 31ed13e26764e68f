"""End-of-run figures: the learning curve (train vs validation) and the confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tljax import fileio


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """`int64 [num_classes, num_classes]`, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def plot_learning_curve(
    history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = ""
) -> None:
    """Loss and accuracy vs step for the train records and the validation records of `metrics.jsonl`.

    A validation curve that turns up while training loss keeps falling is the overfitting picture of
    the seed lectures.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    # The final test score is one point: a star at the last step.
    for split, style in (("train", "-"), ("val", "o-"), ("test", "*")):
        records = [r for r in history if r.get("split") == split]
        if not records:
            continue
        steps = [r["step"] for r in records]
        size = 12 if split == "test" else 5
        axes[0].plot(
            steps, [r.get("loss", np.nan) for r in records], style, label=split, markersize=size
        )
        axes[1].plot(
            steps,
            [100 * r.get("accuracy", np.nan) for r in records],
            style,
            label=split,
            markersize=size,
        )
    for axis, name in zip(axes, ("loss", "accuracy (%)"), strict=True):
        axis.set_xlabel("step")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title or "learning curve")
    figure.tight_layout()
    with fileio.atomic_path(path) as temporary:  # a killed run never leaves half a PNG
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Row-normalised confusion matrix with counts, class names on both axes."""
    plt = _pyplot()
    n = len(class_names)
    size = max(5.0, 0.6 * n + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.maximum(rows, 1)
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(n), class_names, rotation=45, ha="right")
    axis.set_yticks(range(n), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                axis.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(f"{title} accuracy {100 * accuracy:.2f}%".strip())
    figure.tight_layout()
    with fileio.atomic_path(path) as temporary:  # a killed run never leaves half a PNG
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
