"""The corruption suite: deterministic, monotone in severity, and equal to NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.assets import foolbox_imagenet_photos
from tljax.data import corruptions


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Two real photos at 64 px (the spatial parameters scale with the size)."""
    images = [
        np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
        for path, _ in foolbox_imagenet_photos()[:2]
    ]
    return np.stack(images)


@pytest.mark.parametrize("name", sorted(corruptions.CORRUPTIONS))
def test_deterministic_in_range_and_psnr_falls_with_severity(photos, name):
    original = photos.copy()
    outputs = [corruptions.corrupt(photos, name, s, seed=3) for s in corruptions.SEVERITIES]
    again = corruptions.corrupt(photos, name, 3, seed=3)
    assert outputs[2].tobytes() == again.tobytes()
    assert np.array_equal(photos, original)  # the input is untouched
    for out in outputs:
        assert out.shape == photos.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
    values = [corruptions.psnr(photos, out) for out in outputs]
    # Strictly falling, except JPEG's qualities 18 and 15 which are close enough to tie on small photos.
    assert all(
        b < a + (0.05 if name == "jpeg_compression" else 0.0) for a, b in zip(values, values[1:])
    ), values
    assert values[0] > values[-1] + 1.0, values


def test_noise_seeds_differ():
    images = np.full((1, 8, 8, 3), 128, np.uint8)
    a = corruptions.corrupt(images, "gaussian_noise", 2, seed=0)
    b = corruptions.corrupt(images, "gaussian_noise", 2, seed=1)
    assert not np.array_equal(a, b)


def test_gaussian_and_shot_noise_have_the_stated_statistics():
    """On a flat grey image: Gaussian noise has std c; Poisson noise keeps the mean and has variance x/c."""
    flat = np.full((4, 64, 64, 3), 0.5 * 255, np.float32)
    noisy = corruptions.corrupt(flat, "gaussian_noise", 1, seed=0) / 255.0
    np.testing.assert_allclose(noisy.std(), 0.08, rtol=0.03)
    shot = corruptions.corrupt(flat, "shot_noise", 3, seed=0) / 255.0  # c = 12
    np.testing.assert_allclose(shot.mean(), 0.5, atol=0.01)
    np.testing.assert_allclose(shot.var(), 0.5 / 12, rtol=0.06)


def test_contrast_matches_a_per_pixel_reference(photos):
    out = corruptions.corrupt(photos[:1], "contrast", 2, seed=0)
    x = photos[0].astype(np.float64) / 255.0
    expected = np.empty_like(x)
    for ch in range(3):
        m = x[:, :, ch].sum() / x[:, :, ch].size
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                expected[i, j, ch] = min(max((x[i, j, ch] - m) * 0.3 + m, 0.0), 1.0)
    np.testing.assert_allclose(out[0], expected * 255.0, atol=1e-3)


def test_defocus_matches_a_direct_convolution():
    """A 10-px-wide defocus at severity 4 (radius 8·10/224 < 1 px → the 0.5-px disk) equals a hand-written
    reflect-padded convolution with the same kernel."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 12, 10, 3)).astype(np.uint8)
    out = corruptions.corrupt(image, "defocus_blur", 4, seed=0)
    radius = 8 * min(12, 10) / 224
    kernel = corruptions.disk_kernel(max(radius, 0.5), 0.5)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
    k = kernel.shape[0] // 2
    x = image[0].astype(np.float64) / 255.0
    padded = np.pad(
        x, ((k, k), (k, k), (0, 0)), mode="symmetric"
    )  # scipy "reflect" == NumPy "symmetric"
    expected = np.zeros_like(x)
    for di in range(-k, k + 1):
        for dj in range(-k, k + 1):
            # convolution flips the kernel (symmetric here, but keep the definition honest)
            expected += kernel[k - di, k - dj] * padded[k + di : k + di + 12, k + dj : k + dj + 10]
    np.testing.assert_allclose(out[0], np.clip(expected, 0, 1) * 255.0, atol=1e-3)


def test_impulse_noise_hits_the_stated_fraction():
    grey = np.full((2, 64, 64, 3), 100, np.uint8)
    out = corruptions.corrupt(grey, "impulse_noise", 4, seed=0)  # c = 0.17
    changed = out != 100
    np.testing.assert_allclose(changed.mean(), 0.17, atol=0.01)
    assert set(np.unique(out[changed])) == {0.0, 255.0}


def test_bad_arguments_name_the_valid_ones():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="known: gaussian_noise"):
        corruptions.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match=r"one of \(1, 2, 3, 4, 5\)"):
        corruptions.corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        corruptions.corrupt(images[0], "contrast", 1)


def test_report_mce_against_a_hand_computation():
    base = {"a": {1: 0.8, 2: 0.6}, "b": {1: 0.5, 2: 0.3}}
    model = {"a": {1: 0.85, 2: 0.7}, "b": {1: 0.5, 2: 0.4}}
    report = corruptions.corruption_report(0.9, model, baseline_clean_accuracy=0.9, baseline=base)
    assert report["clean_accuracy"] == 0.9
    np.testing.assert_allclose(report["corruption_accuracy"], (0.85 + 0.7 + 0.5 + 0.4) / 4)
    ce_a = (0.15 + 0.3) / (0.2 + 0.4)
    ce_b = (0.5 + 0.6) / (0.5 + 0.7)
    np.testing.assert_allclose(report["mce"], (ce_a + ce_b) / 2)
    rel_a = (0.05 + 0.2) / (0.1 + 0.3)
    rel_b = (0.4 + 0.5) / (0.4 + 0.6)
    np.testing.assert_allclose(report["relative_mce"], (rel_a + rel_b) / 2)
    itself = corruptions.corruption_report(0.9, base, baseline_clean_accuracy=0.9, baseline=base)
    assert itself["mce"] == pytest.approx(1.0) and itself["relative_mce"] == pytest.approx(1.0)
