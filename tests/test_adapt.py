"""AdaBN and TENT: label-free, exact statistics, and only the BN affine parameters move."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from tests.train import tiny_model
from tljax import adapt
from tljax.train.state import make_key


def _model_and_variables():
    model = tiny_model.TinyCNN()
    variables = model.init(make_key(0), jnp.zeros((1, 16, 16, 3)))
    return model, {k: dict(v) for k, v in variables.items()}


def _target(seed: int, n: int = 16) -> np.ndarray:
    # Shifted and rescaled: the "target domain" statistics differ from the initial running ones.
    return (np.random.default_rng(seed).normal(size=(n, 16, 16, 3)) * 2.0 + 0.7).astype(np.float32)


def _flat(tree):
    return traverse_util.flatten_dict(dict(tree), sep="/")


def test_adabn_statistics_equal_numpy_at_every_bn_layer():
    model, variables = _model_and_variables()
    target = _target(0)
    adapted = adapt.adabn(model, variables, [jnp.asarray(target)])
    # Each BN's input is its conv's output in the training-mode pass over the target images.
    _, state = model.apply(
        variables,
        target,
        train=True,
        capture_intermediates=True,
        mutable=["batch_stats", "intermediates"],
        rngs={"dropout": jax.random.key(0)},
    )
    conv_outputs = state["intermediates"]
    feeding = {"stem_bn": "stem_conv", "block1_bn": "block1_conv"}
    assert set(adapt.bn_module_paths(variables["batch_stats"])) == set(feeding)
    for bn, conv in feeding.items():
        x = np.asarray(conv_outputs[conv]["__call__"][0], np.float64)
        np.testing.assert_allclose(
            adapted["batch_stats"][bn]["mean"], x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            adapted["batch_stats"][bn]["var"], x.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5
        )
        assert not np.allclose(
            adapted["batch_stats"][bn]["var"], variables["batch_stats"][bn]["var"]
        )
    assert adapted["params"] is variables["params"]
    # Adapted running statistics make the eval-mode network the batch-statistics network.
    eval_logits = model.apply(adapted, target, train=False)
    with adapt.no_dropout():
        batch_logits, _ = model.apply(variables, target, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(eval_logits, batch_logits, rtol=1e-4, atol=1e-4)


def test_no_dropout_makes_training_mode_deterministic():
    model, variables = _model_and_variables()
    x = _target(1, n=4)
    with adapt.no_dropout():
        a, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    with_dropout, _ = model.apply(
        variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
    )
    assert not np.allclose(a, with_dropout)  # the interceptor is what removed the noise


def test_tent_changes_only_bn_affine_lowers_entropy_and_sees_no_label():
    model, variables = _model_and_variables()
    batches = [jnp.asarray(_target(s, n=8)) for s in range(3)]
    # Images only: the function's inputs hold no label to look at.
    logits, adapted = adapt.tent(model, variables, batches, steps=3, tx=optax.adam(0.05))
    assert len(logits) == 3 and logits[0].shape == (8, 4)
    before, after = _flat(variables["params"]), _flat(adapted["params"])
    assert before.keys() == after.keys()
    affine = set(adapt.bn_affine_paths(variables))
    assert affine == {f"{bn}/{p}" for bn in ("stem_bn", "block1_bn") for p in ("scale", "bias")}
    for path in before:
        same = np.asarray(before[path]).tobytes() == np.asarray(after[path]).tobytes()
        assert same == (path not in affine), path
    for path in _flat(variables["batch_stats"]):
        assert (
            np.asarray(_flat(variables["batch_stats"])[path]).tobytes()
            == np.asarray(_flat(adapted["batch_stats"])[path]).tobytes()
        )

    def entropy(v):
        with adapt.no_dropout():
            out = [model.apply(v, b, train=True, mutable=["batch_stats"])[0] for b in batches]
        return float(np.mean([adapt.mean_entropy(o) for o in out]))

    assert entropy(adapted) < entropy(variables) - 1e-3
    # The returned logits are the adapted network's on each batch (batch statistics, no dropout).
    with adapt.no_dropout():
        expected, _ = model.apply(adapted, batches[-1], train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits[-1], expected, rtol=1e-5, atol=1e-5)
    again, _ = adapt.tent(model, variables, batches, steps=3, tx=optax.adam(0.05))
    assert np.asarray(again[-1]).tobytes() == np.asarray(logits[-1]).tobytes()


def test_mean_entropy_matches_numpy():
    logits = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        adapt.mean_entropy(logits), -(p * np.log(p)).sum(-1).mean(), rtol=1e-5
    )


def test_tent_refuses_a_model_without_bn():
    dense = nn.Dense(3)
    variables = {"params": dense.init(make_key(0), jnp.zeros((1, 4)))["params"], "batch_stats": {}}
    try:
        adapt.tent(dense, variables, [jnp.zeros((2, 4))])
    except ValueError as e:
        assert "no BN scale/bias" in str(e)
    else:
        raise AssertionError("tent accepted a model without BatchNorm")


def test_adabn_of_some_layers_keeps_the_others_and_feeds_them_running_statistics():
    # finetune_top's case: stem_bn stands for the frozen backbone (pretraining statistics), block1_bn
    # for a trained top layer. Only block1_bn is re-estimated, on inputs computed with stem_bn's
    # running statistics: the inference-mode features the layers above were trained on.
    model, variables = _model_and_variables()
    with_stem_stats = {
        **variables,
        "batch_stats": {
            **variables["batch_stats"],
            "stem_bn": {"mean": jnp.full((8,), 0.3), "var": jnp.full((8,), 2.5)},
        },
    }
    target = _target(2)
    adapted = adapt.adabn(model, with_stem_stats, [jnp.asarray(target)], layers=("block1_bn",))
    for leaf in ("mean", "var"):
        assert (
            np.asarray(adapted["batch_stats"]["stem_bn"][leaf]).tobytes()
            == np.asarray(with_stem_stats["batch_stats"]["stem_bn"][leaf]).tobytes()
        )
    _, state = model.apply(
        with_stem_stats, target, train=False, capture_intermediates=True, mutable=["intermediates"]
    )
    x = np.asarray(state["intermediates"]["block1_conv"]["__call__"][0], np.float64)
    stats = adapted["batch_stats"]["block1_bn"]
    np.testing.assert_allclose(stats["mean"], x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], x.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    # Adapting every layer instead moves stem_bn too: a different network.
    everything = adapt.adabn(model, with_stem_stats, [jnp.asarray(target)])
    assert not np.allclose(everything["batch_stats"]["block1_bn"]["var"], stats["var"])


def test_tent_of_some_layers_moves_only_their_affine_parameters():
    model, variables = _model_and_variables()
    batches = [jnp.asarray(_target(s, n=8)) for s in range(2)]
    logits, adapted = adapt.tent(
        model, variables, batches, steps=3, tx=optax.adam(0.05), layers=("block1_bn",)
    )
    before, after = _flat(variables["params"]), _flat(adapted["params"])
    moved = {path for path in before if before[path].tobytes() != np.asarray(after[path]).tobytes()}
    assert moved == {"block1_bn/scale", "block1_bn/bias"}
    # stem_bn normalised with its running statistics throughout: the eval-mode stem.
    kept = model.clone(frozen_bn=("stem_bn",))
    with adapt.no_dropout():
        expected, _ = kept.apply(adapted, batches[-1], train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits[-1], expected, rtol=1e-5, atol=1e-5)


def test_adapting_an_unknown_layer_names_the_valid_ones():
    model, variables = _model_and_variables()
    for call in (adapt.adabn, lambda *a, **k: adapt.tent(*a, **k)):
        try:
            call(model, variables, [jnp.zeros((2, 16, 16, 3))], layers=("block9_bn",))
        except ValueError as e:
            assert "block9_bn" in str(e) and "stem_bn" in str(e) and "block1_bn" in str(e)
        else:
            raise AssertionError("an unknown BN layer was accepted")
