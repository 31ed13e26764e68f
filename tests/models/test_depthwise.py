"""The CPU shifted-slice depthwise convolution against XLA's grouped convolution, forward and both gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax.models.conv import Conv
from tljax.models.depthwise import grouped_conv_depthwise, shifted_depthwise_vjp

TOLERANCE = 1e-5


def _relative(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float32), np.asarray(reference, np.float32)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def _inputs(kernel: int, height: int, width: int, channels: int = 7, dtype=jnp.float32):
    rng = np.random.default_rng(kernel * 100 + height)
    x = jnp.asarray(rng.standard_normal((2, height, width, channels)), dtype)  # [B, H, W, C]
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 1, channels)), dtype)  # [k, k, 1, C]
    return x, w, rng


def _value_and_vjp(fn, x, w, stride, g=None):
    out, vjp = jax.vjp(lambda x, w: fn(x, w, stride), x, w)
    return out, vjp(out if g is None else g)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("height,width", [(9, 11), (12, 13), (5, 7)])
def test_matches_grouped_conv(kernel, stride, height, width):
    x, w, rng = _inputs(kernel, height, width)
    reference = jax.jit(grouped_conv_depthwise, static_argnums=2)(x, w, stride)
    g = jnp.asarray(rng.standard_normal(reference.shape), jnp.float32)
    ref_out, (ref_dx, ref_dw) = _value_and_vjp(grouped_conv_depthwise, x, w, stride, g)
    out, (dx, dw) = jax.jit(lambda x, w, g: _value_and_vjp(shifted_depthwise_vjp, x, w, stride, g))(
        x, w, g
    )
    assert out.shape == ref_out.shape and dx.shape == x.shape and dw.shape == w.shape
    assert _relative(out, ref_out) <= TOLERANCE
    assert _relative(dx, ref_dx) <= TOLERANCE
    assert _relative(dw, ref_dw) <= TOLERANCE


def test_kernel_gradient_chunked_over_batch():
    """A batch too large for one cache-sized chunk takes the `lax.scan` path; same numbers."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 36, 36, 96)), jnp.float32)  # 0.5 MB per image
    w = jnp.asarray(rng.standard_normal((5, 5, 1, 96)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((6, 16, 16, 96)), jnp.float32)
    _, (_, ref_dw) = _value_and_vjp(grouped_conv_depthwise, x, w, 2, g)
    _, (_, dw) = _value_and_vjp(shifted_depthwise_vjp, x, w, 2, g)
    assert _relative(dw, ref_dw) <= TOLERANCE


@pytest.mark.parametrize("stride", [1, 2])
def test_bfloat16_close_to_float32(stride):
    x, w, rng = _inputs(5, 13, 11)
    reference = grouped_conv_depthwise(x, w, stride)
    g = jnp.asarray(rng.standard_normal(reference.shape), jnp.float32)
    _, (ref_dx, ref_dw) = _value_and_vjp(grouped_conv_depthwise, x, w, stride, g)
    bf16 = (x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
    out, (dx, dw) = _value_and_vjp(shifted_depthwise_vjp, *bf16, stride, g.astype(jnp.bfloat16))
    assert out.dtype == dx.dtype == dw.dtype == jnp.bfloat16
    # bf16 inputs carry ~3 significant digits; accumulation is float32, so errors stay at that level.
    assert _relative(out, reference) <= 2e-2
    assert _relative(dx, ref_dx) <= 2e-2
    assert _relative(dw, ref_dw) <= 2e-2


@pytest.mark.parametrize(
    "dtype,param_dtype", [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.float32)]
)
def test_module_is_a_drop_in_for_grouped_nn_conv(dtype, param_dtype):
    """Same param name, shape, init and dtypes as nn.Conv(feature_group_count=C); same outputs."""
    channels, kernel, stride = 12, 5, 2
    init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    conv = nn.Conv(
        channels,
        (kernel, kernel),
        strides=(stride, stride),
        padding="VALID",
        use_bias=False,
        feature_group_count=channels,
        kernel_init=init,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    ours = Conv(
        channels,
        (kernel, kernel),
        strides=stride,
        padding="VALID",
        use_bias=False,
        feature_group_count=channels,
        kernel_init=init,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 15, 17, channels)), jnp.float32)
    key = jax.random.PRNGKey(0)
    conv_vars, our_vars = conv.init(key, x), ours.init(key, x)
    assert jax.tree_util.tree_structure(conv_vars) == jax.tree_util.tree_structure(our_vars)
    np.testing.assert_array_equal(conv_vars["params"]["kernel"], our_vars["params"]["kernel"])
    assert our_vars["params"]["kernel"].dtype == param_dtype
    out, ref = ours.apply(our_vars, x), conv.apply(conv_vars, x)
    assert out.dtype == ref.dtype == dtype and out.shape == ref.shape
    assert _relative(out, ref) <= (TOLERANCE if dtype == jnp.float32 else 2e-2)
