"""Parameter rules: first match wins, unmatched is an error, frozen params hold no optimizer state,
weight decay and lr multipliers act exactly as documented."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tljax import models
from tljax.optim import (
    OptimConfig,
    ParamGroup,
    assign_groups,
    build_optimizer,
    frozen_state_leaves,
    merge_params,
    parse_group,
    recipe_rules,
    split_params,
    state_size,
)


def _params():
    return {
        "backbone": {
            "conv": {"kernel": jnp.ones((3, 3, 3, 4)), "bias": jnp.ones(4)},
            "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
        },
        "classifier": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)},
    }


def test_first_match_wins_and_table_counts():
    rules = [
        ("backbone/conv/.*", "frozen"),  # matches first, so the broader rule below never sees conv
        ("backbone/.*", {"lr_mult": 0.1}),
        ("backbone/conv/kernel", {"lr_mult": 5.0}),  # shadowed: matches nothing
        (".*", {}),
    ]
    assignment = assign_groups(_params(), rules)
    assert assignment.groups["backbone/conv/kernel"] == ParamGroup(frozen=True)
    assert assignment.groups["backbone/bn/scale"] == ParamGroup(lr_mult=0.1)
    assert assignment.groups["classifier/kernel"] == ParamGroup()
    assert assignment.num_frozen() == 3 * 3 * 3 * 4 + 4
    assert assignment.num_trainable() == 4 + 4 + 8 + 2
    rows = assignment.table().splitlines()
    assert rows[1].split()[-2:] == ["2", "112"]  # rule 0: 2 tensors, 112 parameters
    assert rows[3].split()[-2:] == ["0", "0"]  # the shadowed rule matched nothing
    assert "trainable 18 / frozen 112 / total 130" in rows[-1]


def test_fullmatch_not_search():
    # "conv" alone must not match "backbone/conv/kernel": rules are full matches over the whole path.
    with pytest.raises(ValueError, match="match no rule"):
        assign_groups(_params(), [("conv", "frozen"), ("classifier/.*", {})])


def test_unmatched_parameters_are_named():
    with pytest.raises(ValueError) as error:
        assign_groups(_params(), [("classifier/.*", {}), ("backbone/bn/.*", "frozen")])
    message = str(error.value)
    assert "2 parameter(s) match no rule" in message
    assert "backbone/conv/kernel" in message and "backbone/conv/bias" in message
    assert "classifier/kernel" not in message and "backbone/bn/scale" not in message


def test_group_forms_and_errors():
    assert parse_group("frozen") == ParamGroup(frozen=True)
    assert parse_group("lr_mult=0.1, weight_decay=0") == ParamGroup(lr_mult=0.1, weight_decay=0.0)
    assert parse_group({"weight_decay": 1e-3}) == ParamGroup(weight_decay=1e-3)
    assert parse_group("") == ParamGroup()
    with pytest.raises(ValueError, match="unknown key"):
        parse_group({"lr_mul": 0.1})
    with pytest.raises(ValueError, match="invalid regex"):
        assign_groups(_params(), [("(", {})])
    with pytest.raises(ValueError, match="empty parameter rule list"):
        assign_groups(_params(), [])


def _step(tx, params, grads, state=None):
    state = tx.init(params) if state is None else state
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def test_frozen_params_have_no_optimizer_state():
    params = _params()
    assignment = assign_groups(params, [("classifier/.*", {}), (".*", "frozen")])
    tx = build_optimizer(OptimConfig(name="adamw", lr=1e-2), assignment, params, total_steps=10)
    state = tx.init(params)
    assert frozen_state_leaves(state, assignment) == []
    # Adam: mu and nu for the 10 classifier scalars, plus one step counter and one schedule counter.
    assert state_size(state) == 2 * 10 + 2
    # Sanity check of the checker itself: a plain adam over everything does own frozen state.
    assert "backbone/conv/kernel" in frozen_state_leaves(optax.adam(1e-2).init(params), assignment)


def test_weight_decay_reads_params_and_skips_frozen():
    params = _params()
    assignment = assign_groups(params, [("classifier/.*", {}), (".*", "frozen")])
    tx = build_optimizer(
        OptimConfig(name="adamw", lr=0.1, weight_decay=0.5, schedule="constant"),
        assignment,
        params,
        total_steps=10,
    )
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    new, _ = _step(tx, params, zero_grads)
    # Decoupled decay with zero gradients: p ← p − lr·wd·p for trainable, untouched for frozen.
    np.testing.assert_allclose(
        new["classifier"]["kernel"], (1 - 0.1 * 0.5) * np.ones((4, 2)), rtol=1e-6
    )
    np.testing.assert_array_equal(
        new["backbone"]["conv"]["kernel"], params["backbone"]["conv"]["kernel"]
    )


def test_lr_mult_and_group_weight_decay_sgd():
    params = _params()
    rules = [
        ("classifier/bias", {"weight_decay": 0.0}),
        ("classifier/.*", {}),
        ("backbone/.*", {"lr_mult": 0.5}),
    ]
    assignment = assign_groups(params, rules)
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.01, schedule="constant")
    tx = build_optimizer(cfg, assignment, params, total_steps=10)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    new, _ = _step(tx, params, grads)
    # torch SGD (coupled L2): p ← p − lr·mult·(g + wd·p)
    np.testing.assert_allclose(new["classifier"]["kernel"], 1 - 0.1 * (2 + 0.01), rtol=1e-6)
    np.testing.assert_allclose(new["classifier"]["bias"], 0 - 0.1 * 2, rtol=1e-6)  # group wd 0
    np.testing.assert_allclose(new["backbone"]["conv"]["kernel"], 1 - 0.05 * (2 + 0.01), rtol=1e-6)


def test_split_merge_roundtrip():
    params = _params()
    trainable, frozen = split_params(params, ["classifier/kernel", "backbone/bn/scale"])
    assert set(jax.tree_util.tree_structure(trainable).node_data()[1]) == {"backbone", "classifier"}
    merged = merge_params(trainable, frozen)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(params)
    with pytest.raises(ValueError, match="present in two trees"):
        merge_params(params, trainable)


def test_recipes_on_a_real_model():
    model = models.get("resnet18", num_classes=4)
    params = jax.eval_shape(model.init, jax.random.key(0, impl="rbg"), jnp.zeros((1, 32, 32, 3)))[
        "params"
    ]
    top2 = assign_groups(params, recipe_rules("finetune_top", model.stages(), trainable_stages=2))
    trainable = {p.split("/")[0] for p in top2.trainable_paths()}
    assert trainable == {"classifier", "layer4_0", "layer4_1"}
    assert {p.split("/")[0] for p in top2.frozen_paths()} == {
        "conv1",
        "bn1",
        *(f"layer{i}_{j}" for i in (1, 2, 3) for j in (0, 1)),
    }
    fe = assign_groups(params, recipe_rules("feature_extractor", model.stages()))
    assert fe.num_trainable() == 512 * 4 + 4
    decay = assign_groups(params, recipe_rules("finetune_all", model.stages(), layer_decay=0.5))
    assert decay.groups["classifier/kernel"].lr_mult == 1.0
    assert decay.groups["layer4_1/conv2/kernel"].lr_mult == 0.5
    assert decay.groups["conv1/kernel"].lr_mult == 0.5**5  # stem: 5 stages below the head
    with pytest.raises(ValueError, match="trainable_stages"):
        recipe_rules("finetune_top", model.stages(), trainable_stages=0)


def test_schedules():
    from tljax.optim import learning_rate_schedule

    cosine = learning_rate_schedule(OptimConfig(lr=0.2, schedule="cosine"), total_steps=100)
    np.testing.assert_allclose([cosine(0), cosine(50), cosine(100)], [0.2, 0.1, 0.0], atol=1e-7)
    warm = learning_rate_schedule(
        OptimConfig(lr=0.2, schedule="cosine", warmup_steps=10), total_steps=110
    )
    np.testing.assert_allclose(
        [warm(0), warm(5), warm(10), warm(110)], [0.0, 0.1, 0.2, 0.0], atol=1e-7
    )
    constant = learning_rate_schedule(
        OptimConfig(lr=0.2, schedule="constant", warmup_steps=4), total_steps=10
    )
    np.testing.assert_allclose([constant(2), constant(9)], [0.1, 0.2], atol=1e-7)
