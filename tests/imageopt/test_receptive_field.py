"""Receptive fields derived from the traced architecture agree with brute force.

Brute force = which input pixels can change one unit: the support of the unit's input gradient (with all
weights positive and every ReLU active, nothing can cancel) or, where max-pooling routes the gradient to
a single element, the set of pixels whose perturbation changes the unit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import models
from tljax.imageopt.receptive_field import (
    ReceptiveField,
    receptive_field,
    receptive_fields,
    trace_receptive_fields,
)
from tljax.models.common import TapRecorder, tf_same_padding


def _conv(features: int, kernel: int, **kwargs) -> nn.Conv:
    """A square conv; its weights come from `_positive_variables`, never from its initializer."""
    return nn.Conv(features, (kernel, kernel), **kwargs)


class TinyNet(nn.Module):
    """Every kind of layer the walker must compose: TF-SAME stride-2 conv, max-pool, dilated conv,
    a residual block whose 1×1 stride-2 shortcut sees fewer pixels than its 3×3 path, and avg-pool."""

    @staticmethod
    def tap_names() -> tuple[str, ...]:
        return ("conv1", "pool1", "dilated", "block", "avg")

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        rec = TapRecorder(taps, self.tap_names(), "TinyNet")
        pad = tf_same_padding(x.shape[1], 3, 2)
        x = jnp.pad(x, ((0, 0), pad, pad, (0, 0)))
        x = nn.relu(_conv(4, 3, strides=2, padding="VALID")(x))
        if rec.add("conv1", x):
            return rec.outputs
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        if rec.add("pool1", x):
            return rec.outputs
        x = nn.relu(_conv(4, 3, kernel_dilation=2, padding=((2, 2), (2, 2)))(x))
        if rec.add("dilated", x):
            return rec.outputs
        y = _conv(4, 3, strides=2, padding=((1, 1), (1, 1)))(x)
        x = nn.relu(y + _conv(4, 1, strides=2, padding="VALID")(x))
        if rec.add("block", x):
            return rec.outputs
        x = nn.avg_pool(x, (2, 2), (1, 1))
        rec.add("avg", x)
        return rec.outputs if taps is not None else x.mean((1, 2))


def _expected_mask(rf: ReceptiveField, y: int, x: int) -> np.ndarray:
    top, left, bottom, right = rf.box(y, x)
    mask = np.zeros(rf.input_hw, bool)
    mask[top:bottom, left:right] = True
    return mask


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _gradient_supports(apply_tap, image: jnp.ndarray, units) -> np.ndarray:
    """`[U, H, W]`: where the input gradient of each unit (channel 0) is nonzero; one compilation."""
    ys, xs = (jnp.asarray(v) for v in zip(*units, strict=True))

    def unit_grad(y, x):
        return jax.grad(lambda im: apply_tap(im[None])[0, y, x, 0])(image)

    grads = jax.jit(jax.vmap(unit_grad))(ys, xs)  # [U, H, W, 3]
    return np.asarray(jnp.abs(grads).sum(-1) > 0)


def _perturbation_supports(apply_taps, image: np.ndarray, pixels) -> dict:
    """Adds +10 to each listed pixel (all channels) in turn, one batch for all taps.

    Returns `{tap: f}` with `f(y, x)` the mask of pixels whose perturbation changes unit (y, x), channel 0.
    """
    pixels = list(pixels)
    batch = np.repeat(image[None], len(pixels), axis=0)
    for i, (py, px) in enumerate(pixels):
        batch[i, py, px] += 10.0
    base = apply_taps(jnp.asarray(image[None]))
    perturbed = apply_taps(jnp.asarray(batch))
    result = {}
    for tap in base:
        ref = np.asarray(base[tap])[0, ..., 0]  # [h, w]
        values = np.asarray(perturbed[tap])[..., 0]  # [P, h, w]
        changed = np.abs(values - ref) > 1e-4 * np.maximum(1.0, np.abs(ref))

        def support(y: int, x: int, changed=changed) -> np.ndarray:
            mask = np.zeros(image.shape[:2], bool)
            for (py, px), hit in zip(pixels, changed[:, y, x], strict=True):
                mask[py, px] = hit
            return mask

        result[tap] = support
    return result


def test_axis_arithmetic_by_hand():
    # conv3 s2 after TF-SAME pad (0 low at even 32), then pool3 s2 p1: sizes 3 → 3+2·2 = 7, jumps 2 → 4.
    def fn(x):
        y = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        y = jax.lax.conv_general_dilated(
            y, jnp.ones((3, 3, 3, 2)), (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        z = nn.max_pool(y, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        return {"conv": y, "pool": z}

    fields = trace_receptive_fields(fn, (1, 32, 32, 3))
    assert (fields["conv"].size, fields["conv"].jump, fields["conv"].offset) == (
        (3, 3),
        (2, 2),
        (0, 0),
    )
    assert (fields["pool"].size, fields["pool"].jump, fields["pool"].offset) == (
        (7, 7),
        (4, 4),
        (-2, -2),
    )
    assert fields["pool"].box(0, 0) == (0, 0, 5, 5)  # clipped at the top-left border
    assert fields["pool"].box(3, 2, clip=False) == (10, 6, 17, 13)


def test_known_published_fields():
    # Textbook values: VGG16 pool5 sees 212 px, ResNet-18 layer4 435 px (traced abstractly: no FLOPs).
    vgg = receptive_field(models.get("vgg16"), "pool5")
    assert vgg.size == (212, 212) and vgg.jump == (32, 32)
    resnet = receptive_fields(models.get("resnet18"), ["layer1.0", "layer4.1"])
    assert resnet["layer1.0"].size == (27, 27) and resnet["layer4.1"].size == (435, 435)
    assert resnet["layer4.1"].output_hw == (7, 7)


def test_tiny_net_matches_perturbation():
    model = TinyNet()
    hw = (30, 30)
    taps = TinyNet.tap_names()
    variables = _positive_variables(model, hw)
    fields = receptive_fields(model, taps, hw)
    apply_all = jax.jit(lambda x: model.apply(variables, x, taps=taps))
    image = np.random.default_rng(0).uniform(0.2, 1.0, (*hw, 3)).astype(np.float32)
    all_pixels = [(i, j) for i in range(hw[0]) for j in range(hw[1])]
    outputs = _perturbation_supports(apply_all, image, all_pixels)
    for tap in taps:
        rf = fields[tap]
        h, w = rf.output_hw
        for y, x in {(0, 0), (h // 2, w // 2), (h - 1, w - 1), (1, w - 2)}:
            support = outputs[tap](y, x)
            expected = _expected_mask(rf, y, x)
            if tap == "dilated":
                # A dilated kernel whose taps are further apart (2·4 px) than the field below them (7 px)
                # leaves holes: the field bounds the support, and is its bounding box away from the
                # border (at the border the outermost taps may land entirely in padding).
                assert not (support & ~expected).any()
                assert (~support & expected).any()
                if rf.box(y, x) == rf.box(y, x, clip=False):
                    assert _bounding_box(support) == rf.box(y, x)
            else:
                np.testing.assert_array_equal(support, expected, err_msg=f"{tap} unit {(y, x)}")
    # Where no max-pool routes the gradient to one element, the gradient's support matches too.
    rf = fields["conv1"]
    h, w = rf.output_hw
    units = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
    conv1 = lambda x: apply_all(x)["conv1"]  # noqa: E731
    for (y, x), grad in zip(
        units, _gradient_supports(conv1, jnp.asarray(image), units), strict=True
    ):
        np.testing.assert_array_equal(grad, _expected_mask(rf, y, x))


def _positive_variables(model: nn.Module, hw: tuple[int, int]):
    """All kernels positive (fan-in scaled), BN an identity, biases slightly positive: nothing cancels.

    Built from `jax.eval_shape` shapes, so no (slow, eager) `model.init` of a real network is needed.
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *hw, 3)))
    rng = np.random.default_rng(1)  # numpy: eager jax.random would compile once per leaf shape

    def make(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.uniform(0.5, 1.0, leaf.shape) / fan_in).astype(np.float32)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        if name == "mean":
            return np.zeros(leaf.shape, np.float32)
        return np.full(leaf.shape, 0.01, np.float32)  # bias

    return jax.tree_util.tree_map_with_path(make, shapes)


def test_efficientnet_lite0_matches_gradient_support():
    # The embedded default's architecture: TF-SAME padding, depthwise convs, residual adds, ReLU6.
    model = models.get("efficientnet_lite0")
    hw = (64, 64)
    variables = _positive_variables(model, hw)
    image = jnp.asarray(np.random.default_rng(1).uniform(0.2, 1.0, (*hw, 3)), jnp.float32)
    tap = "blocks.3"  # 35 px field, stride 8: several stride-2 TF-SAME convs and a residual add
    rf = receptive_field(model, tap, hw)
    apply_tap = lambda x: model.apply(variables, x, taps=(tap,))[tap]  # noqa: E731
    h, w = rf.output_hw
    units = [(0, 0), (h // 2, w // 2 + 1), (h - 1, w - 1)]
    for (y, x), support in zip(units, _gradient_supports(apply_tap, image, units), strict=True):
        np.testing.assert_array_equal(support, _expected_mask(rf, y, x), err_msg=f"{tap} {(y, x)}")


def test_resnet18_matches_perturbation_lines():
    # Max-pool sends the gradient to one element per window, so use perturbation; the field is a
    # product of intervals, so the row and the column through the unit pin down its box exactly.
    model = models.get("resnet18")
    hw = (48, 48)
    tap = "layer1.0"
    variables = _positive_variables(model, hw)
    rf = receptive_field(model, tap, hw)
    apply_taps = jax.jit(lambda x: model.apply(variables, x, taps=(tap,)))
    image = np.random.default_rng(2).uniform(0.2, 1.0, (*hw, 3)).astype(np.float32)
    for y, x in [(0, 0), (5, 7)]:
        cy, cx = (int(c) for c in np.clip(np.round(rf.center(y, x)), 0, hw[0] - 1))
        line = [(cy, j) for j in range(hw[1])] + [(i, cx) for i in range(hw[0])]
        support = _perturbation_supports(apply_taps, image, line)[tap](y, x)
        expected = _expected_mask(rf, y, x)
        np.testing.assert_array_equal(support[cy], expected[cy])
        np.testing.assert_array_equal(support[:, cx], expected[:, cx])


def test_non_spatial_and_unknown_taps_raise():
    model = TinyNet()
    with pytest.raises(ValueError, match="valid taps are"):
        receptive_field(model, "nope", (16, 16))
    with pytest.raises(ValueError, match="whole image"):
        trace_receptive_fields(lambda x: {"gap": x.mean((1, 2))}, (1, 8, 8, 3))
    with pytest.raises(ValueError, match="outside tap"):
        receptive_field(model, "conv1", (16, 16)).box(8, 0)
