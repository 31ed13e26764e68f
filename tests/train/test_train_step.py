"""The jitted train step: frozen parameters bitwise unchanged, no frozen optimizer state, BN statistics
frozen/updated per policy, one trace only, no backward pass through a frozen backbone, bf16 compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_model

from tljax import optim
from tljax.train import TrainState, make_train_step
from tljax.train.state import make_key


def _batch(seed=0, n=8, size=16):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "label": (np.arange(n) % 4).astype(np.int32),
    }


def _setup(rules, bn_rules=None, dtype=jnp.float32, lr=0.05):
    model = tiny_model.TinyCNN(dtype=dtype)
    variables = model.init(make_key(0), jnp.zeros((1, 16, 16, 3)))
    variables = {k: dict(v) for k, v in variables.items()}
    # A negative zero in a frozen parameter: p + 0.0 would turn it into +0.0, merging must not.
    variables["params"]["stem_conv"]["bias"] = (
        variables["params"]["stem_conv"]["bias"].at[0].set(-0.0)
    )
    assignment = optim.assign_groups(variables["params"], rules)
    decisions = optim.resolve_bn_policy(
        optim.bn_module_paths(variables["batch_stats"]), bn_rules, assignment
    )
    model = model.clone(frozen_bn=optim.frozen_bn_field(decisions))
    tx = optim.build_optimizer(
        optim.OptimConfig(lr=lr, weight_decay=0.1, grad_clip=1.0),
        assignment,
        variables["params"],
        total_steps=10,
    )
    state = TrainState.create(
        variables["params"], variables["batch_stats"], tx.init(variables["params"]), 0
    )
    return model, assignment, decisions, tx, state


def _host(tree):
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


FROZEN_STEM = [("classifier/.*", {}), ("block1_.*", {"lr_mult": 0.5}), (".*", "frozen")]


def test_frozen_bitwise_unchanged_and_single_trace():
    model, assignment, decisions, tx, state = _setup(FROZEN_STEM)
    before = _host({"params": state.params, "batch_stats": state.batch_stats})
    step = make_train_step(model, tx, assignment.trainable_paths())
    for i in range(4):
        state, metrics = step(state, _batch(i))
    assert step.trace_count == 1  # fixed shapes: traced once, then reused
    after = _host({"params": state.params, "batch_stats": state.batch_stats})
    for path in ("stem_conv/kernel", "stem_conv/bias", "stem_bn/scale", "stem_bn/bias"):
        a, b = path.split("/")
        assert before["params"][a][b].tobytes() == after["params"][a][b].tobytes(), path
    assert np.signbit(after["params"]["stem_conv"]["bias"][0])  # -0.0 survived
    for path in ("classifier/kernel", "block1_conv/kernel", "block1_bn/scale"):
        a, b = path.split("/")
        assert not np.array_equal(before["params"][a][b], after["params"][a][b]), path
    # BN policy default: statistics frozen where scale/bias are frozen, updated where they train.
    assert decisions == {"stem_bn": "frozen", "block1_bn": "update"}
    for stat in ("mean", "var"):
        assert (
            before["batch_stats"]["stem_bn"][stat].tobytes()
            == after["batch_stats"]["stem_bn"][stat].tobytes()
        )
        assert not np.allclose(
            before["batch_stats"]["block1_bn"][stat], after["batch_stats"]["block1_bn"][stat]
        )
    # The optimizer state after training still holds nothing for frozen parameters.
    assert optim.frozen_state_leaves(state.opt_state, assignment) == []
    assert int(state.step) == 4 and np.isfinite(float(metrics["loss"]))


def test_bn_statistics_policy_is_independent_of_the_optimizer():
    # Everything trains, but explicit BN rules freeze block1's statistics and update the stem's.
    model, assignment, decisions, tx, state = _setup(
        [(".*", {})], bn_rules=[("block1_bn", "frozen"), (".*", "update")]
    )
    before = _host(state.batch_stats)
    step = make_train_step(model, tx, assignment.trainable_paths())
    state, _ = step(state, _batch())
    after = _host(state.batch_stats)
    assert before["block1_bn"]["mean"].tobytes() == after["block1_bn"]["mean"].tobytes()
    assert not np.allclose(before["stem_bn"]["mean"], after["stem_bn"]["mean"])
    with pytest.raises(ValueError, match="stem_bn"):
        optim.resolve_bn_policy(["stem_bn", "block1_bn"], [("block1_bn", "frozen")])
    assert optim.frozen_bn_field({"a": "frozen", "b/c": "frozen"}) == (".*",)
    assert optim.frozen_bn_field({"a": "update", "b/c": "frozen"}) == (r"b/c",)


def test_no_backward_pass_through_a_frozen_backbone():
    """Differentiating only the trainable subtree: the compiled step of a frozen-backbone recipe does
    far fewer FLOPs than the all-trainable one (XLA's own cost analysis)."""
    flops = {}
    for name, rules in (
        ("frozen", [("classifier/.*", {}), (".*", "frozen")]),
        ("full", [(".*", {})]),
    ):
        model, assignment, _, tx, state = _setup(rules)
        step = make_train_step(model, tx, assignment.trainable_paths())
        analysis = step.lower(state, _batch(size=32)).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
        flops[name] = analysis["flops"]
    # Backward of the convs is ~2× their forward; with a frozen backbone it disappears.
    assert flops["frozen"] < 0.6 * flops["full"], flops


def test_bf16_compute_keeps_fp32_params():
    model, assignment, _, tx, state = _setup([(".*", {})], dtype=jnp.bfloat16)
    step = make_train_step(model, tx, assignment.trainable_paths())
    for i in range(2):
        state, metrics = step(state, _batch(i))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))


def test_precise_bn_recovers_the_batch_statistics():
    """`recompute_bn_statistics` gives exactly the batch mean/var of each updating BN layer, whatever the
    layer's momentum, and leaves frozen layers alone."""
    import flax.linen as nn

    from tljax.train.loop import recompute_bn_statistics

    model, _, _, _, state = _setup(
        [(".*", {})], bn_rules=[("block1_bn", "frozen"), (".*", "update")]
    )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batches = [_batch(0), _batch(1)]
    stats = recompute_bn_statistics(model, variables, ["stem_bn"], batches)
    conv = nn.Conv(8, (3, 3), strides=(2, 2))
    outputs = [conv.apply({"params": state.params["stem_conv"]}, b["image"]) for b in batches]
    expected_mean = np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0)
    expected_var = np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0)
    np.testing.assert_allclose(stats["stem_bn"]["mean"], expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["stem_bn"]["var"], expected_var, rtol=1e-4, atol=1e-5)
    assert (
        np.asarray(stats["block1_bn"]["mean"]).tobytes()
        == np.asarray(state.batch_stats["block1_bn"]["mean"]).tobytes()
    )
