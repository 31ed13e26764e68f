"""The objective over taps: what every image-optimisation tool differentiates.

`make_taps_fn` builds a jit-able `taps_fn(image) -> {tap name: activation}` from a model, its variables
and tap names. The image is in 0..255 RGB pixel units and the weights' preprocessing
(`tljax.data.preprocess.normalize`) is applied inside, so every tool optimises in the same space and
learning rates / clipping mean the same thing. Tap specs may name one channel (`"blocks.10:37"`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tljax.data.preprocess import MeanStd, denormalize, normalize
from tljax.typing import PyTree

Array = jax.Array
ArrayLike = jax.Array | np.ndarray

__all__ = [
    "MeanStd",
    "TapSpec",
    "TapsFn",
    "check_taps",
    "deprocess",
    "make_taps_fn",
    "num_positions",
    "parse_tap_spec",
    "preprocess",
]


def preprocess(image: ArrayLike, preprocessing: MeanStd | None) -> Any:
    """0..255 RGB pixels → the network's input space (`tljax.data.preprocess.normalize`), `[..., 3]`."""
    return image if preprocessing is None else normalize(image, preprocessing)


def deprocess(x: ArrayLike, preprocessing: MeanStd | None) -> Any:
    """Inverse of `preprocess` (`tljax.data.preprocess.denormalize`): → 0..255 pixels, not clipped."""
    return x if preprocessing is None else denormalize(x, preprocessing)


# ----------------------------------------------------------------------------------------------------
# Taps


@dataclasses.dataclass(frozen=True)
class TapSpec:
    """A tap, optionally narrowed to one channel: `"blocks.10"` or `"blocks.10:37"`."""

    tap: str
    channel: int | None = None

    def __str__(self) -> str:
        return self.tap if self.channel is None else f"{self.tap}:{self.channel}"


def parse_tap_spec(spec: str) -> TapSpec:
    """Parses `"tap"` or `"tap:channel"` (tap names contain dots, never colons)."""
    tap, sep, channel = spec.strip().partition(":")
    if not tap:
        raise ValueError(f"empty tap name in {spec!r}; expected 'tap' or 'tap:channel'")
    if not sep:
        return TapSpec(tap)
    try:
        index = int(channel)
    except ValueError:
        raise ValueError(f"bad channel in {spec!r}: expected 'tap:INTEGER'") from None
    if index < 0:
        raise ValueError(f"bad channel in {spec!r}: channels are counted from 0")
    return TapSpec(tap, index)


def check_taps(model: nn.Module, taps: Sequence[str]) -> None:
    """Raises the model's own `ValueError` (listing the valid names) for unknown taps, before any trace.

    Models following the tljax contract raise this themselves at trace time; checking eagerly means the
    error appears at set-up rather than deep inside a jit trace, where it is easy to misread.
    """
    if not hasattr(model, "tap_names"):
        return  # the model will raise when traced
    valid = tuple(model.tap_names())
    unknown = [t for t in taps if t not in valid]
    if unknown:
        raise ValueError(
            f"unknown tap name(s) {unknown} for {type(model).__name__}; valid taps are: "
            f"{', '.join(valid)} (list them with tljax.models.tap_names(model))"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class TapsFn:
    """`taps_fn(image) -> {tap: [B, h, w, C]}` for a fixed model, tap set and preprocessing.

    `image` is `[H, W, 3]` or `[B, H, W, 3]` in 0..255 RGB pixels. Call as `taps_fn(image)` to use the
    bound `variables`, or `taps_fn(image, variables)` inside jit so the weights are an argument rather
    than constants baked into the compiled program (VGG19's 80 MB would otherwise be copied into every
    executable and slow compilation down).
    """

    model: nn.Module
    variables: PyTree
    taps: tuple[str, ...]
    preprocessing: MeanStd | None = None

    def __call__(self, image: Array, variables: PyTree | None = None) -> dict[str, Array]:
        x = image if image.ndim == 4 else image[None]
        x = preprocess(x.astype(jnp.float32), self.preprocessing)
        variables = self.variables if variables is None else variables
        acts: Any = self.model.apply(variables, x, train=False, taps=self.taps)
        return dict(acts)


def make_taps_fn(
    model: nn.Module,
    variables: PyTree,
    taps: Sequence[str],
    *,
    preprocessing: MeanStd | None = None,
) -> TapsFn:
    """Builds the jit-able `taps_fn` of `model` for `taps`, validating the names first.

    `taps` may be plain names or `"tap:channel"` specs; the channel part is dropped here (the caller
    selects channels) and duplicates are merged, so one forward pass serves every objective term.
    """
    names = tuple(dict.fromkeys(parse_tap_spec(t).tap for t in taps))
    if not names:
        raise ValueError("no taps requested")
    check_taps(model, names)
    return TapsFn(model, variables, names, preprocessing)


def num_positions(shape: Sequence[int]) -> int:
    """Spatial positions of an activation `[B, h, w, C]` (or `[B, C]` → 1), for mean normalisations."""
    return int(math.prod(shape[1:-1])) if len(shape) > 2 else 1
