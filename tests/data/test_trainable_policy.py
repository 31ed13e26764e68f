"""The trainable (Faster AutoAugment) policy: exact gradients, reference ops, a reproducible search."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tljax.data import augment as augment_lib
from tljax.data import trainable_policy as tp


def _images(n=4, h=10, w=12, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, h, w, 3)))


def test_relaxed_gradients_match_finite_differences():
    """d(loss)/d(magnitude), d/d(probability logit) and d/d(op logit) of the relaxed forward equal
    central differences, for differentiable ops (float64, fixed random draws). Pixels in [0.4, 0.6] and
    magnitudes in [0.35, 0.65] keep the colour ops away from their clipping kinks."""
    ops = ("translate_x", "rotate", "contrast", "brightness")
    with jax.enable_x64(True):
        x = 0.4 + 0.2 * _images().astype(jnp.float64)
        weights = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
        rng = np.random.default_rng(2)
        params = {
            "op_logits": jnp.asarray(rng.normal(size=(1, 2, 4)) * 0.02),
            "prob_logits": jnp.asarray(rng.normal(size=(1, 2, 4))),
            "magnitudes": jnp.asarray(rng.uniform(0.35, 0.65, size=(1, 2, 4))),
        }
        key = jax.random.key(0)

        @jax.jit
        def loss(p):
            return jnp.sum(weights * tp.apply_relaxed(p, x, key, ops, temperature=0.5))

        grads = jax.jit(jax.grad(loss))(params)
        eps = 1e-6
        for name in params:
            for index in np.ndindex(params[name].shape):
                up = {**params, name: params[name].at[index].add(eps)}
                down = {**params, name: params[name].at[index].add(-eps)}
                numeric = (loss(up) - loss(down)) / (2 * eps)
                np.testing.assert_allclose(
                    grads[name][index], numeric, rtol=1e-4, atol=1e-6, err_msg=f"{name}{index}"
                )
        assert np.all(np.abs(np.asarray(grads["magnitudes"])) > 0)


@pytest.mark.parametrize("name", tp.STRAIGHT_THROUGH)
def test_straight_through_ops_pass_the_magnitude_gradient(name):
    """Solarize/posterize are piecewise constant in m; their estimator's gradient is Σ upstream."""
    x = _images()
    weights = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
    grad = jax.grad(lambda m: jnp.sum(weights * tp.OPS[name](x, m)))(jnp.float32(0.4))
    np.testing.assert_allclose(grad, float(weights.sum()), rtol=1e-5)


def test_ops_match_numpy_references():
    x = _images(h=10, w=20)
    xn = np.asarray(x)
    # translate_x by exactly one pixel: 0.45·20·(2m − 1) = 1; the output samples the input one column on.
    m = (1 + 1 / 9) / 2
    shifted = np.asarray(tp.translate_x(x, jnp.float32(m)))
    np.testing.assert_allclose(shifted[:, :, :-1], xn[:, :, 1:], atol=1e-4)
    np.testing.assert_allclose(shifted[:, :, -1], 0.0, atol=1e-6)
    down = np.asarray(tp.translate_y(x, jnp.float32((1 + 1 / 4.5) / 2)))  # 0.45·10·(2m − 1) = 1
    np.testing.assert_allclose(down[:, :-1], xn[:, 1:], atol=1e-4)
    # posterize at m = 1 keeps 2 bits: the 8-bit values floored to multiples of 64 (never the identity).
    poster = np.asarray(tp.posterize(x, jnp.float32(1.0)))
    expected = np.floor(np.round(xn * 255) / 64) * 64 / 255
    np.testing.assert_allclose(poster, expected, atol=1e-6)
    assert len(np.unique(np.round(poster * 255))) <= 4
    solar = np.asarray(tp.solarize(x, jnp.float32(0.3)))
    np.testing.assert_allclose(solar, np.where(xn >= 0.7, 1 - xn, xn), atol=1e-6)
    luma = xn @ np.array([0.299, 0.587, 0.114])
    sat = np.asarray(tp.saturation(x, jnp.float32(0.25)))  # factor 0.55
    np.testing.assert_allclose(
        sat, np.clip(luma[..., None] + 0.55 * (xn - luma[..., None]), 0, 1), atol=1e-5
    )


def test_search_changes_the_policy_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(32, 8, 8, 3)) * 255).astype(np.uint8)
    labels = np.arange(32) % 2
    config = tp.SearchConfig(
        steps=3, batch_size=8, sub_policies=2, ops=("translate_x", "solarize", "contrast")
    )
    first, history = tp.search_policy(images, labels, 2, config, seed=5)
    second, _ = tp.search_policy(images, labels, 2, config, seed=5)
    init = tp.init_policy(2, 2, config.ops, seed=5)
    for field in ("op_logits", "prob_logits", "magnitudes"):
        assert getattr(first, field).tobytes() == getattr(second, field).tobytes(), field
        assert not np.array_equal(getattr(first, field), getattr(init, field)), field
    assert len(history) == 3 and all(np.isfinite(list(h.values())).all() for h in history)

    path = tmp_path / "policy.json"
    tp.save_policy(str(path), first)
    loaded = tp.load_policy(str(path))
    assert loaded.ops == first.ops
    np.testing.assert_array_equal(loaded.magnitudes, first.magnitudes)
    # Used like any other augmentation: an example op from the config.
    augment_config = ml_collections.ConfigDict(
        {"example_ops": ("searched_policy",), "policy_file": str(path)}
    )
    (op,) = augment_lib.build_example_ops(augment_config)
    out_a = op(images[0], np.random.default_rng(7))
    out_b = op(images[0], np.random.default_rng(7))
    assert out_a.dtype == np.uint8 and out_a.shape == images[0].shape
    assert np.array_equal(out_a, out_b)


def test_bad_policy_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown augmentation op.*known: shear_x"):
        tp.init_policy(ops=("shear_x", "fog"))
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": tp.FORMAT, "ops": ["equalise"]}))
    with pytest.raises(ValueError, match="unknown augmentation op"):
        tp.load_policy(str(path))
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a tljax.trainable_policy/1 policy file"):
        tp.load_policy(str(path))
    with pytest.raises(ValueError, match="needs data.augment.policy_file"):
        augment_lib.build_example_ops(
            ml_collections.ConfigDict({"example_ops": ("searched_policy",), "policy_file": ""})
        )
