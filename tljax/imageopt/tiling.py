"""Tiled gradients for images too large to differentiate at once (DeepDream).

An image is cut into `tile` cores, each differentiated inside a window with `overlap` pixels of context
on every side, and only the core of each window's gradient is kept. With enough context (twice the
tap's receptive-field radius) and window starts on the tap's stride grid this is exactly the untiled
gradient. Windows are visited by a `lax.scan`, so only one window's activations are alive at a time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tljax.typing import PyTree

Array = jax.Array

__all__ = ["region_mask", "tile_windows", "tiled_value_and_grad"]


def region_mask(map_hw: tuple[int, int], image_hw: tuple[int, int], region: tuple) -> Array:
    """[h, w] mask of activation positions whose top-left pixel (index × stride) lies in `region`."""
    y0, y1, x0, x1 = region
    ys = jnp.arange(map_hw[0]) * (image_hw[0] / map_hw[0])
    xs = jnp.arange(map_hw[1]) * (image_hw[1] / map_hw[1])
    inside_y = (ys >= y0) & (ys < y1)
    inside_x = (xs >= x0) & (xs < x1)
    return (inside_y[:, None] & inside_x[None, :]).astype(jnp.float32)


def tile_windows(length: int, tile: int, overlap: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Tiling of one axis: (core starts, window starts, core length, window length).

    Cores of `tile` pixels cover [0, length) (the last one shifted back to end at `length`, overlapping
    its neighbour: overlapping cores receive identical values when the context suffices). Each window
    adds `overlap` pixels of context per side, clamped inside the image, where the image border is the
    true border, so it needs no context. An axis that fits in one window is not split.
    """
    window = tile + 2 * overlap
    if length <= window:
        return np.zeros(1, np.int32), np.zeros(1, np.int32), length, length
    count = math.ceil(length / tile)
    cores = np.minimum(np.arange(count) * tile, length - tile)
    windows = np.clip(cores - overlap, 0, length - window)
    return cores.astype(np.int32), windows.astype(np.int32), tile, window


def _owned_starts(cores: np.ndarray, core_len: int) -> np.ndarray:
    """Where each core's *owned* part starts: the shifted last core does not own its overlap."""
    owned = cores.copy()
    owned[1:] = np.maximum(cores[1:], cores[:-1] + core_len)
    return owned


def tiled_value_and_grad(objective, image: Array, variables: PyTree, tile: int, overlap: int):
    """(value, gradient) of `objective` on `image [H, W, 3]`, one window at a time (`lax.scan`).

    Only one window's activations are alive at a time, which bounds memory by the tile size. Each window
    contributes the gradient of its core and the objective over the activations it owns, so both equal
    the untiled ones when `overlap` covers twice the receptive-field radius and window starts are
    multiples of the tap's stride.
    """
    height, width = image.shape[:2]
    core_y, win_y, core_h, win_h = tile_windows(height, tile, overlap)
    core_x, win_x, core_w, win_w = tile_windows(width, tile, overlap)
    own_y, own_x = _owned_starts(core_y, core_h), _owned_starts(core_x, core_w)
    columns = [
        np.meshgrid(a, b, indexing="ij")
        for a, b in ((core_y, core_x), (win_y, win_x), (own_y, own_x))
    ]
    grid = np.stack([m.ravel() for pair in columns for m in pair], axis=1)  # [tiles, 6]

    def body(carry, starts):
        grad, value = carry
        cy, cx, wy, wx, oy, ox = (starts[i] for i in range(6))
        window = lax.dynamic_slice(image, (wy, wx, 0), (win_h, win_w, 3))
        owned = (oy - wy, cy - wy + core_h, ox - wx, cx - wx + core_w)  # in window coordinates
        (_, v), g = jax.value_and_grad(
            lambda w: objective.full_and_region(w, variables, owned), has_aux=True
        )(window)
        core_grad = lax.dynamic_slice(g, (cy - wy, cx - wx, 0), (core_h, core_w, 3))
        grad = lax.dynamic_update_slice(grad, core_grad, (cy, cx, 0))
        return (grad, value + v), None

    init = (jnp.zeros_like(image), jnp.zeros((), jnp.float32))
    (grad, value), _ = lax.scan(body, init, jnp.asarray(grid))
    return value, grad
