"""The Keras layouts give Keras 3's numbers (JAX backend, random weights and BN statistics, fp32, eval):
logits and every tap at the native size, ported in memory through each model's Keras table (which must
list Keras' `model.layers` order); the known traps each break parity when mishandled; parameter counts
equal Keras' `count_params()`. The same models from Keras files at an odd size: test_keras_files.py."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

import tljax.models as models
import tljax.models.inception_v3 as inception_v3
from tests.models import keras_reference as ref
from tests.models.keras_reference import KERAS
from tests.models.torch_oracle import relative_error
from tljax.models.conv import Conv

TOLERANCE = 1e-5  # max |ours - keras| / max |keras|, per tap
ODD = (97, 131)  # an odd, non-square size (include_top=False: Keras allows any size ≥ 75 px there)


def _inputs(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, height, width, 3)).astype(np.float32)


class Case:
    """One Keras model, its port and its reference taps at one input size."""

    def __init__(self, name: str, size: tuple[int, int], include_top: bool, **kwargs):
        app, _, taps, last = KERAS[name]
        shape = {} if include_top else {"input_shape": (*size, 3)}
        self.name = name
        self.keras = ref.build(app, include_top=include_top, **shape, **kwargs)
        self.model = models.get(name, include_top=include_top, **kwargs)
        self.variables = ref.port_in_memory(self.keras, self.model)
        self.x = _inputs(*size)
        self.reference = ref.keras_taps(self.keras, taps(), self.x)
        self.reference["pool"] = self.reference[last].mean(axis=(1, 2))
        self.apply = jax.jit(self.model.apply, static_argnames=("taps",))

    def errors(self, variables=None, model=None, fresh: bool = False) -> dict[str, float]:
        """Relative error of every tap; `fresh` traces anew (after patching a module function)."""
        model = model or self.model
        names = models.tap_names(model)
        assert set(names) == set(self.reference), set(names) ^ set(self.reference)
        if model is self.model and not fresh:
            ours = self.apply(variables or self.variables, self.x, taps=names)
        else:
            ours = jax.jit(lambda v, x: model.apply(v, x, taps=names))(
                variables or self.variables, self.x
            )
        return {tap: relative_error(ours[tap], self.reference[tap]) for tap in names}


@functools.cache
def case(name: str, size: tuple[int, int] | None = None, **kwargs) -> Case:
    """Built once per run (in memory, no files): the native size with the top, or `size` without."""
    if size is None:
        return Case(name, (KERAS[name][1],) * 2, include_top=True, **kwargs)
    return Case(name, size, include_top=False, **kwargs)


def _assert_parity(name, errors, label):
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"{name} {label}: tap {worst} off by {errors[worst]:.2e}"


@pytest.mark.parametrize("name", list(KERAS))
def test_keras_layout_matches_keras_at_native_size(name):
    errors = case(name).errors()
    assert "logits" in errors
    _assert_parity(name, errors, "native size")


# Odd sizes for every model (from Keras files, with and without the top): test_keras_files.py. Here, a
# narrow MobileNet V1 with two maps per depthwise filter (Keras' alpha and depth_multiplier) at 97×131
# without its top, which the traps below reuse.
NARROW = {"alpha": 0.25, "depth_multiplier": 2}


def narrow_mobilenet_v1() -> Case:
    return case("mobilenet_v1", ODD, **NARROW)


def test_narrow_mobilenet_v1_with_depth_multiplier_matches_keras_at_odd_size():
    _assert_parity("mobilenet_v1 α=0.25 ×2", narrow_mobilenet_v1().errors(), f"{ODD}")


@pytest.mark.parametrize("name", list(KERAS))
def test_parameter_counts_equal_keras(name):
    """Keras' `count_params()` counts BN moving statistics too: params + batch_stats."""
    built = case(name)
    count = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(built.variables))
    assert count == built.keras.count_params()


# --- the known traps: each mishandled in turn must break parity -----------------------------------


def _far_off(errors: dict[str, float], tap: str, factor: float = 100) -> None:
    assert errors[tap] > factor * TOLERANCE, f"{tap}: {errors[tap]:.2e}: the trap is not exercised"


def symmetric_same(features, kernel_size, padding="SAME", **kwargs) -> Conv:
    """A `conv` field that reads 'SAME' as torch's symmetric (k - 1) // 2 padding."""
    if padding == "SAME":
        padding = tuple(((k - 1) // 2, (k - 1) // 2) for k in kernel_size)
    return Conv(features, kernel_size, padding=padding, **kwargs)


def same_instead_of_zero_pad(features, kernel_size, padding="SAME", **kwargs) -> Conv:
    """A `conv` field that reads Keras MobileNet V1's ZeroPadding((0, 1), (0, 1)) + VALID as 'SAME'."""
    if padding == ((0, 1), (0, 1)):
        padding = "SAME"
    return Conv(features, kernel_size, padding=padding, **kwargs)


def test_trap_tf_same_padding_on_stride_2():
    """MobileNetV2's stride-2 convs pad bottom/right (TF 'same' / `correct_pad`) at even sizes and
    symmetrically at odd ones: torch's symmetric padding breaks the stem tap at 224 px."""
    built = case("mobilenet_v2_keras")
    _far_off(built.errors(model=built.model.clone(conv=symmetric_same)), "features.0")


def test_trap_mobilenet_v1_zero_pads_bottom_right_even_at_odd_sizes():
    """Keras MobileNet V1 pads (0, 1) before every stride-2 depthwise conv, which is not 'same' at odd
    sizes: read as 'same', the first stride-2 block at 97×131 comes out a row taller than Keras'."""
    built = narrow_mobilenet_v1()
    wrong = built.model.clone(conv=same_instead_of_zero_pad)
    ours = jax.jit(lambda v, x: wrong.apply(v, x, taps=("blocks.1", "blocks.2")))(
        built.variables, built.x
    )
    assert relative_error(ours["blocks.1"], built.reference["blocks.1"]) <= TOLERANCE
    assert ours["blocks.2"].shape[1] == built.reference["blocks.2"].shape[1] + 1


@pytest.mark.parametrize("name", list(KERAS))
def test_trap_keras_bn_epsilon_is_1e3(name):
    """Keras' BN epsilon is 1e-3: shifting every variance by 1e-3 - 1e-5 (what torch's 1e-5 would
    compute) breaks the first tap."""
    built = case(name)
    flat = flatten_dict(built.variables)
    shift = 1e-3 - 1e-5
    variables = unflatten_dict(
        {k: v - shift if k[0] == "batch_stats" and k[-1] == "var" else v for k, v in flat.items()}
    )
    _far_off(built.errors(variables=variables), models.tap_names(built.model)[0], factor=10)


def test_trap_keras_average_pools_exclude_padding(monkeypatch):
    """Keras' AveragePooling2D('same') divides by the real pixels in the window: counting the zero
    padding, as torch does, breaks Inception V3's first Mixed block."""
    built = case("inception_v3_keras")
    monkeypatch.setattr(
        inception_v3,
        "_avg_pool_3x3",
        lambda x, layout: nn.avg_pool(
            x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=True
        ),
    )
    errors = built.errors(fresh=True)
    assert errors["maxpool2"] <= TOLERANCE
    _far_off(errors, "mixed0")


def test_trap_depthwise_kernel_layout_with_depth_multiplier():
    """A Keras depthwise kernel [kh, kw, in, mult] feeds output channel in·mult + m (mult fastest):
    the port matches Keras with depth_multiplier=2 (the odd-size case), the other order breaks it."""
    built = narrow_mobilenet_v1()
    flat = flatten_dict(built.variables)
    swapped = {}
    for k, v in flat.items():
        if k[-2] == "conv_dw":
            kh, kw, _, out = v.shape
            v = np.asarray(v).reshape(kh, kw, out // 2, 2).transpose(0, 1, 3, 2).reshape(v.shape)
        swapped[k] = v
    _far_off(built.errors(variables=unflatten_dict(swapped)), "blocks.1")
