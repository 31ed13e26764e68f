"""The on-device ops against PIL `ImageOps`/`ImageEnhance` on a real photo (skimage's astronaut).

Tolerances, in 8-bit levels: 0 for the point ops PIL computes exactly on levels (solarize, posterize,
equalize, invert); 1 for autocontrast (PIL truncates the stretched level, tljax keeps it continuous) and
for the interior of the geometric warps (PIL rounds its bilinear result; the border pixels, where PIL and
dm-pix treat the half-covered source pixels differently, are excluded); 1.5 for the enhance blends (PIL
rounds the degenerate image and the blend).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageEnhance, ImageOps
from scipy.ndimage import binary_erosion

from tljax.data.augment import ops

HEIGHT, WIDTH = 48, 40
FILL = (128, 128, 128)
MAGNITUDES = (0.3, 0.7, 1.0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[::8, ::8][:HEIGHT, :WIDTH])


def _run(name: str, photo: np.ndarray, magnitude: float, key: jax.Array) -> np.ndarray:
    image = jnp.asarray(photo, jnp.float32) / 255.0
    return np.asarray(jax.jit(ops.OPS[name])(image, magnitude, key), np.float64) * 255.0


def _levels(values: np.ndarray) -> np.ndarray:
    """The 8-bit levels of an op's output that should be exact: float32 /255 round trips to ~1e-5."""
    assert np.abs(values - np.round(values)).max() < 1e-3
    return np.round(values)


def _sign(key: jax.Array) -> float:
    return -1.0 if bool(jax.random.bernoulli(key)) else 1.0


def _keys():
    # Two keys with opposite signs, so both directions of every signed op are checked.
    keys = [jax.random.key(seed) for seed in range(8)]
    positive = next(k for k in keys if _sign(k) > 0)
    negative = next(k for k in keys if _sign(k) < 0)
    return [positive, negative]


ENHANCE = {
    "color": ImageEnhance.Color,
    "contrast": ImageEnhance.Contrast,
    "brightness": ImageEnhance.Brightness,
    "sharpness": ImageEnhance.Sharpness,
}


@pytest.mark.parametrize("name", sorted(ENHANCE))
def test_enhance_ops_match_pil(name, photo):
    pil = Image.fromarray(photo)
    for key in _keys():
        for magnitude in MAGNITUDES:
            factor = 1.0 + _sign(key) * 0.9 * magnitude
            reference = np.asarray(ENHANCE[name](pil).enhance(factor), np.float64)
            difference = np.abs(_run(name, photo, magnitude, key) - reference)
            assert difference.max() <= 1.5, (name, magnitude, factor, difference.max())


def test_point_ops_match_pil_exactly(photo):
    pil = Image.fromarray(photo)
    key = jax.random.key(0)
    for magnitude in (0.0, *MAGNITUDES):
        threshold = 256 - round(magnitude * 256)
        np.testing.assert_array_equal(
            _levels(_run("solarize", photo, magnitude, key)),
            np.asarray(ImageOps.solarize(pil, threshold)),
        )
        bits = int(ops.posterize_bits(magnitude))
        assert bits == max(1, 4 - int(4 * magnitude))
        np.testing.assert_array_equal(
            _levels(_run("posterize", photo, magnitude, key)),
            np.asarray(ImageOps.posterize(pil, bits)),
        )
    np.testing.assert_array_equal(
        _levels(_run("equalize", photo, 0, key)), np.asarray(ImageOps.equalize(pil))
    )
    np.testing.assert_array_equal(
        _levels(_run("invert", photo, 0, key)), np.asarray(ImageOps.invert(pil))
    )
    difference = np.abs(
        _run("autocontrast", photo, 0, key) - np.asarray(ImageOps.autocontrast(pil))
    )
    assert difference.max() <= 1.0


def test_solarize_add_matches_numpy(photo):
    for magnitude in MAGNITUDES:
        add = magnitude * 110.0
        reference = np.where(photo < 128, np.minimum(photo + add, 255.0), photo)
        np.testing.assert_allclose(
            _run("solarize_add", photo, magnitude, jax.random.key(0)), reference, atol=1e-3
        )


def _pil_warp(name: str, image: Image.Image, magnitude: float, sign: float, fill) -> Image.Image:
    m = sign * magnitude
    if name == "rotate":
        return image.rotate(30.0 * m, resample=Image.BILINEAR, fillcolor=fill)
    coefficients = {
        "shear_x": (1, 0.3 * m, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, 0.3 * m, 1, 0),
        "translate_x": (1, 0, 0.45 * m * WIDTH, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, 0.45 * m * HEIGHT),
    }[name]
    return image.transform(image.size, Image.AFFINE, coefficients, Image.BILINEAR, fillcolor=fill)


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometric_ops_match_pil_inside_and_keep_shape_and_range(name, photo):
    pil = Image.fromarray(photo)
    white = Image.fromarray(np.full_like(photo, 255))
    for key in _keys():
        for magnitude in MAGNITUDES:
            out = _run(name, photo, magnitude, key)
            assert out.shape == photo.shape
            assert out.min() >= 0.0 and out.max() <= 255.0
            reference = np.asarray(_pil_warp(name, pil, magnitude, _sign(key), FILL), np.float64)
            # Pixels whose whole bilinear footprint lies inside the source image.
            coverage = np.asarray(_pil_warp(name, white, magnitude, _sign(key), (0, 0, 0)))[..., 0]
            inside = binary_erosion(coverage == 255, iterations=1)
            assert inside.mean() > 0.4
            assert np.abs(out - reference)[inside].max() <= 1.0 + 1e-3, (name, magnitude)
            # Well outside the source, the fill colour.
            outside = binary_erosion(coverage == 0, iterations=1)
            np.testing.assert_allclose(out[outside], 128.0, atol=1e-3)


def test_every_op_is_identity_at_zero_or_magnitude_free_and_stays_in_range(photo):
    image = jnp.asarray(photo, jnp.float32) / 255.0
    key = jax.random.key(3)
    for name, op in ops.OPS.items():
        out = jax.jit(op)(image, 0.0, key)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        if name not in ops.MAGNITUDE_FREE_OPS and name != "posterize":
            # Posterize at m=0 keeps 4 bits, timm's map; every other op with a strength is the identity.
            np.testing.assert_allclose(np.asarray(out), np.asarray(image), atol=1e-6, err_msg=name)


def test_apply_op_switches_on_a_traced_index(photo):
    image = jnp.asarray(photo, jnp.float32) / 255.0
    names = ("invert", "solarize", "equalize")
    key = jax.random.key(0)
    switched = jax.jit(lambda i: ops.apply_op(i, names, image, 0.5, key))
    for index, name in enumerate(names):
        np.testing.assert_array_equal(
            np.asarray(switched(index)), np.asarray(ops.OPS[name](image, 0.5, key))
        )


def test_unknown_op_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown op.*'rotat'.*valid ops: .*rotate"):
        ops.check_op_names(("rotat",), "augment.randaugment.ops")
