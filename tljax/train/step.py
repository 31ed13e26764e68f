"""The jit-compiled train and eval steps.

The train step differentiates with respect to the *trainable* parameters only: the parameter tree is
split by path, `jax.value_and_grad` sees the trainable half as its argument and the frozen half as a
constant, and the two are merged for the forward pass. With a frozen backbone JAX therefore never builds
the backbone's backward pass (the benchmark measures the saving), and frozen parameters are passed
through untouched, so they are bitwise identical after any number of steps.

Both steps count their traces (`step.trace_count`): with fixed batch shapes the train step must trace
exactly once, and a test asserts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from tljax.data.augment.augmix import jsd_consistency
from tljax.data.augment.device import DeviceAugment
from tljax.optim import merge_params, split_params
from tljax.train.state import TrainState, wrap_key
from tljax.typing import PyTree


class CountedJit:
    """A jitted function plus the number of times JAX traced it (Python bodies run once per trace)."""

    def __init__(self, fn: Callable, **jit_kwargs):
        self.trace_count = 0

        def counted(*args, **kwargs):
            self.trace_count += 1
            return fn(*args, **kwargs)

        self._jitted = jax.jit(counted, **jit_kwargs)

    def __call__(self, *args, **kwargs):
        return self._jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self._jitted.lower(*args, **kwargs)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy in fp32 (bf16 logits are upcast first). [B]"""
    logits = logits.astype(jnp.float32)
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    trainable_paths: Sequence[str],
    *,
    label_smoothing: float = 0.0,
    state_sharding: PyTree | None = None,
    batch_sharding: Any | None = None,
    augment: DeviceAugment | None = None,
) -> CountedJit:
    """`step(state, batch) -> (state, metrics)`, jitted, donating the old state's buffers.

    `batch` is `{"image": float32 [B, H, W, 3], "label": int32 [B]}`; metrics are device scalars
    `loss`, `accuracy` (fetched lazily by the loop: no host round trip inside a step). With
    `state_sharding` (a tree of shardings like the state) and `batch_sharding` (`tljax.parallel`), the
    step is one SPMD program over the mesh: the state keeps its sharding, the metrics are replicated, and
    every mean over the batch (loss, gradients, BatchNorm statistics) is over the global batch.

    With `augment` (`tljax.data.augment.device`), the batch is augmented first, inside the step, with
    the key `fold_in(fold_in(rng, step), 1)` (so a resumed run draws what an uninterrupted one did); the
    loss is then the cross-entropy against its soft `target` on the first B images (label smoothing is
    already in the targets), plus `jsd_weight` times AugMix's Jensen–Shannon term over the clean and two
    augmented thirds when it returns 3 views.
    """
    trainable_paths = tuple(trainable_paths)

    def step(
        state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        trainable, frozen = split_params(state.params, trainable_paths)
        dropout_key = jax.random.fold_in(wrap_key(state.rng), state.step)
        if augment is not None:
            batch = augment(batch, jax.random.fold_in(dropout_key, 1))
        batch_size = batch["label"].shape[0]

        def loss_fn(trainable_params: PyTree):
            variables = {"params": merge_params(trainable_params, frozen)}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            logits, updated = model.apply(
                variables,
                batch["image"],
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": dropout_key},
            )
            if augment is None:
                loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
                return loss, (logits, updated)
            logits = logits.astype(jnp.float32)
            clean = logits[:batch_size]
            loss = optax.softmax_cross_entropy(clean, batch["target"]).mean()
            if augment.jsd_weight is not None:
                loss = loss + augment.jsd_weight * jsd_consistency(*jnp.split(logits, 3))
            return loss, (clean, updated)

        (loss, (logits, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        # The optimizer is partitioned over the full tree; frozen slots get zeros that set_to_zero ignores
        # (and a clip's global norm does not see), and XLA drops them as dead code.
        full_grads = merge_params(grads, jax.tree.map(jnp.zeros_like, frozen))
        updates, opt_state = tx.update(full_grads, state.opt_state, state.params)
        trainable_updates, _ = split_params(updates, trainable_paths)
        # Frozen leaves are taken from the input, not from p + 0 (which would turn -0.0 into +0.0).
        params = merge_params(optax.apply_updates(trainable, trainable_updates), frozen)
        new_state = dataclasses.replace(  # flax.struct dataclasses are dataclasses
            state,
            step=state.step + 1,
            params=params,
            batch_stats=updated.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return new_state, {"loss": loss, "accuracy": accuracy}

    shardings = {}
    if state_sharding is not None and batch_sharding is not None:
        replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
        shardings = dict(
            in_shardings=(state_sharding, batch_sharding),
            out_shardings=(state_sharding, replicated),
        )
    return CountedJit(step, donate_argnums=(0,), **shardings)


def make_eval_step(
    model: nn.Module, variables_sharding: PyTree | None = None, batch_sharding: Any | None = None
) -> CountedJit:
    """`eval_step(variables, images, labels, mask) -> (loss_sum, correct_sum, predictions [B])`.

    The loop pads the last batch to the fixed batch size and masks the padding, so eval traces once too.
    With shardings (see `make_train_step`), the sums are replicated and the predictions batch-sharded.
    """

    def eval_step(variables: PyTree, images: jax.Array, labels: jax.Array, mask: jax.Array):
        # Without `mutable`, apply returns the output alone (flax types it as output-or-(output, vars)).
        logits = cast(jax.Array, model.apply(variables, images, train=False))
        losses = cross_entropy(logits, labels)
        predictions = jnp.argmax(logits, -1)
        mask = mask.astype(jnp.float32)
        return jnp.sum(losses * mask), jnp.sum((predictions == labels) * mask), predictions

    shardings = {}
    if variables_sharding is not None and batch_sharding is not None:
        replicated = NamedSharding(batch_sharding.mesh, PartitionSpec())
        shardings = dict(
            in_shardings=(variables_sharding, batch_sharding, batch_sharding, batch_sharding),
            out_shardings=(replicated, replicated, batch_sharding),
        )
    return CountedJit(eval_step, **shardings)
