"""On-device image ops: `OPS[name](image, magnitude, key) -> image`, jit- and vmap-able.

The contract every family (RandAugment, AugMix, the trainable policy) builds on:
- `image` is one float RGB image `[H, W, C]` with values in [0, 1]; the output has the same shape and
  stays in [0, 1].
- `magnitude` is a scalar in [0, 1]: RandAugment's M on its /10 scale divided by 10 (timm's
  `_LEVEL_DENOM = 10`), so 0 is the identity for every op that has a strength. It may be a traced value.
- `key` draws the op's own randomness: the sign of the signed ops (rotate, shear, translate and the
  enhance ops go either way with probability 1/2, as timm's `_randomly_negate`). Ops without a sign
  ignore it.

The magnitude → argument maps are timm's "increasing" ones (`rand-inc`), so that a larger M is always a
stronger distortion: rotate ±30°·m, shear ±0.3·m, translate ±0.45·m of the side, enhance factor 1 ± 0.9·m,
solarize threshold 1 - m, solarize-add +110/255·m below 128/255, posterize to max(1, 4 - ⌊4m⌋) bits (Pillow
13 refuses 0 bits, which timm's map reaches at M=10). Geometric ops resample bilinearly with dm-pix and
fill with grey 128/255 (timm's fill colour).

Built on dm-pix where it has the op with PIL's semantics (affine warps, solarize, greyscale weights);
dm-pix's `adjust_contrast`/`adjust_saturation`/`adjust_brightness` follow `tf.image` (per-channel mean,
HSV saturation, additive brightness) rather than PIL's `ImageEnhance`, which RandAugment's magnitudes were
defined for, so the enhance ops blend with PIL's degenerate images here instead. Written by hand because
dm-pix lacks them: posterize, equalize, autocontrast, invert, solarize-add, sharpness. The reference each
op is tested against (PIL `ImageOps`/`ImageEnhance`) and its tolerance are in `tests/data/augment/`.
"""

from __future__ import annotations

from collections.abc import Callable

import dm_pix
import jax
import jax.numpy as jnp

Op = Callable[[jax.Array, jax.Array | float, jax.Array], jax.Array]

FILL = 128.0 / 255.0  # timm's fill colour for pixels a warp brings in from outside the image


def _signed(value: jax.Array | float, key: jax.Array) -> jax.Array:
    """`value` or `-value`, each with probability 1/2 (timm's `_randomly_negate`)."""
    return jnp.where(jax.random.bernoulli(key), -1.0, 1.0) * jnp.asarray(value, jnp.float32)


def _to_uint8_levels(image: jax.Array) -> jax.Array:
    """[0, 1] floats → the int32 pixel levels 0..255 PIL would hold (rounded)."""
    return jnp.clip(jnp.round(image * 255.0), 0, 255).astype(jnp.int32)


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's `Image.blend(degenerate, image, factor)`, clipped to [0, 1] as uint8 output would be."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _grayscale(image: jax.Array) -> jax.Array:
    """PIL's `convert("L")` weights (ITU-R 601-2: 0.299, 0.587, 0.114), `[H, W, 1]`, via dm-pix."""
    return dm_pix.rgb_to_grayscale(image, keep_dims=False)


# -- geometric: dm-pix affine warps, PIL's coordinate convention ------------------------------------


def _warp(image: jax.Array, a, b, c, d, e, f) -> jax.Array:
    """PIL's `image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR, fillcolor=grey)` via dm-pix.

    PIL maps an output pixel centre (x + .5, y + .5) to the input point (a x' + b y' + c, d x' + e y' + f)
    in continuous coordinates; dm-pix samples array indices (row, col) at `matrix @ o + offset`, so the
    half-pixel shifts move into the offset.
    """
    a, b, c, d, e, f = (jnp.asarray(v, jnp.float32) for v in (a, b, c, d, e, f))
    matrix = jnp.stack([jnp.stack([e, d]), jnp.stack([b, a])])
    offset = jnp.stack([f + 0.5 * (d + e - 1.0), c + 0.5 * (a + b - 1.0)])
    rows, cols = jnp.meshgrid(
        jnp.arange(image.shape[0], dtype=jnp.float32),
        jnp.arange(image.shape[1], dtype=jnp.float32),
        indexing="ij",
    )
    coordinates = jnp.einsum("ij,jhw->ihw", matrix, jnp.stack([rows, cols])) + offset[:, None, None]
    # One 2-D interpolation per channel (dm-pix's, the one its `affine_transform` uses): warping the
    # [H, W, C] volume in 3-D would interpolate along channels too, 8 corners instead of 4.
    warped = jax.vmap(
        lambda channel: dm_pix.flat_nd_linear_interpolate_constant(channel, coordinates, cval=FILL),
        in_axes=-1,
        out_axes=-1,
    )(image)
    return jnp.clip(warped, 0.0, 1.0)


Affine = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


def _affine(*coefficients) -> Affine:
    return tuple(jnp.asarray(v, jnp.float32) for v in coefficients)  # type: ignore[return-value]


def rotate_affine(shape: tuple[int, ...], magnitude: jax.Array | float, key: jax.Array) -> Affine:
    """PIL's inverse map (a, b, c, d, e, f) for a rotation about the centre by ±30°·m (+: counter-clockwise)."""
    angle = jnp.deg2rad(_signed(30.0 * magnitude, key))
    cx, cy = shape[1] / 2.0, shape[0] / 2.0
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    a, b, d, e = cos, -sin, sin, cos
    return _affine(a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)


def shear_x_affine(shape: tuple[int, ...], magnitude: jax.Array | float, key: jax.Array) -> Affine:
    """Horizontal shear by ±0.3·m (timm `shear_x`: input x = x + s·y)."""
    return _affine(1.0, _signed(0.3 * magnitude, key), 0.0, 0.0, 1.0, 0.0)


def shear_y_affine(shape: tuple[int, ...], magnitude: jax.Array | float, key: jax.Array) -> Affine:
    """Vertical shear by ±0.3·m (timm `shear_y`: input y = s·x + y)."""
    return _affine(1.0, 0.0, 0.0, _signed(0.3 * magnitude, key), 1.0, 0.0)


def translate_x_affine(
    shape: tuple[int, ...], magnitude: jax.Array | float, key: jax.Array
) -> Affine:
    """Shift horizontally by ±0.45·m of the width (timm `translate_x_rel`)."""
    return _affine(1.0, 0.0, _signed(0.45 * magnitude, key) * shape[1], 0.0, 1.0, 0.0)


def translate_y_affine(
    shape: tuple[int, ...], magnitude: jax.Array | float, key: jax.Array
) -> Affine:
    """Shift vertically by ±0.45·m of the height (timm `translate_y_rel`)."""
    return _affine(1.0, 0.0, 0.0, 0.0, 1.0, _signed(0.45 * magnitude, key) * shape[0])


AFFINES = {
    "rotate": rotate_affine,
    "shear_x": shear_x_affine,
    "shear_y": shear_y_affine,
    "translate_x": translate_x_affine,
    "translate_y": translate_y_affine,
}
"""The geometric ops as their PIL affine coefficients (the warp itself is `_warp`)."""


def _warp_op(name: str) -> Op:
    def op(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
        return _warp(image, *AFFINES[name](image.shape, magnitude, key))

    op.__name__ = name
    op.__doc__ = f"{AFFINES[name].__doc__} Bilinear, grey fill (dm-pix `affine_transform`)."
    return op


rotate = _warp_op("rotate")
shear_x = _warp_op("shear_x")
shear_y = _warp_op("shear_y")
translate_x = _warp_op("translate_x")
translate_y = _warp_op("translate_y")


# -- colour: PIL ImageEnhance blends ------------------------------------------------------------------


def _enhance_factor(magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    return 1.0 + _signed(0.9 * magnitude, key)


def color(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageEnhance.Color`: blend with the greyscale image by factor 1 ± 0.9·m."""
    return _blend(_grayscale(image), image, _enhance_factor(magnitude, key))


def contrast(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageEnhance.Contrast`: blend with the mean grey level by factor 1 ± 0.9·m."""
    mean = jnp.mean(_grayscale(image))
    return _blend(mean, image, _enhance_factor(magnitude, key))


def brightness(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageEnhance.Brightness`: scale by factor 1 ± 0.9·m (a blend with black)."""
    return _blend(jnp.zeros_like(image), image, _enhance_factor(magnitude, key))


def sharpness(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageEnhance.Sharpness`: blend with PIL's SMOOTH-filtered image by factor 1 ± 0.9·m.

    SMOOTH is the 3×3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13; PIL leaves the 1-pixel border as it
    was, and so does this.
    """
    # The kernel is a 3×3 box sum plus 4× the centre: a window sum is much cheaper on a CPU than the
    # equivalent depthwise convolution.
    box = jax.lax.reduce_window(image, 0.0, jax.lax.add, (3, 3, 1), (1, 1, 1), "VALID")
    smoothed = (box + 4.0 * image[1:-1, 1:-1]) / 13.0
    degenerate = image.at[1:-1, 1:-1].set(smoothed)
    return _blend(degenerate, image, _enhance_factor(magnitude, key))


# -- point ops: PIL ImageOps ----------------------------------------------------------------------


def identity(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """The image unchanged (AugMix/TrivialAugment's no-op; RandAugment can draw it via the op list)."""
    del magnitude, key
    return image


def invert(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageOps.invert`: 1 - x. No magnitude."""
    del magnitude, key
    return 1.0 - image


def solarize(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageOps.solarize` at threshold 1 - m (dm-pix): values at or above it are inverted."""
    del key
    return dm_pix.solarize(image, 1.0 - jnp.asarray(magnitude, image.dtype))


def solarize_add(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """timm `solarize_add`: add 110/255·m to the values below 128/255, clipped at 1."""
    del key
    added = jnp.clip(image + jnp.asarray(magnitude, image.dtype) * (110.0 / 255.0), 0.0, 1.0)
    return jnp.where(image < 128.0 / 255.0, added, image)


def posterize_bits(magnitude: jax.Array | float) -> jax.Array:
    """Bits kept by `posterize` at magnitude m: max(1, 4 - ⌊4m⌋) (timm's increasing map, ≥ 1 for PIL)."""
    return jnp.maximum(
        1, 4 - jnp.floor(4.0 * jnp.asarray(magnitude, jnp.float32)).astype(jnp.int32)
    )


def posterize(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageOps.posterize`: keep the top `posterize_bits(m)` bits of each 8-bit level."""
    del key
    shift = 8 - posterize_bits(magnitude)
    levels = _to_uint8_levels(image)
    return ((levels >> shift) << shift).astype(image.dtype) / 255.0


def autocontrast(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageOps.autocontrast` (cutoff 0): stretch each channel's [min, max] to [0, 1]. No magnitude.

    PIL truncates the stretched level to an integer; this keeps it continuous (differentiable), so it
    agrees with PIL within 1/255.
    """
    del magnitude, key
    low = jnp.min(image, axis=(0, 1), keepdims=True)
    high = jnp.max(image, axis=(0, 1), keepdims=True)
    flat = high <= low  # PIL leaves a constant channel unchanged
    stretched = (image - low) / jnp.where(flat, 1.0, high - low)
    return jnp.where(flat, image, jnp.clip(stretched, 0.0, 1.0))


def _equalize_channel(levels: jax.Array) -> jax.Array:
    """PIL's equalize lookup table for one channel of int levels `[H, W]`, applied."""
    histogram = jnp.bincount(levels.ravel(), length=256)
    last_used = jnp.max(jnp.where(histogram > 0, jnp.arange(256), -1))
    step = (jnp.sum(histogram) - histogram[last_used]) // 255
    before = jnp.cumsum(histogram) - histogram  # pixels strictly below each level
    lut = jnp.clip((step // 2 + before) // jnp.maximum(step, 1), 0, 255)
    # PIL keeps the channel when fewer than two levels are used (step is then 0 too).
    return jnp.where(step == 0, levels, lut[levels])


def equalize(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """PIL `ImageOps.equalize`: per-channel histogram equalisation of the 8-bit levels. No magnitude."""
    del magnitude, key
    levels = _to_uint8_levels(image)
    equalized = jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(levels)
    return equalized.astype(image.dtype) / 255.0


def hflip(image: jax.Array, magnitude: jax.Array | float, key: jax.Array) -> jax.Array:
    """Mirror left-right (dm-pix). No magnitude; the random choice is the caller's."""
    del magnitude, key
    return dm_pix.flip_left_right(image)


OPS: dict[str, Op] = {
    "identity": identity,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "invert": invert,
    "rotate": rotate,
    "posterize": posterize,
    "solarize": solarize,
    "solarize_add": solarize_add,
    "color": color,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "hflip": hflip,
}
"""Every op by name: `fn(image [H, W, C] float in [0, 1], magnitude in [0, 1], key) -> image`."""

GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y", "hflip")
MAGNITUDE_FREE_OPS = ("identity", "autocontrast", "equalize", "invert", "hflip")


def apply_op(index: jax.Array, names: tuple[str, ...], image, magnitude, key) -> jax.Array:
    """`OPS[names[index]](image, magnitude, key)` with a traced `index`, all ops compiled once.

    A `lax.switch`: run on one image (the families map over examples with `lax.map`), only the chosen op
    executes. Under `vmap` the index would be batched and the switch would turn into a select that
    computes every op for every image, which is why nothing here vmaps it.
    """
    magnitude = jnp.asarray(magnitude, jnp.float32)
    return jax.lax.switch(index, [OPS[name] for name in names], image, magnitude, key)


def apply_op_if(
    active: jax.Array, index: jax.Array, names: tuple[str, ...], image, magnitude, key
) -> jax.Array:
    """`apply_op(index, ...)` where `active`, else `image` itself, without computing the op.

    The "not applied" case is one more switch branch (the identity), not a `jnp.where` after the op,
    so an op that is drawn but not applied costs nothing.
    """
    magnitude = jnp.asarray(magnitude, jnp.float32)
    branches = [OPS[name] for name in names] + [identity]
    chosen = jnp.where(active, index, len(names))
    return jax.lax.switch(chosen, branches, image, magnitude, key)


def check_op_names(names: tuple[str, ...] | list[str], where: str) -> tuple[str, ...]:
    """`names` as a tuple if each is in `OPS`, else a ValueError naming the unknown ones and the valid ones."""
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ValueError(f"{where}: unknown op(s) {unknown}; valid ops: {', '.join(sorted(OPS))}")
    return tuple(names)
