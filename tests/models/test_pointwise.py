"""1×1 convolutions as matrix products: the same parameters and numbers as `nn.Conv`, gradients included."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.torch_oracle import relative_error
from tljax.models.conv import Conv, pointwise_matmul


def _reference(x, kernel, stride):
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize("stride,size", [(1, (9, 11)), (2, (9, 11)), (2, (8, 8))])
def test_forward_and_both_gradients_match_the_convolution(stride, size):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, *size, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((1, 1, 6, 5)), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda x, k: pointwise_matmul(x, k, (stride, stride)), x, kernel)
    ref, ref_vjp = jax.vjp(lambda x, k: _reference(x, k, stride), x, kernel)
    assert ours.shape == ref.shape
    assert relative_error(ours, ref) <= 1e-6
    g = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
    for a, b in zip(ours_vjp(g), ref_vjp(g)):
        assert relative_error(a, b) <= 1e-6


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_module_is_a_drop_in_for_nn_conv(dtype):
    x = jax.random.normal(jax.random.key(1), (2, 7, 7, 8))
    ours = Conv(4, (1, 1), strides=2, padding=0, use_bias=True, dtype=dtype)
    ref = nn.Conv(4, (1, 1), strides=(2, 2), padding=0, use_bias=True, dtype=dtype)
    v_ours, v_ref = ours.init(jax.random.key(2), x), ref.init(jax.random.key(2), x)
    jax.tree_util.tree_map(np.testing.assert_array_equal, v_ours, v_ref)  # same tree, same init
    y_ours, y_ref = ours.apply(v_ref, x), ref.apply(v_ref, x)
    assert y_ours.dtype == y_ref.dtype == dtype
    assert relative_error(y_ours, y_ref) <= (1e-6 if dtype == jnp.float32 else 1e-2)
