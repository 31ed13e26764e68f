"""lucid's robustness transforms for feature visualisation: pad, jitter, random scale and rotation.

Applied inside the compiled step with a key argument, so every step sees a fresh random transform and an
image that works under all of them cannot rely on single-pixel patterns.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

Array = jax.Array

__all__ = ["RobustnessTransforms"]


@dataclasses.dataclass(frozen=True)
class RobustnessTransforms:
    """lucid's `standard_transforms`: pad, jitter, random scale, random rotation, jitter again.

    All sizes are static (scaling zooms about the centre at a fixed output size), so the transform lives
    inside the compiled step; randomness comes from the `key` argument. Each image of a batch gets its own
    draw. Padding and the area that rotation/scale uncover are filled with mid-gray `fill`.
    """

    pad: int = 12
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(range(-10, 11)) + (0,) * 5  # degrees; extra zeros as in lucid
    final_jitter: int = 4
    fill: float = 0.5

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        grow = 2 * self.pad - self.jitter - self.final_jitter
        return hw[0] + grow, hw[1] + grow

    def __call__(self, key: Array, images: Array) -> Array:
        """`[B, H, W, 3]` → `[B, H', W', 3]` with `(H', W') = output_hw((H, W))`."""
        keys = jax.random.split(key, images.shape[0])
        return jax.vmap(self._one)(keys, images)

    def _one(self, key: Array, image: Array) -> Array:
        k_jit, k_scale, k_angle, k_jit2 = jax.random.split(key, 4)
        p = self.pad
        image = jnp.pad(image, ((p, p), (p, p), (0, 0)), constant_values=self.fill)
        image = _random_crop(k_jit, image, self.jitter)
        scale = jax.random.choice(k_scale, jnp.asarray(self.scales, jnp.float32))
        angle = jax.random.choice(k_angle, jnp.asarray(self.angles, jnp.float32)) * (jnp.pi / 180)
        image = _scale_rotate(image, scale, angle, self.fill)
        return _random_crop(k_jit2, image, self.final_jitter)


def _random_crop(key: Array, image: Array, shrink: int) -> Array:
    """Crops `shrink` pixels off each spatial size at a random offset: a random translation of ≤ shrink."""
    if shrink <= 0:
        return image
    h, w, c = image.shape
    dy, dx = jax.random.randint(key, (2,), 0, shrink + 1)
    return jax.lax.dynamic_slice(image, (dy, dx, 0), (h - shrink, w - shrink, c))


def _scale_rotate(image: Array, scale: Array, angle: Array, fill: float) -> Array:
    """Zooms by `scale` and rotates by `angle` (radians) about the centre, bilinear, same output size."""
    h, w, _ = image.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    # Inverse map: output pixel → source coordinate (rotate by -angle, shrink by 1/scale).
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = ((yy - cy) * cos - (xx - cx) * sin) / scale + cy
    src_x = ((yy - cy) * sin + (xx - cx) * cos) / scale + cx
    channels = [
        ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1, mode="constant", cval=fill)
        for c in range(image.shape[-1])
    ]
    return jnp.stack(channels, axis=-1)
