"""The loss terms of neural style transfer, with the deeplearning.ai seeds' normalisations.

For activations a of shape n_H × n_W × n_C:

    J_content   = 1 / (4·n_H·n_W·n_C) · Σ (a_C − a_G)²
    G           = Aᵀ·A, A the activations unrolled to [n_H·n_W, n_C]          (the Gram matrix, n_C × n_C)
    J_style^l   = 1 / (2·n_H·n_W·n_C)² · Σ (G_S − G_G)²
    TV          = mean over pixels and channels of the squared neighbour differences of G/255

When the style image has a different size from G (style scale, non-square images), each Gram matrix is
divided by its own n_H·n_W first (`normalised_gram`), which leaves the formula above unchanged for
equal sizes and makes the style target independent of the style image's size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "content_cost",
    "gram_matrix",
    "normalised_gram",
    "style_cost_from_target",
    "style_layer_cost",
    "total_variation",
]


def gram_matrix(features: Array) -> Array:
    """Gram matrix `Aᵀ·A` of activations `[(B,) H, W, C]` unrolled to `A = [B·H·W, C]` → `[C, C]` (fp32).

    Accumulating in float32 keeps bf16 activations from losing the style signal in the sum.
    """
    a = features.reshape(-1, features.shape[-1])
    return jnp.einsum("pc,pd->cd", a, a, preferred_element_type=jnp.float32)


def _dims(features: Array) -> tuple[int, int]:
    """(n_H·n_W, n_C) of `[(B,) H, W, C]` activations (batch of 1 assumed, as in the seeds)."""
    return int(np.prod(features.shape[:-1])), int(features.shape[-1])


def content_cost(a_content: Array, a_generated: Array) -> Array:
    """J_content = 1/(4·n_H·n_W·n_C) · Σ(a_C − a_G)² (deeplearning.ai normalisation)."""
    positions, channels = _dims(a_generated)
    diff = a_content.astype(jnp.float32) - a_generated.astype(jnp.float32)
    return jnp.sum(diff * diff) / (4.0 * positions * channels)


def normalised_gram(features: Array) -> Array:
    """Gram matrix divided by n_H·n_W: the size-independent style statistic (see module docstring)."""
    positions, _ = _dims(features)
    return gram_matrix(features) / positions


def style_cost_from_target(target_gram: Array, a_generated: Array) -> Array:
    """J_style^l against a precomputed `normalised_gram` target: Σ(Ĝ_S − Ĝ_G)² / (4·n_C²).

    With Ĝ = G/(n_H·n_W) this is exactly 1/(2·n_H·n_W·n_C)²·Σ(G_S − G_G)² when both images have the
    same size.
    """
    _, channels = _dims(a_generated)
    diff = target_gram - normalised_gram(a_generated)
    return jnp.sum(diff * diff) / (4.0 * channels * channels)


def style_layer_cost(a_style: Array, a_generated: Array) -> Array:
    """J_style^l = 1/(2·n_H·n_W·n_C)² · Σ(G_S − G_G)² for one layer (equal-size images)."""
    return style_cost_from_target(normalised_gram(a_style), a_generated)


def total_variation(image: Array) -> Array:
    """Mean squared difference between vertical and horizontal neighbours of `image/255` `[(B,) H, W, 3]`.

    Measured in 0..1 units and averaged over pixels so its weight does not depend on the image size.
    """
    x = image.astype(jnp.float32) / 255.0
    dy = x[..., 1:, :, :] - x[..., :-1, :, :]
    dx = x[..., :, 1:, :] - x[..., :, :-1, :]
    return (jnp.sum(dy * dy) + jnp.sum(dx * dx)) / x.size
