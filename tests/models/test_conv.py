"""The conv switch: the kernel is chosen for the platform a computation is lowered for, not at trace time."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tljax.models as models
from tests.models.torch_oracle import relative_error
from tljax.models.conv import Conv, conv_nhwc

# (kernel shape [kh, kw, C/groups, O], feature_group_count, strides, padding) on x [2, 9, 11, 6]
CASES = {
    "pointwise": ((1, 1, 6, 5), 1, 2, "VALID"),
    "depthwise": ((3, 3, 1, 6), 6, 2, "SAME"),
    "dense3x3": ((3, 3, 6, 5), 1, 1, ((1, 1), (1, 1))),
}


def _case(name):
    kernel_shape, groups, strides, padding = CASES[name]
    rng = np.random.default_rng(len(name))
    x = jnp.asarray(rng.standard_normal((2, 9, 11, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal(kernel_shape), jnp.float32)

    def loss(x, kernel):  # forward and both gradients, so the backward kernels are lowered too
        return jnp.sum(conv_nhwc(x, kernel, strides, padding, groups) ** 2)

    return jax.value_and_grad(loss, argnums=(0, 1)), x, kernel


def _hlo(fn, *args, platforms=None) -> str:
    lowered = jax.jit(fn).trace(*args)
    if platforms is None:
        return lowered.lower().as_text()
    return lowered.lower(lowering_platforms=platforms).as_text()


@pytest.mark.parametrize("name", ["pointwise", "depthwise"])
def test_lowered_for_cpu_runs_the_cpu_kernel_and_for_cuda_the_convolution(name):
    fn, x, kernel = _case(name)
    cpu, cuda = _hlo(fn, x, kernel, platforms=("cpu",)), _hlo(fn, x, kernel, platforms=("cuda",))
    assert "stablehlo.convolution" not in cpu
    if name == "pointwise":
        assert "stablehlo.dot_general" in cpu and "stablehlo.dot_general" not in cuda
    assert "stablehlo.convolution" in cuda


def test_other_convolutions_are_xla_convolutions_everywhere():
    fn, x, kernel = _case("dense3x3")
    for platforms in (("cpu",), ("cuda",)):
        hlo = _hlo(fn, x, kernel, platforms=platforms)
        assert "stablehlo.convolution" in hlo and "stablehlo.dot_general" not in hlo


def test_cpu_pinned_computation_on_a_gpu_host_takes_the_cpu_kernel(monkeypatch):
    """A host whose default backend is a GPU, simulated: the old trace-time `default_backend()` test
    would have picked the convolution; the platform the computation is lowered for picks the CPU's."""
    fn, x, kernel = _case("pointwise")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with jax.default_device(jax.devices("cpu")[0]):
        hlo = _hlo(fn, x, kernel)
    assert "stablehlo.convolution" not in hlo and "stablehlo.dot_general" in hlo


@pytest.mark.parametrize("name", ["pointwise", "depthwise"])
def test_both_branches_give_the_numbers_of_xla_convolution(name):
    """One export for cpu and cuda carries both kernels; run on CPU it matches lax's convolution."""
    fn, x, kernel = _case(name)
    kernel_shape, groups, strides, padding = CASES[name]

    def reference(x, kernel):
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            (strides, strides),
            padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )
        return jnp.sum(y**2)

    exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda"))(x, kernel)
    text = exported.mlir_module()
    assert "stablehlo.convolution" in text  # the cuda branch is in the same module as the CPU one
    value, (dx, dkernel) = exported.call(x, kernel)
    ref_value, (ref_dx, ref_dkernel) = jax.value_and_grad(reference, argnums=(0, 1))(x, kernel)
    assert relative_error(value, ref_value) <= 1e-5
    assert relative_error(dx, ref_dx) <= 1e-5
    assert relative_error(dkernel, ref_dkernel) <= 1e-5


def test_module_with_padding_and_bias_is_a_drop_in_for_nn_conv():
    """TF-SAME depthwise on an odd size (the CPU kernel pads itself) and a biased 1×1: same variables,
    same outputs as flax's convolution."""
    x = jax.random.normal(jax.random.key(0), (2, 13, 10, 8))
    for kwargs in (
        dict(features=8, kernel_size=(5, 5), strides=2, padding="SAME", feature_group_count=8),
        dict(features=3, kernel_size=(1, 1), padding="VALID", use_bias=True),
    ):
        ours, ref = Conv(**kwargs), nn.Conv(**kwargs)
        variables = jax.jit(ref.init)(jax.random.key(1), x)
        ours_variables = jax.jit(ours.init)(jax.random.key(1), x)
        jax.tree.map(np.testing.assert_array_equal, ours_variables, variables)
        y_ours, y_ref = jax.jit(ours.apply)(variables, x), jax.jit(ref.apply)(variables, x)
        assert relative_error(y_ours, y_ref) <= 1e-5


def test_architectures_take_their_conv_module_as_a_field():
    """`conv=nn.Conv` builds the same variables and lowers every conv as XLA's convolution."""
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    for name, pointwise, depthwise in (("efficientnet_lite0", 32, 16), ("resnet18", 3, 0)):
        ours = models.get(name, num_classes=3)
        flax_convs = ours.clone(conv=nn.Conv)
        variables = jax.eval_shape(ours.init, jax.random.key(0), x)
        assert jax.tree.structure(variables) == jax.tree.structure(
            jax.eval_shape(flax_convs.init, jax.random.key(0), x)
        )
        ours_hlo = _hlo(ours.apply, variables, x, platforms=("cpu",))
        flax_hlo = _hlo(flax_convs.apply, variables, x, platforms=("cpu",))
        # On CPU the 1×1 convs are matmuls (plus the classifier's) and the depthwise ones slice sums.
        assert ours_hlo.count("stablehlo.dot_general") == pointwise + 1
        assert flax_hlo.count("stablehlo.dot_general") == 1
        assert (
            flax_hlo.count("stablehlo.convolution")
            == ours_hlo.count("stablehlo.convolution") + pointwise + depthwise
        )
