"""Geometry and normalisation: the weights' evaluation transform and the training random-resized-crop.

Everything works on 8-bit PIL images and returns `uint8 [S, S, 3]`; normalisation to float happens once
per batch (`normalize`, the one definition every tool uses), which is both cheaper and keeps the
per-example work in PIL's C code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from tljax.data.images import open_image

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


class PreprocessingLike(Protocol):
    """What the data code reads from `tljax.weights.Preprocessing` (0..255 pixel units)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int
    crop: int


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Resolved sizes: resize the shorter side to `resize`, keep a centred `crop`×`crop` window."""

    resize: int
    crop: int
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.crop < 1 or self.resize < self.crop:
            raise ValueError(
                f"need 1 <= crop <= resize, got resize={self.resize}, crop={self.crop}"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} not in {sorted(_INTERPOLATIONS)}"
            )

    @property
    def resample(self) -> Image.Resampling:
        return _INTERPOLATIONS[self.interpolation]


def resolve_geometry(
    preprocessing: Any, image_size: int | None, resize_size: int | None, interpolation: str | None
) -> Geometry:
    """Sizes from the weights' preprocessing, optionally overridden by the data config.

    `image_size` replaces the crop; when `resize_size` is not given the resize keeps the weights' ratio
    (ImageNet's 256/224), so the override changes the scale but not the framing. Fashion-MNIST at 64 px
    without cropping its borders: `image_size=64, resize_size=64`.
    """
    base_resize = int(getattr(preprocessing, "resize", image_size or 0) or 0)
    base_crop = int(getattr(preprocessing, "crop", image_size or 0) or 0)
    if image_size is None:
        if not base_crop:
            raise ValueError(
                "no image size: set data.image_size or pass the weights' Preprocessing"
            )
        crop, resize = base_crop, base_resize or base_crop
    else:
        crop = int(image_size)
        ratio = base_resize / base_crop if base_crop and base_resize else 1.0
        resize = int(round(crop * ratio))
    if resize_size is not None:
        resize = int(resize_size)
    interpolation = interpolation or getattr(preprocessing, "interpolation", None) or "bilinear"
    return Geometry(resize=resize, crop=crop, interpolation=interpolation)


def resize(image: Any, hw: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """The one resize: `[H, W, C]` pixels → float32 `[h, w, C]`, by PIL's resampling (antialiased when
    shrinking), channel by channel in 32-bit float so nothing is rounded to 8 bits on the way.

    The data pipeline's transforms resize 8-bit PIL images with the same resampling filters; image
    optimisation and top-9 call this on float images. PIL's bicubic here equals
    `jax.image.resize(..., "cubic", antialias=True)` to ~1e-3 of a pixel level, without compiling a
    kernel per image size.
    """
    pixels = np.asarray(image, np.float32)
    height, width = int(hw[0]), int(hw[1])
    if pixels.ndim != 3 or height < 1 or width < 1:
        raise ValueError(
            f"resize expects an [H, W, C] image and a positive size, got {pixels.shape} → {hw}"
        )
    if pixels.shape[:2] == (height, width):
        return pixels.copy()
    resample = _INTERPOLATIONS[interpolation]
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[..., c]), mode="F").resize(
                (width, height), resample
            )
        )
        for c in range(pixels.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def _resized_shape(width: int, height: int, shorter: int) -> tuple[int, int]:
    """Shorter side → `shorter`, the longer side truncated like torchvision's Resize(int)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def _as_rgb_array(image: Image.Image) -> np.ndarray:
    """`uint8 [H, W, 3]`; a gray image is replicated after resizing (cheaper than before)."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array


def center_crop(image: Image.Image, geometry: Geometry) -> np.ndarray:
    """Evaluation transform: resize the shorter side, then take the centred crop → `uint8 [S, S, 3]`."""
    width, height = image.size
    new_width, new_height = _resized_shape(width, height, geometry.resize)
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), geometry.resample)
    # Same rounding as torchvision's CenterCrop, so accuracy matches the weights' published numbers.
    top = int(round((new_height - geometry.crop) / 2.0))
    left = int(round((new_width - geometry.crop) / 2.0))
    image = image.crop((left, top, left + geometry.crop, top + geometry.crop))
    return _as_rgb_array(image)


def sample_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Inception-style random crop box `(left, top, right, bottom)`: area fraction in `scale`, aspect
    ratio log-uniform in `ratio`; after `attempts` misses, the centred crop with the ratio clamped."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return left, top, left + crop_w, top + crop_h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_w, crop_h = int(round(height * ratio[1])), height
    else:
        crop_w, crop_h = width, height
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return left, top, left + crop_w, top + crop_h


def random_resized_crop(
    image: Image.Image,
    geometry: Geometry,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Training transform: a random box resized straight to `crop`×`crop` → `uint8 [S, S, 3]`.

    PIL's `resize(box=...)` crops and resamples in one pass with antialiasing, so a small crop of a big
    photo is not first blown up and then shrunk.
    """
    box = sample_resized_crop_box(*image.size, rng, scale=scale, ratio=ratio)
    image = image.resize((geometry.crop, geometry.crop), geometry.resample, box=box)
    return _as_rgb_array(image)


class MeanStd(Protocol):
    """Anything with per-channel `mean` and `std` in 0..255 pixel units (`tljax.weights.Preprocessing`)."""

    @property
    def mean(self) -> Sequence[float]: ...

    @property
    def std(self) -> Sequence[float]: ...


def _mean_std(preprocessing: MeanStd) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(-1)
    std = np.asarray(preprocessing.std, dtype=np.float32).reshape(-1)
    if mean.shape not in ((1,), (3,)) or std.shape not in ((1,), (3,)):
        raise ValueError(
            f"mean/std must have 1 or 3 values, got {preprocessing.mean} and {preprocessing.std}"
        )
    if np.any(std <= 0):
        raise ValueError(f"std must be positive, got {preprocessing.std}")
    return mean, std


def normalize(x: Any, preprocessing: MeanStd) -> Any:
    """The one normalisation: RGB pixels in 0..255, channels last (`[..., 3]`) → `(x - mean) / std`.

    NumPy input gives a new float32 NumPy array (integer images are promoted, the arithmetic runs in
    place on the copy: one pass per operation over a large batch); a JAX array gives a JAX array, so the
    same function runs inside jit (image optimisation). bfloat16 JAX input stays bfloat16.
    """
    mean, std = _mean_std(preprocessing)
    if isinstance(x, np.ndarray) or not hasattr(x, "dtype"):
        out = np.array(x, dtype=np.float32)
        out -= mean
        out /= std
        return out
    if np.dtype(x.dtype).kind in "biu":
        x = x.astype(np.float32)
    return (x - mean.astype(x.dtype)) / std.astype(x.dtype)


def denormalize(x: Any, preprocessing: MeanStd) -> Any:
    """Inverse of `normalize`: the network's input space → 0..255 RGB pixels (not clipped)."""
    mean, std = _mean_std(preprocessing)
    if isinstance(x, np.ndarray) or not hasattr(x, "dtype"):
        return np.asarray(x, dtype=np.float32) * std + mean
    return x * std.astype(x.dtype) + mean.astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class PixelScaling:
    """Mean/std for a run without pretrained weights: pixels scaled to [-1, 1] (`build_datasets`)."""

    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)

    def normalize(self, x: Any) -> Any:
        """`normalize(x, self)`."""
        return normalize(x, self)

    def denormalize(self, x: Any) -> Any:
        """`denormalize(x, self)`."""
        return denormalize(x, self)


NO_WEIGHTS = PixelScaling()


class Normalizer:
    """`normalize` bound to one mean/std, for a data split: `uint8 [B, H, W, 3]` → `float32`.

    `scale` and `offset` (`1/std`, `-mean/std`) identify the normalisation (feature-cache keys use them).
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self._mean_std = PixelScaling(tuple(mean), tuple(std))  # type: ignore[arg-type]
        mean_array, std_array = _mean_std(self._mean_std)
        self.scale = np.broadcast_to(1.0 / std_array, (3,)).astype(np.float32)
        self.offset = np.broadcast_to(-mean_array / std_array, (3,)).astype(np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return normalize(images, self._mean_std)


def load_eval_image(path: str, preprocessing: Any) -> np.ndarray:
    """One image file through the weights' evaluation transform → normalised `float32 [crop, crop, 3]`.

    Decoding follows the data pipeline (EXIF orientation, gray/RGBA/CMYK/16-bit → RGB); raises on an
    unreadable file (the caller decides whether to skip it).
    """
    geometry = Geometry(
        int(preprocessing.resize),
        int(preprocessing.crop),
        getattr(preprocessing, "interpolation", "bilinear"),
    )
    pixels = center_crop(open_image(str(path)), geometry)
    return normalize(pixels, preprocessing)
