"""Trainable augmentation: a Faster AutoAugment policy (Hataya et al. 2020), searched by gradient.

A policy is `S` sub-policies of `T` stages; each stage holds, for every op of `OPS`, a selection logit, an
application probability and a magnitude in [0, 1]. Relaxed (searching) forward, per batch:
- one sub-policy is drawn uniformly;
- in each stage every op is applied at its magnitude, mixed with the stage's input by a relaxed Bernoulli
  gate `b ~ RelaxedBernoulli(p, τ)` per example, and the ops' outputs are summed with weights
  `softmax(logits / τ)` (the paper's relaxed op selection);
- non-differentiable ops (solarize, posterize) pass the magnitude's gradient straight through
  (`y + m − stop_gradient(m)`, the paper's estimator); magnitude-free ops (flip, invert, autocontrast) get
  no magnitude gradient. Geometric and colour ops are dm-pix's, so their magnitude gradients are exact.
The search (`search_policy`) alternates a critic/classifier update (WGAN-GP critic "real vs augmented" on a
shared trunk, classifier on real images) and a policy update minimising `−critic(aug) + ε·CE(aug)`.
The searched policy is saved as JSON (`save_policy`, atomic) and used as the example op
`"searched_policy"` (`data.augment.example_ops=("searched_policy",)`, `data.augment.policy_file=...`),
which samples a sub-policy, an op per stage and its Bernoulli gate per image, at the learnt magnitudes.

Kept from the paper: the policy structure, the relaxations, the critic + classification objective, the
temperature 0.05, Adam with β1 = 0. Smaller than the paper: a 3-conv critic/classifier instead of a
WideResNet, 13 ops instead of 16 (no sharpness, equalize, sample pairing), images at the size
given. Not copied from the public reference: its posterize is the identity and its op list has
TranslateY twice; here posterize keeps 8 − round(6m) bits (2..8) and the two translations differ.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import dm_pix
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax import fileio
from tljax.data.augment import host as augment_lib  # the registry (the package imports this module)

FORMAT = "tljax.trainable_policy/1"
TEMPERATURE = 0.05  # the paper's, for both the op selection and the Bernoulli gates

Op = Callable[[jax.Array, jax.Array], jax.Array]
"""`op(images in [0, 1] [B, H, W, 3], magnitude in [0, 1] scalar) -> images in [0, 1]`."""


def _signed(m: jax.Array) -> jax.Array:
    """[0, 1] → [−1, 1]: magnitude 0.5 is the identity of a signed op."""
    return 2.0 * m - 1.0


def _affine(images: jax.Array, linear: jax.Array, shift: jax.Array) -> jax.Array:
    """Output pixel o samples the input at `linear @ (o − c) + c + shift` (c the image centre), bilinear
    (dm-pix), zeros outside. `[B, H, W, 3]` → same shape."""
    h, w = images.shape[1:3]
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    matrix = jnp.eye(3).at[:2, :2].set(linear)
    offset = jnp.concatenate([centre - linear @ centre + shift, jnp.zeros(1)])

    def warp(image: jax.Array) -> jax.Array:
        return dm_pix.affine_transform(image, matrix, offset=offset, order=1, mode="constant")

    return jax.vmap(warp)(images)


# Geometric ops as `magnitude -> (linear [2, 2], shift [2] in pixels)` of the sampling map, so that the
# relaxed forward runs all of them as one batched warp (one interpolation in the compiled graph).
def _shear_x(m: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2).at[1, 0].set(0.3 * _signed(m)), jnp.zeros(2)


def _shear_y(m: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2).at[0, 1].set(0.3 * _signed(m)), jnp.zeros(2)


def _translate_x(m: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2), jnp.stack([jnp.zeros(()), 0.45 * size[1] * _signed(m)])


def _translate_y(m: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    return jnp.eye(2), jnp.stack([0.45 * size[0] * _signed(m), jnp.zeros(())])


def _rotate(m: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    angle = jnp.deg2rad(30.0) * _signed(m)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([jnp.stack([cos, -sin]), jnp.stack([sin, cos])]), jnp.zeros(2)


GEOMETRIC = {
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
    "rotate": _rotate,
}


def _geometric(name: str) -> Op:
    def op(x: jax.Array, m: jax.Array) -> jax.Array:
        return _affine(x, *GEOMETRIC[name](m, (x.shape[1], x.shape[2])))

    op.__name__ = name
    op.__doc__ = {
        "shear_x": "Horizontal shear by up to ±0.3.",
        "shear_y": "Vertical shear by up to ±0.3.",
        "translate_x": "Horizontal translation by up to ±45% of the width.",
        "translate_y": "Vertical translation by up to ±45% of the height.",
        "rotate": "Rotation about the centre by up to ±30°.",
    }[name]
    return op


shear_x = _geometric("shear_x")
shear_y = _geometric("shear_y")
translate_x = _geometric("translate_x")
translate_y = _geometric("translate_y")
rotate = _geometric("rotate")


def hflip(x: jax.Array, m: jax.Array) -> jax.Array:
    """Left-right mirror (no magnitude)."""
    return x[:, :, ::-1]


def invert(x: jax.Array, m: jax.Array) -> jax.Array:
    """`1 − x` (no magnitude)."""
    return 1.0 - x


def autocontrast(x: jax.Array, m: jax.Array) -> jax.Array:
    """Per image and channel, stretch [min, max] to [0, 1] (no magnitude; a flat channel is kept)."""
    low = x.min(axis=(1, 2), keepdims=True)
    high = x.max(axis=(1, 2), keepdims=True)
    span = high - low
    return jnp.where(span > 0, (x - low) / jnp.where(span > 0, span, 1.0), x)


def _straight_through(hard: jax.Array, m: jax.Array) -> jax.Array:
    return hard + (m - jax.lax.stop_gradient(m))


def solarize(x: jax.Array, m: jax.Array) -> jax.Array:
    """Invert the values at or above the threshold `1 − m` (straight-through magnitude gradient)."""
    threshold = 1.0 - jax.lax.stop_gradient(m)
    return _straight_through(jnp.where(x >= threshold, 1.0 - x, x), m)


def posterize(x: jax.Array, m: jax.Array) -> jax.Array:
    """Keep the `8 − round(6m)` high bits of each 8-bit value (straight-through magnitude gradient)."""
    bits = 8 - jnp.round(6.0 * jax.lax.stop_gradient(m))
    step = 2.0 ** (8 - bits)
    quantised = jnp.floor(jnp.round(x * 255.0) / step) * step / 255.0
    return _straight_through(quantised, m)


def contrast(x: jax.Array, m: jax.Array) -> jax.Array:
    """Contrast factor 1 + 0.9·(2m − 1) about each image's channel means (dm-pix)."""
    return jnp.clip(dm_pix.adjust_contrast(x, 1.0 + 0.9 * _signed(m)), 0.0, 1.0)


def saturation(x: jax.Array, m: jax.Array) -> jax.Array:
    """Saturation factor 1 + 0.9·(2m − 1): a blend with the image's ITU-R 601 luma, as PIL's
    `ImageEnhance.Color` (a grey image is unchanged). Not dm-pix's HSV round trip, which compiles ~3×
    slower inside the relaxed forward and its gradient."""
    luma = x @ jnp.array([0.299, 0.587, 0.114], x.dtype)
    grey = luma[..., None]
    return jnp.clip(grey + (1.0 + 0.9 * _signed(m)) * (x - grey), 0.0, 1.0)


def brightness(x: jax.Array, m: jax.Array) -> jax.Array:
    """Additive brightness shift of 0.3·(2m − 1) (dm-pix, TensorFlow's convention)."""
    return jnp.clip(dm_pix.adjust_brightness(x, 0.3 * _signed(m)), 0.0, 1.0)


OPS: dict[str, Op] = {
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "rotate": rotate,
    "hflip": hflip,
    "invert": invert,
    "autocontrast": autocontrast,
    "solarize": solarize,
    "posterize": posterize,
    "contrast": contrast,
    "saturation": saturation,
    "brightness": brightness,
}
MAGNITUDE_FREE = ("hflip", "invert", "autocontrast")
STRAIGHT_THROUGH = ("solarize", "posterize")


@dataclasses.dataclass(frozen=True)
class Policy:
    """A (searched) policy: `op_logits`, `prob_logits`, `magnitudes` are `[S, T, K]` over `ops`."""

    ops: tuple[str, ...]
    op_logits: np.ndarray
    prob_logits: np.ndarray
    magnitudes: np.ndarray
    temperature: float = TEMPERATURE

    def params(self) -> dict[str, jax.Array]:
        """The differentiable parameters as a pytree."""
        return {
            "op_logits": jnp.asarray(self.op_logits, jnp.float32),
            "prob_logits": jnp.asarray(self.prob_logits, jnp.float32),
            "magnitudes": jnp.asarray(self.magnitudes, jnp.float32),
        }

    def with_params(self, params: dict[str, Any]) -> Policy:
        """The same policy with new parameter values (magnitudes clipped to [0, 1])."""
        return dataclasses.replace(
            self,
            op_logits=np.asarray(params["op_logits"], np.float32),
            prob_logits=np.asarray(params["prob_logits"], np.float32),
            magnitudes=np.clip(np.asarray(params["magnitudes"], np.float32), 0.0, 1.0),
        )


def init_policy(
    sub_policies: int = 10,
    stages: int = 2,
    ops: Sequence[str] = tuple(OPS),
    *,
    seed: int = 0,
) -> Policy:
    """The paper's initialisation: uniform op selection, probability 0.5, magnitudes uniform in [0, 1]
    (drawn from `seed`)."""
    unknown = [name for name in ops if name not in OPS]
    if unknown:
        raise ValueError(f"unknown augmentation op(s) {unknown}; known: {', '.join(OPS)}")
    shape = (sub_policies, stages, len(ops))
    return Policy(
        ops=tuple(ops),
        op_logits=np.zeros(shape, np.float32),
        prob_logits=np.zeros(shape, np.float32),
        magnitudes=np.random.default_rng(seed).uniform(size=shape).astype(np.float32),
    )


def relaxed_bernoulli(
    key: jax.Array, prob_logit: jax.Array, shape, temperature: float
) -> jax.Array:
    """A reparameterised relaxed Bernoulli (binary Concrete) sample in (0, 1) of `shape`."""
    u = jax.random.uniform(key, shape, minval=1e-6, maxval=1.0 - 1e-6)
    return jax.nn.sigmoid((prob_logit + jnp.log(u) - jnp.log1p(-u)) / temperature)


def apply_relaxed(
    params: dict[str, jax.Array],
    images: jax.Array,
    key: jax.Array,
    ops: Sequence[str],
    temperature: float = TEMPERATURE,
) -> jax.Array:
    """The differentiable forward: `images` in [0, 1] `[B, H, W, 3]` → augmented images, a smooth
    function of every parameter of the drawn sub-policy (see the module docstring)."""
    sub_key, key = jax.random.split(key)
    s = jax.random.randint(sub_key, (), 0, params["op_logits"].shape[0])
    geometric = [k for k, name in enumerate(ops) if name in GEOMETRIC]
    size = (images.shape[1], images.shape[2])

    def stage(x: jax.Array, per_stage: tuple) -> tuple[jax.Array, None]:
        logits, prob_logits, magnitudes, stage_key = per_stage
        magnitudes = jnp.clip(magnitudes, 0.0, 1.0)
        outputs: dict[int, jax.Array] = {}
        if geometric:
            maps = [GEOMETRIC[ops[k]](magnitudes[k], size) for k in geometric]
            linear = jnp.stack([a for a, _ in maps])
            shift = jnp.stack([b for _, b in maps])
            warped = jax.vmap(lambda a, b: _affine(x, a, b))(linear, shift)  # [G, B, H, W, 3]
            outputs.update({k: warped[i] for i, k in enumerate(geometric)})
        for k, name in enumerate(ops):
            if k not in outputs:
                outputs[k] = OPS[name](x, magnitudes[k])
        weights = jax.nn.softmax(logits / temperature)
        gates = relaxed_bernoulli(
            stage_key, prob_logits[:, None], (len(ops), x.shape[0]), temperature
        )
        mixed = jnp.zeros_like(x)
        for k in range(len(ops)):
            gate = gates[k][:, None, None, None]
            mixed = mixed + weights[k] * (gate * outputs[k] + (1.0 - gate) * x)
        return mixed, None

    stages = params["op_logits"].shape[1]
    per_stage = (
        params["op_logits"][s],
        params["prob_logits"][s],
        params["magnitudes"][s],
        jax.random.split(key, stages),
    )
    out, _ = jax.lax.scan(stage, images, per_stage)
    return out


def apply_sampled(policy: Policy, image: jax.Array, key: jax.Array) -> jax.Array:
    """The policy as an augmentation of one image in [0, 1] `[H, W, 3]`: a uniform sub-policy, then in
    each stage an op drawn from `softmax(logits)`, applied with probability `sigmoid(prob_logit)`."""
    params = policy.params()
    keys = jax.random.split(key, 1 + 2 * params["op_logits"].shape[1])
    s = jax.random.randint(keys[0], (), 0, params["op_logits"].shape[0])
    x = image[None]
    branches = [lambda x, m, op=OPS[name]: op(x, m) for name in policy.ops]
    for t in range(params["op_logits"].shape[1]):
        k = jax.random.categorical(keys[1 + 2 * t], params["op_logits"][s, t])
        apply = jax.random.bernoulli(
            keys[2 + 2 * t], jax.nn.sigmoid(params["prob_logits"][s, t, k])
        )
        y = jax.lax.switch(k, branches, x, jnp.clip(params["magnitudes"][s, t, k], 0.0, 1.0))
        x = jnp.where(apply, y, x)
    return x[0]


class CriticClassifier(nn.Module):
    """A shared 3-conv trunk with a critic head (a real number per image) and a classifier head. No
    normalisation layers: the WGAN-GP penalty needs per-example gradients."""

    num_classes: int
    width: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, features in enumerate((self.width, 2 * self.width, 2 * self.width)):
            x = nn.leaky_relu(nn.Conv(features, (3, 3), strides=(2, 2), name=f"conv{i}")(x), 0.2)
        x = x.mean(axis=(1, 2))
        return nn.Dense(1, name="critic")(x)[:, 0], nn.Dense(self.num_classes, name="classifier")(x)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of `search_policy` (defaults: the paper's where it has one)."""

    steps: int = 200
    batch_size: int = 32
    sub_policies: int = 10
    stages: int = 2
    policy_lr: float = 1e-3
    critic_lr: float = 1e-3
    gradient_penalty: float = 10.0
    classification_weight: float = 0.1
    ops: tuple[str, ...] = tuple(OPS)


def _optimizers(config: SearchConfig) -> tuple[optax.GradientTransformation, ...]:
    # Adam with β1 = 0, as the paper (and WGAN-GP) train both players.
    return (
        optax.adam(config.critic_lr, b1=0.0, b2=0.999),
        optax.adam(config.policy_lr, b1=0.0, b2=0.999),
    )


@functools.partial(jax.jit, static_argnames=("net", "config"))
def _search_step(
    net_params, net_opt, policy_params, policy_opt, step_key, data, targets, *, net, config
):
    """One critic/classifier update then one policy update (module level: compiled once per shapes and
    config, however many searches run)."""
    net_tx, policy_tx = _optimizers(config)
    ops = config.ops

    def critic_loss(net_params, real, augmented, real_labels, gp_key):
        critic_real, logits = net.apply({"params": net_params}, real)
        critic_aug, _ = net.apply({"params": net_params}, augmented)
        alpha = jax.random.uniform(gp_key, (real.shape[0], 1, 1, 1))
        between = alpha * real + (1 - alpha) * augmented

        def critic_sum(x):
            return net.apply({"params": net_params}, x)[0].sum()

        grads = jax.grad(critic_sum)(between)
        norms = jnp.sqrt(jnp.sum(grads**2, axis=(1, 2, 3)) + 1e-12)
        penalty = jnp.mean((norms - 1.0) ** 2)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, real_labels).mean()
        wasserstein = critic_aug.mean() - critic_real.mean()
        return wasserstein + config.gradient_penalty * penalty + ce, (wasserstein, ce)

    def policy_loss(augmented, net_params, source_labels):
        critic_aug, logits = net.apply({"params": net_params}, augmented)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, source_labels).mean()
        return -critic_aug.mean() + config.classification_weight * ce

    keys = jax.random.split(step_key, 4)
    n = data.shape[0]
    real_idx = jax.random.choice(keys[0], n, (config.batch_size,), replace=False)
    source_idx = jax.random.choice(keys[1], n, (config.batch_size,), replace=False)
    real, real_labels = data[real_idx], targets[real_idx]
    source, source_labels = data[source_idx], targets[source_idx]
    # One relaxed forward serves both updates (the critic sees it as data, the policy pulls its
    # gradient back through it): the same augmented batch, half the compiled graph.
    augmented, pullback = jax.vjp(lambda p: apply_relaxed(p, source, keys[2], ops), policy_params)
    (d_loss, (wasserstein, ce)), grads = jax.value_and_grad(critic_loss, has_aux=True)(
        net_params, real, augmented, real_labels, keys[3]
    )
    updates, net_opt = net_tx.update(grads, net_opt, net_params)
    net_params = optax.apply_updates(net_params, updates)
    p_loss, grad_images = jax.value_and_grad(policy_loss)(augmented, net_params, source_labels)
    (grads,) = pullback(grad_images)
    updates, policy_opt = policy_tx.update(grads, policy_opt, policy_params)
    policy_params = optax.apply_updates(policy_params, updates)
    policy_params = {**policy_params, "magnitudes": jnp.clip(policy_params["magnitudes"], 0.0, 1.0)}
    metrics = {"critic_loss": d_loss, "wasserstein": wasserstein, "ce": ce, "policy_loss": p_loss}
    return net_params, net_opt, policy_params, policy_opt, metrics


def search_policy(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: SearchConfig = SearchConfig(),
    *,
    seed: int = 0,
) -> tuple[Policy, list[dict[str, float]]]:
    """Searches a policy on `images` (RGB 0..255, `[N, H, W, 3]`) and their `labels` (int `[N]`).

    Each step draws two batches (one kept real, one augmented by the relaxed policy), updates the
    critic/classifier on `critic(aug) − critic(real) + λ·GP + CE(real)`, then the policy on
    `−critic(aug) + ε·CE(aug)`. Everything random comes from `seed`, so the result is reproducible.
    Returns the searched policy and the per-step losses.
    """
    if len(images) < 2 * config.batch_size:
        raise ValueError(
            f"search_policy needs at least 2·batch_size = {2 * config.batch_size} images, got {len(images)}"
        )
    data = jnp.asarray(np.asarray(images, np.float32) / 255.0)
    targets = jnp.asarray(labels, jnp.int32)
    policy = init_policy(config.sub_policies, config.stages, config.ops, seed=seed)
    net = CriticClassifier(num_classes)
    key = jax.random.key(seed)
    net_params = net.init(jax.random.fold_in(key, 0), data[:1])["params"]
    policy_params = policy.params()
    net_tx, policy_tx = _optimizers(config)
    net_opt, policy_opt = net_tx.init(net_params), policy_tx.init(policy_params)
    history = []
    for i in range(config.steps):
        net_params, net_opt, policy_params, policy_opt, metrics = _search_step(
            net_params,
            net_opt,
            policy_params,
            policy_opt,
            jax.random.fold_in(key, i + 1),
            data,
            targets,
            net=net,
            config=config,
        )
        history.append(metrics)
    fetched = [{k: float(v) for k, v in m.items()} for m in jax.device_get(history)]
    if fetched and not all(math.isfinite(v) for m in fetched for v in m.values()):
        raise FloatingPointError(
            "the policy search diverged (a non-finite loss); lower the learning rates"
        )
    return policy.with_params(jax.device_get(policy_params)), fetched


def save_policy(path: str, policy: Policy) -> None:
    """Writes `policy` as JSON, atomically (a crash never leaves half a file)."""
    fileio.atomic_write_json(
        path,
        {
            "format": FORMAT,
            "ops": list(policy.ops),
            "temperature": policy.temperature,
            "op_logits": policy.op_logits.tolist(),
            "prob_logits": policy.prob_logits.tolist(),
            "magnitudes": policy.magnitudes.tolist(),
            # For the reader: what the sampled augmentation does.
            "op_probabilities": np.asarray(jax.nn.softmax(policy.op_logits, axis=-1)).tolist(),
            "apply_probabilities": np.asarray(jax.nn.sigmoid(policy.prob_logits)).tolist(),
        },
    )


def load_policy(path: str) -> Policy:
    """Reads a policy written by `save_policy`; a file of another format or with unknown ops is refused."""
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a policy file (invalid JSON: {e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} policy file (write one with save_policy)")
    unknown = [name for name in record["ops"] if name not in OPS]
    if unknown:
        raise ValueError(f"{path}: unknown augmentation op(s) {unknown}; known: {', '.join(OPS)}")
    arrays = {
        k: np.asarray(record[k], np.float32) for k in ("op_logits", "prob_logits", "magnitudes")
    }
    shapes = {a.shape for a in arrays.values()}
    if (
        len(shapes) != 1
        or next(iter(shapes))[-1:] != (len(record["ops"]),)
        or len(next(iter(shapes))) != 3
    ):
        raise ValueError(
            f"{path}: policy arrays must all be [sub_policies, stages, {len(record['ops'])}]"
        )
    return Policy(ops=tuple(record["ops"]), temperature=float(record["temperature"]), **arrays)


@augment_lib.register_example_op("searched_policy")
def searched_policy(augment_config: Any) -> augment_lib.ExampleOp:
    """The policy in `augment_config.policy_file` as an example op on `uint8 [S, S, 3]` images, jitted
    once per image size; the op's key comes from the pipeline's per-example generator."""
    path = str(augment_config.get("policy_file", "") or "")
    if not path:
        raise ValueError(
            "example op 'searched_policy' needs data.augment.policy_file (a JSON written by "
            "tljax.data.trainable_policy.save_policy)"
        )
    policy = load_policy(path)
    apply = jax.jit(lambda image, key: apply_sampled(policy, image, key))

    def op(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        key = jax.random.key(int(rng.integers(0, 2**31 - 1)))
        out = apply(jnp.asarray(image, jnp.float32) / 255.0, key)
        return np.asarray(jnp.round(jnp.clip(out, 0.0, 1.0) * 255.0), np.uint8)

    return op
