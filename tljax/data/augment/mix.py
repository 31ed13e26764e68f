"""mixup and CutMix on a device batch, with timm's conventions (`timm.data.Mixup`).

- Partners: example i is mixed with example B-1-i (the batch reversed), for the images and the targets.
- `mode="batch"`: one draw for the whole batch; `"elem"`: one draw per example; `"pair"`: one draw per
  pair (i, B-1-i), both members mixed with each other by the same λ and box (B must be even).
- A draw: with probability `prob` the example is mixed, else left alone (λ = 1). With both alphas > 0,
  CutMix is chosen with probability `switch_prob`, else mixup; λ ~ Beta(α, α) of the chosen method.
- CutMix pastes the partner's box of side `⌊H·√(1-λ)⌋ × ⌊W·√(1-λ)⌋` centred at a uniform pixel, clipped
  to the image, and then corrects λ to the area actually kept (timm's `correct_lam`), so the targets
  weigh each image by the pixels it contributes.
- Targets are soft: `λ·smooth(y_i) + (1-λ)·smooth(y_{B-1-i})` with timm's label smoothing (on-value
  1 - ε + ε/K, off-value ε/K, which is `optax.smooth_labels`); each row sums to 1.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax

MODES = ("batch", "pair", "elem")


@dataclasses.dataclass(frozen=True)
class MixConfig:
    """mixup/CutMix hyper-parameters, timm's names; an alpha of 0 turns that method off."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: Literal["batch", "pair", "elem"] = "batch"
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mix mode {self.mode!r} is not one of {MODES}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0 (0 turns a method off)")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: nothing to mix")


def soft_targets(labels: jax.Array, num_classes: int, label_smoothing: float) -> jax.Array:
    """One-hot `[B, K]` float32 targets with timm's label smoothing (on 1 - ε + ε/K, off ε/K)."""
    return optax.smooth_labels(
        jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), label_smoothing
    )


def draw(key: jax.Array, config: MixConfig, batch_size: int, height: int, width: int) -> dict:
    """The per-example random draws of one call: `lam [B]` (box-corrected), `use_cutmix [B]`, `box [B, 4]`.

    `box` is `(top, bottom, left, right)` in pixels, half-open; empty where CutMix is not used. Split out
    of `mix_batch` so tests can check the images and targets against the exact draws.
    """
    count = {"batch": 1, "pair": batch_size // 2, "elem": batch_size}[config.mode]
    if config.mode == "pair" and batch_size % 2:
        raise ValueError(f"mix mode 'pair' needs an even batch size, got {batch_size}")
    k_apply, k_switch, k_beta, k_y, k_x = jax.random.split(key, 5)
    if config.mixup_alpha > 0 and config.cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(k_switch, (count,)) < config.switch_prob
    else:
        use_cutmix = jnp.full((count,), config.cutmix_alpha > 0)
    # Both Betas from one gamma draw (Beta(a, a) = G1 / (G1 + G2)): XLA compiles jax.random.gamma's
    # rejection loop slowly, so it is traced once. An alpha of 0 (method off) is drawn at 1, unused.
    alphas = jnp.array(
        [
            config.mixup_alpha or 1.0,
            config.mixup_alpha or 1.0,
            config.cutmix_alpha or 1.0,
            config.cutmix_alpha or 1.0,
        ],
        jnp.float32,
    )
    gammas = jax.random.gamma(k_beta, jnp.broadcast_to(alphas, (count, 4)))
    lam_mixup = gammas[:, 0] / (gammas[:, 0] + gammas[:, 1])
    lam_cutmix = gammas[:, 2] / (gammas[:, 2] + gammas[:, 3])
    if config.mixup_alpha == 0:
        lam_mixup = jnp.ones((count,))
    if config.cutmix_alpha == 0:
        lam_cutmix = jnp.ones((count,))
    applied = jax.random.uniform(k_apply, (count,)) < config.prob
    lam = jnp.where(applied, jnp.where(use_cutmix, lam_cutmix, lam_mixup), 1.0).astype(jnp.float32)
    use_cutmix = use_cutmix & applied

    # timm's rand_bbox: side ⌊size·√(1-λ)⌋, centre uniform over the pixels, clipped to the image.
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    centre_y = jax.random.randint(k_y, (count,), 0, height)
    centre_x = jax.random.randint(k_x, (count,), 0, width)
    top = jnp.clip(centre_y - cut_h // 2, 0, height)
    bottom = jnp.clip(centre_y + cut_h // 2, 0, height)
    left = jnp.clip(centre_x - cut_w // 2, 0, width)
    right = jnp.clip(centre_x + cut_w // 2, 0, width)
    box = jnp.stack([top, bottom, left, right], axis=-1)
    box = jnp.where(use_cutmix[:, None], box, 0)
    pasted = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
    lam = jnp.where(use_cutmix, 1.0 - pasted / (height * width), lam).astype(jnp.float32)

    def per_example(values: jax.Array) -> jax.Array:
        if config.mode == "batch":
            return jnp.broadcast_to(values, (batch_size, *values.shape[1:]))
        if config.mode == "pair":
            return jnp.concatenate([values, values[::-1]], axis=0)
        return values

    return {"lam": per_example(lam), "use_cutmix": per_example(use_cutmix), "box": per_example(box)}


def apply_draws(images: jax.Array, targets: jax.Array, draws: dict) -> tuple[jax.Array, jax.Array]:
    """Mix `images [B, H, W, C]` and soft `targets [B, K]` with their reversed batch by `draws`."""
    batch_size, height, width = images.shape[:3]
    lam = draws["lam"]
    partner_images = images[::-1]
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    box = draws["box"]
    inside = (
        (rows >= box[:, 0, None, None])
        & (rows < box[:, 1, None, None])
        & (cols >= box[:, 2, None, None])
        & (cols < box[:, 3, None, None])
    )[..., None]  # [B, H, W, 1]
    cutmixed = jnp.where(inside, partner_images, images)
    weight = lam[:, None, None, None]
    mixed = images * weight + partner_images * (1.0 - weight)
    images = jnp.where(draws["use_cutmix"][:, None, None, None], cutmixed, mixed)
    targets = targets * lam[:, None] + targets[::-1] * (1.0 - lam[:, None])
    return images, targets


def mix_batch(
    key: jax.Array, images: jax.Array, labels: jax.Array, num_classes: int, config: MixConfig
) -> tuple[jax.Array, jax.Array]:
    """`(images [B, H, W, C], soft targets [B, K])`: mixup or CutMix of the batch, timm's conventions."""
    batch_size, height, width = images.shape[:3]
    draws = draw(key, config, batch_size, height, width)
    return apply_draws(images, soft_targets(labels, num_classes, config.label_smoothing), draws)
