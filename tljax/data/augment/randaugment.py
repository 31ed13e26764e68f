"""RandAugment (Cubuk et al. 2020) on device, with timm's conventions (`rand-m9-n2-mstd0.5-inc1`).

Per example: `num_ops` ops drawn uniformly with replacement from `ops`, each applied with probability
`prob` (timm's `AugmentOp` default 0.5; the paper applies always: `prob=1`), at magnitude M on the /10
scale. With `magnitude_std > 0` each application draws its magnitude from N(M, std) (timm's `mstd`),
clipped to [0, 10]. The op list is timm's `_RAND_INCREASING_TRANSFORMS` (see `ops` for the magnitude
maps), so a larger M is always stronger.

All randomness comes from one key per example. The draws are vmapped (cheap); the images go through
`lax.map`, one example at a time, so each op choice is a real `lax.switch` that runs only the drawn op
(and nothing when the op is not applied). Vmapping the images instead would turn the switch into a
select computing every op of the list for every image (the README's benchmark has the difference).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tljax.data.augment import ops as ops_lib

STANDARD_OPS = (
    "autocontrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
MAX_MAGNITUDE = 10.0  # timm's _LEVEL_DENOM: M is on a /10 scale


@dataclasses.dataclass(frozen=True)
class RandAugmentConfig:
    """RandAugment's N (`num_ops`), M (`magnitude`, 0..10), magnitude noise, op probability and list."""

    num_ops: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.5
    prob: float = 0.5
    ops: tuple[str, ...] = STANDARD_OPS

    def __post_init__(self) -> None:
        ops_lib.check_op_names(self.ops, "randaugment ops")
        if not 0 <= self.magnitude <= MAX_MAGNITUDE:
            raise ValueError(
                f"randaugment magnitude {self.magnitude} is outside [0, 10] (the /10 scale)"
            )
        if self.num_ops < 1 or self.magnitude_std < 0 or not 0 <= self.prob <= 1:
            raise ValueError(
                "randaugment needs num_ops >= 1, magnitude_std >= 0 and prob in [0, 1]"
            )


def draw(key: jax.Array, config: RandAugmentConfig) -> dict:
    """One example's draws: `op [N]` indices into `config.ops`, `apply [N]`, `magnitude [N]` (0..1), keys."""
    k_op, k_apply, k_noise, k_ops = jax.random.split(key, 4)
    n = config.num_ops
    magnitude = jnp.full((n,), config.magnitude, jnp.float32)
    if config.magnitude_std > 0:
        magnitude = magnitude + config.magnitude_std * jax.random.normal(k_noise, (n,))
    return {
        "op": jax.random.randint(k_op, (n,), 0, len(config.ops)),
        "apply": jax.random.uniform(k_apply, (n,)) < config.prob,
        "magnitude": jnp.clip(magnitude, 0.0, MAX_MAGNITUDE) / MAX_MAGNITUDE,
        "key": jax.random.split(k_ops, n),
    }


def apply_draws(image: jax.Array, draws: dict, config: RandAugmentConfig) -> jax.Array:
    """One image `[H, W, C]` in [0, 1] through the drawn ops, in order (not vmap this: see above)."""

    # A scan, so the op switch is traced (and compiled) once however many ops are applied.
    def one_op(image: jax.Array, draw: tuple) -> tuple[jax.Array, None]:
        op, apply, magnitude, key = draw
        return ops_lib.apply_op_if(apply, op, config.ops, image, magnitude, key), None

    columns = (draws["op"], draws["apply"], draws["magnitude"], draws["key"])
    return jax.lax.scan(one_op, image, columns)[0]


def randaugment_examples(
    keys: jax.Array, images: jax.Array, config: RandAugmentConfig
) -> jax.Array:
    """RandAugment a batch `[B, H, W, C]` in [0, 1] with one key per example, `keys [B]`."""
    draws = jax.vmap(lambda k: draw(k, config))(keys)
    return jax.lax.map(lambda x: apply_draws(x[0], x[1], config), (images, draws))


def randaugment(key: jax.Array, images: jax.Array, config: RandAugmentConfig) -> jax.Array:
    """RandAugment a batch `[B, H, W, C]` in [0, 1], one independent draw per example."""
    return randaugment_examples(jax.random.split(key, images.shape[0]), images, config)
