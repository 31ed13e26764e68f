"""Transductive adaptation to unlabelled target images: AdaBN and TENT.

The seeds' "attention à la batch normalization: quelles statistiques utilisées?" has two standard answers
that need no target labels:
- **AdaBN** (Li et al. 2016): replace every BN layer's running statistics by the statistics of the target
  images. This is tljax's precise-BN recomputation (`tljax.train.loop.recompute_bn_statistics`) run on
  the target batches for *every* BN layer; with several batches it averages the per-batch statistics
  (the precise-BN convention), with one batch holding all target images it is exactly their mean and
  (biased) variance.
- **TENT** (Wang et al. 2021): normalise with the test batch's statistics and take a few optax steps per
  batch on the mean prediction entropy, with respect to the BN scales and biases only; everything else is
  passed through bitwise unchanged. Online, as in the paper: the adapted affine parameters and the
  optimiser state carry over from batch to batch (call again to reset, e.g. per corruption type).
  Differences from the reference code: dropout and stochastic depth are off during adaptation (the
  reference leaves whatever `model.train()` turns on), and the predictions returned for a batch are made
  *after* its steps (the reference returns those of the forward pass before its single step).

Both functions take images only (normalised, `[B, H, W, 3]`): they cannot see a label.

**Which BN layers to adapt (`layers`).** AdaBN's premise is that a BN layer's running statistics are
those of the data the network was trained on, so that swapping in the target's statistics undoes the
domain shift. That holds for a layer whose statistics were estimated on the training set (every layer
of a `scratch` or `finetune_all` run). It does not hold for a layer whose statistics stayed frozen at the
*pretraining* data's (the lower backbone of `finetune_top`): the layers above were trained on features
normalised with ImageNet's statistics, and re-estimating them on the target shifts every feature the
head was trained on (the README's robustness section has the collapse this caused). So both functions take `layers`, the BN module paths to adapt (default:
all); the others keep their running statistics and affine parameters, in training mode too, exactly as
during training. `tljax.corruption_eval.trained_bn_layers` gives a run's own choice: the layers whose
statistics its BN policy updated on the training data.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from tljax.optim import bn_module_paths, merge_params, split_params
from tljax.train.loop import recompute_bn_statistics
from tljax.typing import PyTree


def bn_affine_paths(variables: PyTree, layers: Sequence[str] | None = None) -> tuple[str, ...]:
    """The leaf paths of the BN layers' scales and biases (`"stem_bn/scale"`, `"stem_bn/bias"`, ...),
    of the BN modules in `layers` only when given."""
    selected = set(bn_module_paths(variables["batch_stats"]) if layers is None else layers)
    flat = traverse_util.flatten_dict(dict(variables["params"]), sep="/")
    paths = tuple(sorted(k for k in flat if k.rsplit("/", 1)[0] in selected))
    if not paths:
        raise ValueError(
            "the model has no BN scale/bias parameters to adapt (TENT needs BatchNorm)"
            + ("" if layers is None else f" in the layers {sorted(selected)}")
        )
    return paths


def adapting(
    model: nn.Module, variables: PyTree, layers: Sequence[str] | None
) -> tuple[nn.Module, tuple[str, ...]]:
    """`model` set up so that in training mode exactly the BN layers in `layers` (default: all) use batch
    statistics, the others their running ones; and those layers as a tuple. An unknown layer, or a
    subset on a model without a `frozen_bn` field, is an error naming the valid layers."""
    every = bn_module_paths(variables["batch_stats"])
    chosen = tuple(every) if layers is None else tuple(layers)
    unknown = sorted(set(chosen) - set(every))
    if unknown:
        raise ValueError(
            f"unknown BN layer(s) to adapt: {unknown[:10]}; the model's BN layers: {every[:40]}"
        )
    kept = [re.escape(path) for path in every if path not in set(chosen)]
    if hasattr(model, "frozen_bn"):
        model = model.clone(frozen_bn=tuple(kept))
    elif kept:
        raise ValueError(
            f"{type(model).__name__} has no frozen_bn field: it can only adapt all of its BN layers"
        )
    return deterministic(model), chosen


def deterministic(model: nn.Module) -> nn.Module:
    """`model` without stochastic depth (a `drop_path_rate` field set to 0), so that training mode means
    only "BN uses batch statistics"; pair it with `no_dropout()` for the `nn.Dropout` layers."""
    if hasattr(model, "drop_path_rate"):
        return model.clone(drop_path_rate=0.0)
    return model


@contextlib.contextmanager
def no_dropout() -> Iterator[None]:
    """Within this context every `nn.Dropout` is the identity, whatever the `train` flag."""

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
            # The identity, as a deterministic Dropout; its `deterministic` attribute may already be set
            # at construction, so it cannot be passed again at call time.
            return args[0] if args else kwargs["inputs"]
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


def adabn(
    model: nn.Module,
    variables: PyTree,
    target_batches: Iterable[jax.Array],
    *,
    layers: Sequence[str] | None = None,
) -> PyTree:
    """AdaBN: `variables` with the running statistics of the BN layers in `layers` (default: every BN
    layer) re-estimated on `target_batches`; the other layers' statistics are kept and used as they are.

    `target_batches` are unlabelled normalised images `[B, H, W, 3]` (equal batch sizes); the parameters
    are returned unchanged. Dropout and stochastic depth are off while the statistics are gathered, so
    the result is deterministic.
    """
    model, layers = adapting(model, variables, layers)
    with no_dropout():
        stats = recompute_bn_statistics(
            model, variables, layers, ({"image": images} for images in target_batches)
        )
    return {**variables, "batch_stats": stats}


def mean_entropy(logits: jax.Array) -> jax.Array:
    """Mean over the batch of the prediction entropy `−Σ p log p` (nats), in fp32."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


DEFAULT_TENT_OPTIMIZER = optax.adam(1e-3)  # one object, so the compiled TENT step is reused


@functools.lru_cache(maxsize=8)
def _tent_step(model: nn.Module, steps: int, tx: optax.GradientTransformation):
    """The jitted `(affine, opt_state, frozen, batch_stats, images) -> (affine, opt_state, logits)`,
    built once per (model, steps, optimiser) so that repeated `tent` calls compile once."""

    def forward(affine_params, frozen, batch_stats, images):
        with no_dropout():
            logits, _ = model.apply(
                {"params": merge_params(affine_params, frozen), "batch_stats": batch_stats},
                images,
                train=True,  # BN normalises with this batch's statistics
                mutable=["batch_stats"],  # the updated running averages are discarded
            )
        return logits

    @jax.jit
    def adapt_batch(affine_params, state, frozen, batch_stats, images):
        def one_step(carry, _):
            params, opt = carry
            entropy, grads = jax.value_and_grad(
                lambda p: mean_entropy(forward(p, frozen, batch_stats, images))
            )(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), entropy

        (affine_params, state), _ = jax.lax.scan(one_step, (affine_params, state), None, steps)
        return affine_params, state, forward(affine_params, frozen, batch_stats, images)

    return adapt_batch


def tent(
    model: nn.Module,
    variables: PyTree,
    target_batches: Iterable[jax.Array],
    *,
    steps: int = 1,
    tx: optax.GradientTransformation | None = None,
    layers: Sequence[str] | None = None,
) -> tuple[list[jax.Array], PyTree]:
    """TENT: adapts the BN scales/biases on each unlabelled batch by entropy minimisation, online.

    Only the BN layers in `layers` (default: all) normalise with the batch's statistics and have their
    scale and bias adapted; the others run on their running statistics, unchanged.

    For each batch of normalised images `[B, H, W, 3]`: `steps` updates of `tx` (default Adam 1e-3, the
    paper's ImageNet-C choice for small batches) on `mean_entropy` of the predictions made with the
    batch's BN statistics, then that batch's logits `[B, classes]` with the adapted parameters. Returns
    the list of logits and the adapted variables (only BN scale/bias differ from `variables`; the running
    statistics are not touched). The step is jitted once per model, `steps` and `tx` for a batch shape.
    """
    if steps < 1:
        raise ValueError(f"tent needs at least one step per batch, got steps={steps}")
    model, layers = adapting(model, variables, layers)
    tx = DEFAULT_TENT_OPTIMIZER if tx is None else tx
    affine, frozen = split_params(variables["params"], bn_affine_paths(variables, layers))
    batch_stats = variables["batch_stats"]
    opt_state = tx.init(affine)
    adapt_batch = _tent_step(model, int(steps), tx)
    outputs = []
    for images in target_batches:
        affine, opt_state, logits = adapt_batch(affine, opt_state, frozen, batch_stats, images)
        outputs.append(logits)
    return outputs, {**variables, "params": merge_params(affine, frozen)}
