"""A corruption suite for evaluation (Hendrycks & Dietterich 2019, "ImageNet-C"), weather-free.

Eight corruptions in three families, each at severities 1–5:
- noise: `gaussian_noise`, `shot_noise`, `impulse_noise`, `speckle_noise`;
- blur: `defocus_blur`, `gaussian_blur`;
- digital: `contrast`, `pixelate`, `jpeg_compression`.
The severity parameters are ImageNet-C's, which are defined on 224-pixel images; the spatial ones (blur
radii, sigmas) are scaled by `min(H, W) / 224` so the suite means the same thing at another resolution.
Where we differ from the reference code: the weather family (snow, frost, fog, brightness) and the
corruptions that need a physics or warp model (motion, zoom, glass blur, elastic) are left out; the
defocus disk is anti-aliased with the same Gaussian but sized from the scaled radius.

Images are RGB pixels in 0..255, `[N, H, W, 3]` (uint8 or float); the output is float32 in 0..255. Every
corruption is deterministic for a `seed`: the random draws come from
`np.random.default_rng((seed, corruption_index, severity))`, so the same call gives the same bytes, and
two corruptions or severities never share a stream.

`corruption_report` turns the accuracies into clean accuracy, mean corruption accuracy, and the mCE and
relative mCE of a model against a baseline (the no-augmentation model in the tljax results table).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import numpy as np
import scipy.ndimage
from PIL import Image

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""`corruption(images in [0, 1] float64 [N, H, W, 3], severity 1..5, rng) -> images in [0, 1]`."""

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 224  # the image size ImageNet-C's spatial parameters are defined at

_PARAMETERS: dict[str, tuple] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}


def _scale(images: np.ndarray) -> float:
    return min(images.shape[1], images.shape[2]) / REFERENCE_SIZE


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive i.i.d. Gaussian noise of standard deviation c (in 0..1 units)."""
    c = _PARAMETERS["gaussian_noise"][severity - 1]
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0.0, 1.0)


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise: `Poisson(c·x) / c`, so fewer photons (smaller c) is noisier."""
    c = _PARAMETERS["shot_noise"][severity - 1]
    return np.clip(rng.poisson(x * c) / c, 0.0, 1.0)


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: a fraction c of the values set to 0 or 1 with equal probability."""
    c = _PARAMETERS["impulse_noise"][severity - 1]
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(x.dtype), x)


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative Gaussian noise: `x + x·N(0, c)`."""
    c = _PARAMETERS["speckle_noise"][severity - 1]
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0.0, 1.0)


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """The defocus point-spread function: a normalised disk of `radius` pixels, anti-aliased by a
    Gaussian of `alias_sigma`. [K, K], sums to 1."""
    size = max(int(np.ceil(radius)), 1)
    grid = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(grid, grid)
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    kernel /= kernel.sum()
    return scipy.ndimage.gaussian_filter(kernel, sigma=alias_sigma)


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an anti-aliased disk (lens defocus), per channel, reflecting at the borders."""
    radius, alias = _PARAMETERS["defocus_blur"][severity - 1]
    kernel = disk_kernel(max(radius * _scale(x), 0.5), alias)
    out = scipy.ndimage.convolve(x, kernel[None, :, :, None], mode="reflect")
    return np.clip(out, 0.0, 1.0)


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of standard deviation c pixels (at 224 px), per channel."""
    sigma = _PARAMETERS["gaussian_blur"][severity - 1] * _scale(x)
    return np.clip(scipy.ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0)), 0.0, 1.0)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Contrast reduction towards each image's per-channel mean: `(x − m)·c + m`."""
    c = _PARAMETERS["contrast"][severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0.0, 1.0)


def _per_image_pil(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.empty_like(x)
    for i, image in enumerate(x):
        pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
        out[i] = np.asarray(fn(pil), dtype=np.float64) / 255.0
    return out


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Down-sampling by a factor c (box filter), then back up to size (nearest neighbour)."""
    c = _PARAMETERS["pixelate"][severity - 1]
    height, width = x.shape[1:3]
    small = (max(int(width * c), 1), max(int(height * c), 1))
    return _per_image_pil(
        x,
        lambda im: im.resize(small, Image.Resampling.BOX).resize(
            (width, height), Image.Resampling.NEAREST
        ),
    )


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A JPEG round trip at quality c (PIL's encoder)."""
    quality = _PARAMETERS["jpeg_compression"][severity - 1]

    def round_trip(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return _per_image_pil(x, round_trip)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "defocus_blur": defocus_blur,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "gaussian_blur"),
    "digital": ("contrast", "pixelate", "jpeg_compression"),
}


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """`images` (RGB 0..255, `[N, H, W, 3]`) under corruption `name` at `severity` 1..5: float32 0..255.

    Deterministic: the same arguments give the same bytes (the random draws are seeded from `seed`, the
    corruption and the severity). The input is never modified. To corrupt a test set batch by batch with
    independent noise, pass a different `seed` per batch (e.g. `seed * 100003 + batch_index`).
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity must be one of {SEVERITIES}, got {severity!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images [N, H, W, 3], got shape {images.shape}")
    rng = np.random.default_rng((seed, list(CORRUPTIONS).index(name), severity))
    x = images.astype(np.float64) / 255.0
    out = CORRUPTIONS[name](x, severity, rng)
    return (out * 255.0).astype(np.float32)


def psnr(reference: np.ndarray, distorted: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two images or batches (inf when identical)."""
    mse = float(
        np.mean((np.asarray(reference, np.float64) - np.asarray(distorted, np.float64)) ** 2)
    )
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def corruption_report(
    clean_accuracy: float,
    accuracies: Mapping[str, Mapping[int, float]],
    *,
    baseline_clean_accuracy: float | None = None,
    baseline: Mapping[str, Mapping[int, float]] | None = None,
) -> dict[str, float]:
    """Summary of a corruption evaluation: `clean_accuracy`, `corruption_accuracy` (mean over every
    corruption and severity) and, with a baseline, `mce` and `relative_mce` (Hendrycks & Dietterich).

    `accuracies[name][severity]` is the accuracy under one corruption. mCE averages over corruptions the
    ratio `Σ_s err(model, c, s) / Σ_s err(baseline, c, s)`; relative mCE the ratio of the *drops* from
    clean error, `Σ_s (err(model, c, s) − err_clean(model)) / Σ_s (err(baseline, c, s) − err_clean(base))`.
    Both are 1.0 for the baseline itself; below 1 is more robust.
    """
    names = sorted(accuracies)
    if not names:
        raise ValueError("corruption_report needs the accuracy of at least one corruption")
    report = {
        "clean_accuracy": float(clean_accuracy),
        "corruption_accuracy": float(
            np.mean([accuracies[n][s] for n in names for s in accuracies[n]])
        ),
    }
    if baseline is None:
        return report
    if baseline_clean_accuracy is None:
        raise ValueError("a baseline needs its clean accuracy too (baseline_clean_accuracy=...)")
    missing = [n for n in names if n not in baseline]
    if missing:
        raise ValueError(f"the baseline has no accuracy for corruption(s) {missing}")
    ces, relative = [], []
    for n in names:
        severities = sorted(accuracies[n])
        err = np.array([1.0 - accuracies[n][s] for s in severities])
        base_err = np.array([1.0 - baseline[n][s] for s in severities])
        ces.append(err.sum() / max(base_err.sum(), 1e-12))
        drop = (err - (1.0 - clean_accuracy)).sum()
        base_drop = (base_err - (1.0 - baseline_clean_accuracy)).sum()
        relative.append(drop / base_drop if abs(base_drop) > 1e-12 else np.nan)
    report["mce"] = float(np.mean(ces))
    report["relative_mce"] = (
        float(np.nanmean(relative)) if not np.all(np.isnan(relative)) else np.nan
    )
    return report
