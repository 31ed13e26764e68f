"""AugMix (Hendrycks et al. 2020) on device, and its Jensen–Shannon consistency loss.

Per example, the paper's `augment_and_mix`: `width` chains, each of depth `depth` (or uniform in 1..3
when `depth <= 0`) of ops drawn uniformly from the op list; chain weights w ~ Dirichlet(α·1) and a skip
weight m ~ Beta(α, α); output `(1 - m)·x + m·Σ_i w_i·chain_i(x)`, a convex combination, so it stays in
[0, 1]. Each op application draws its level uniformly in [0.1, severity] (the paper's `sample_level`)
and runs at magnitude level/10; translate is rescaled so its range is the paper's ±size/3 (tljax's
translate op spans ±0.45·size at magnitude 1, timm's RandAugment range). The paper truncates levels to
integers (`int_parameter`); tljax keeps them continuous.

The default op list is the paper's `augmentations` (no colour, contrast, brightness or sharpness: those
overlap ImageNet-C's corruptions, which AugMix is evaluated on); `all_ops=True` adds them
(`augmentations_all`).

`jsd_consistency(logits_clean, logits_aug1, logits_aug2)` is the paper's loss term
`(KL(p_c‖M) + KL(p_1‖M) + KL(p_2‖M)) / 3` with `M` the clipped mean of the three softmaxes, averaged
over the batch; the train step adds it with weight `jsd_weight` (12 in the paper) to the clean
cross-entropy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tljax.data.augment import ops as ops_lib

PAPER_OPS = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
IMAGENET_C_OVERLAP_OPS = ("color", "contrast", "brightness", "sharpness")
MAX_DEPTH = 3
# The paper's translate spans ±size/3 at level 10; tljax's translate op spans ±0.45·size at magnitude 1.
_MAGNITUDE_SCALE = {"translate_x": (1.0 / 3.0) / 0.45, "translate_y": (1.0 / 3.0) / 0.45}


@dataclasses.dataclass(frozen=True)
class AugMixConfig:
    """AugMix's width, depth (<= 0: uniform in 1..3), severity (1..10), α, op list switch, JSD weight."""

    width: int = 3
    depth: int = -1
    severity: float = 3.0
    alpha: float = 1.0
    all_ops: bool = False
    jsd: bool = True
    jsd_weight: float = 12.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth > MAX_DEPTH:
            raise ValueError(
                f"augmix needs width >= 1 and depth <= {MAX_DEPTH} (<= 0: random 1..3)"
            )
        if not 0.1 <= self.severity <= 10:
            raise ValueError(f"augmix severity {self.severity} is outside [0.1, 10]")
        if self.alpha <= 0 or self.jsd_weight < 0:
            raise ValueError("augmix needs alpha > 0 and jsd_weight >= 0")

    @property
    def ops(self) -> tuple[str, ...]:
        """The op list: the paper's, plus the ImageNet-C-overlapping ones with `all_ops`."""
        return PAPER_OPS + (IMAGENET_C_OVERLAP_OPS if self.all_ops else ())


def draw(key: jax.Array, config: AugMixConfig) -> dict:
    """One example's draws: chain `weights [W]`, `skip` m, `depth [W]`, `op`/`magnitude`/`key` `[W, 3]`."""
    k_gamma, k_depth, k_op, k_level, k_ops = jax.random.split(key, 5)
    # Dirichlet(α·1) and Beta(α, α) from one gamma draw (their definitions): XLA compiles
    # jax.random.gamma's rejection loop slowly, so it is traced once, not twice.
    gammas = jax.random.gamma(k_gamma, jnp.full((config.width + 2,), config.alpha, jnp.float32))
    shape = (config.width, MAX_DEPTH)
    if config.depth > 0:
        depth = jnp.full((config.width,), config.depth, jnp.int32)
    else:
        depth = jax.random.randint(k_depth, (config.width,), 1, MAX_DEPTH + 1)
    op = jax.random.randint(k_op, shape, 0, len(config.ops))
    level = jax.random.uniform(k_level, shape, minval=0.1, maxval=config.severity)
    scale = jnp.array([_MAGNITUDE_SCALE.get(name, 1.0) for name in config.ops], jnp.float32)
    return {
        "weights": gammas[: config.width] / jnp.sum(gammas[: config.width]),
        "skip": gammas[config.width] / (gammas[config.width] + gammas[config.width + 1]),
        "depth": depth,
        "op": op,
        "magnitude": jnp.clip(level / 10.0 * scale[op], 0.0, 1.0),
        "key": jax.random.split(k_ops, config.width * MAX_DEPTH).reshape(*shape),
    }


def apply_draws(image: jax.Array, draws: dict, config: AugMixConfig) -> jax.Array:
    """One image `[H, W, C]` in [0, 1] mixed by the drawn chains (not vmap this: see `augmix`)."""
    names = config.ops

    # Chains and a chain's steps are scans, so the op switch is traced once and stays a real switch:
    # steps past a chain's depth take the switch's identity branch and cost nothing.
    def chain(mixed: jax.Array, per_chain: tuple) -> tuple[jax.Array, None]:
        weight, depth, op, magnitude, key = per_chain

        def one_op(augmented: jax.Array, draw: tuple) -> tuple[jax.Array, None]:
            step, op, magnitude, key = draw
            return ops_lib.apply_op_if(step < depth, op, names, augmented, magnitude, key), None

        steps = (jnp.arange(MAX_DEPTH), op, magnitude, key)
        return mixed + weight * jax.lax.scan(one_op, image, steps)[0], None

    columns = (draws["weights"], draws["depth"], draws["op"], draws["magnitude"], draws["key"])
    mixed = jax.lax.scan(chain, jnp.zeros_like(image), columns)[0]
    skip = draws["skip"]
    return jnp.clip((1.0 - skip) * image + skip * mixed, 0.0, 1.0)


def augmix_examples(keys: jax.Array, images: jax.Array, config: AugMixConfig) -> jax.Array:
    """AugMix a batch `[B, H, W, C]` in [0, 1] with one key per example, `keys [B]`.

    The draws are vmapped; the images go through `lax.map` one at a time, so that every op choice is a
    real switch (under `vmap` it would compute every op of the list for every image and step).
    """
    draws = jax.vmap(lambda k: draw(k, config))(keys)
    return jax.lax.map(lambda x: apply_draws(x[0], x[1], config), (images, draws))


def augmix(key: jax.Array, images: jax.Array, config: AugMixConfig) -> jax.Array:
    """AugMix a batch `[B, H, W, C]` in [0, 1], one independent draw per example."""
    return augmix_examples(jax.random.split(key, images.shape[0]), images, config)


def jsd_consistency(
    logits_clean: jax.Array, logits_aug1: jax.Array, logits_aug2: jax.Array
) -> jax.Array:
    """The AugMix Jensen–Shannon term: mean over the batch of `Σ_v KL(p_v ‖ M) / 3`, a scalar.

    `M = clip(mean_v p_v, 1e-7, 1)` as in the paper's code (the clip keeps `log M` finite); logits are
    upcast to float32 first.
    """
    probs = [
        jax.nn.softmax(x.astype(jnp.float32), axis=-1)
        for x in (logits_clean, logits_aug1, logits_aug2)
    ]
    log_mixture = jnp.log(jnp.clip((probs[0] + probs[1] + probs[2]) / 3.0, 1e-7, 1.0))
    kl = [jnp.sum(jax.scipy.special.xlogy(p, p) - p * log_mixture, axis=-1) for p in probs]
    return jnp.mean(kl[0] + kl[1] + kl[2]) / 3.0
