"""Activation maximisation: parameterisation, transforms, the optimisation itself, and bad input."""

from __future__ import annotations

import glob
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata

from tljax.imageopt import featvis
from tljax.imageopt.images import resize_image
from tljax.models.common import TapRecorder


class TinyCNN(nn.Module):
    """Three conv+ReLU layers (two stride-2), following the tljax `apply(..., taps=...)` contract."""

    @staticmethod
    def tap_names() -> tuple[str, ...]:
        return ("conv1", "conv2", "conv3")

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        rec = TapRecorder(taps, self.tap_names(), "TinyCNN")
        for name, features, stride in (("conv1", 8, 1), ("conv2", 12, 2), ("conv3", 16, 2)):
            x = nn.relu(nn.Conv(features, (3, 3), strides=stride, padding=1, name=name)(x))
            if rec.add(name, x):
                return rec.outputs
        return x.mean((1, 2))


class Normalise:
    """Stand-in for `tljax.weights.Preprocessing` (mean/std in 0..255 units)."""

    mean = (127.0, 127.0, 127.0)
    std = (64.0, 64.0, 64.0)


@pytest.fixture(scope="module")
def tiny():
    """TinyCNN with He-normal weights drawn by NumPy (jax.random would compile a kernel per shape)."""
    model = TinyCNN()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    rng = np.random.default_rng(0)

    def make(path, leaf):
        if path[-1].key == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in), jnp.float32)
        # Slightly positive biases: with zero biases every unit is exactly 0 on the gray start image and
        # ReLU's zero gradient there would leave a unit objective stuck (real networks have BN biases).
        return jnp.full(leaf.shape, 0.05, leaf.dtype)

    return model, jax.tree_util.tree_map_with_path(make, shapes)


def _natural_images(hw: tuple[int, int]) -> np.ndarray:
    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    return np.stack([resize_image(p.astype(np.float32), hw) for p in photos])


def _foolbox_imagenet_photos() -> list[str]:
    """The 20 ImageNet photos shipped as files in the foolbox wheel (located, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, (
        "foolbox files missing from the venv"
    )
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return sorted(glob.glob(os.path.join(folder, "imagenet_*.jpg")))


def test_colour_matrix_is_reproduced_from_imagenet_photos():
    from PIL import Image

    files = _foolbox_imagenet_photos()
    assert len(files) == 20
    recomputed = featvis.color_correlation_sqrt(
        np.asarray(Image.open(f).convert("RGB")) for f in files
    )
    np.testing.assert_allclose(recomputed, featvis.COLOR_CORRELATION_SQRT, atol=1e-4)
    # It is a square root of the covariance: M Mᵀ = Σ.
    pixels = np.concatenate(
        [np.asarray(Image.open(f).convert("RGB"), np.float64).reshape(-1, 3) / 255 for f in files]
    )
    np.testing.assert_allclose(recomputed @ recomputed.T, np.cov(pixels, rowvar=False), atol=1e-4)


def test_fourier_parameterisation_starts_gray_and_stays_in_range():
    params = featvis.fourier_init(0, 2, (24, 20))
    assert params.shape == (2, 2, 3, 24, 11)
    render = jax.jit(lambda p: featvis.fourier_to_rgb(p, (24, 20)))
    image = render(params)
    assert image.shape == (2, 24, 20, 3)
    assert float(jnp.abs(image - 0.5).max()) < 0.1  # small random start → near mid-gray
    big = render(100 * params)
    assert (
        float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    )  # the sigmoid keeps any parameter valid


def test_fourier_gradients_favour_low_frequencies():
    # The 1/f scaling: a pixel-space gradient that is white noise moves low frequencies most.
    params = jnp.zeros((1, 2, 3, 32, 17))
    noise = jnp.asarray(np.random.default_rng(1).standard_normal((1, 32, 32, 3)), jnp.float32)
    grad = jax.jit(
        jax.grad(lambda p: (featvis.fourier_to_rgb(p, (32, 32), decorrelate=False) * noise).sum())
    )(params)
    magnitude = jnp.abs(grad).mean(axis=(0, 1, 2))  # [32, 17]
    assert float(magnitude[1, 1]) > 4 * float(magnitude[16, 16])


def test_transforms_are_seeded_static_shaped_and_identity_when_disabled():
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 40, 40, 3)), jnp.float32)
    transforms = featvis.RobustnessTransforms()
    apply = jax.jit(transforms)
    out = apply(jax.random.key(5), images)
    assert out.shape == (3, *transforms.output_hw((40, 40)), 3)
    np.testing.assert_array_equal(out, apply(jax.random.key(5), images))
    assert not np.allclose(out, apply(jax.random.key(6), images))
    assert not np.allclose(out[0], out[1])  # each image draws its own transform
    identity = featvis.RobustnessTransforms(
        pad=0, jitter=0, scales=(1.0,), angles=(0.0,), final_jitter=0
    )
    np.testing.assert_allclose(jax.jit(identity)(jax.random.key(0), images), images, atol=1e-5)


def test_activation_maximisation_beats_natural_images_and_compiles_once(tiny):
    model, variables = tiny
    channels = [0, 5, 11]
    result = featvis.visualize_channels(
        model,
        variables,
        "conv2",
        channels,
        preprocessing=Normalise,
        size=32,
        steps=48,
        learning_rate=0.2,
        chunk_size=8,
        progress=False,
        transforms=featvis.RobustnessTransforms(pad=2, jitter=2, final_jitter=1),
    )
    assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.trace_count == 1  # six chunks, one trace
    assert result.history[-1] > result.history[0]
    # The objective re-measured on the saved uint8 images, against the best of four real photos.
    optimised = featvis.objective_values(
        model,
        variables,
        result.images.astype(np.float32),
        "conv2",
        channels,
        preprocessing=Normalise,
    )
    natural = featvis.objective_values(
        model, variables, _natural_images((32, 32)), "conv2", channels, preprocessing=Normalise
    )
    mine = np.diag(optimised)  # image b was optimised for channels[b]
    np.testing.assert_allclose(mine, result.objective, rtol=0.05, atol=1e-3)
    # A 3-layer random net is nearly linear, so photos already come close for some channels; the real
    # EfficientNet-Lite0 run (README / tljax.visualize) reports ratios of 5-9x over the best photo.
    # Channel 11 of this random net responds to overall brightness (about 1.0 on every photo), so the
    # optimum is only ~1.4x a bright photo; the other two must be far above every photo.
    over_best = mine / natural.max(axis=0)
    assert over_best[0] > 5 and over_best[1] > 3 and over_best[2] > 1.2, over_best
    assert (mine[:2] > 10 * natural.mean(axis=0)[:2]).all(), (mine, natural)


def test_unit_objective_raises_the_centre_unit(tiny):
    model, variables = tiny
    result = featvis.visualize_channels(
        model,
        variables,
        "conv3",
        [2],
        preprocessing=Normalise,
        size=32,
        steps=32,
        objective="unit",
        chunk_size=16,
        progress=False,
        transforms=None,
    )
    natural = featvis.objective_values(
        model,
        variables,
        _natural_images((32, 32)),
        "conv3",
        [2],
        preprocessing=Normalise,
        objective="unit",
    )
    assert result.objective[0] > 3 * max(float(natural.max()), 1e-3)


def test_bad_tap_and_channel_give_clear_errors(tiny):
    model, variables = tiny
    with pytest.raises(ValueError, match="valid taps are: conv1, conv2, conv3"):
        featvis.visualize_channels(model, variables, "conv9", [0], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"tap 'conv2' has 12 channels \(0..11\)"):
        featvis.visualize_channels(model, variables, "conv2", [3, 12], steps=1, progress=False)
    with pytest.raises(ValueError, match="tap:channel"):
        featvis.parse_target("conv2")
    assert featvis.parse_target("blocks.10:7") == ("blocks.10", 7)


def test_channel_grid_tiles_every_image():
    colours = [(10, 200, 30), (200, 10, 30), (30, 10, 200), (200, 200, 7), (7, 200, 200)]
    images = np.stack([np.broadcast_to(np.asarray(c, np.uint8), (10, 12, 3)) for c in colours])
    grid = featvis.channel_grid(images, [str(i) for i in range(5)], columns=3, gap=2)
    assert grid.shape == (2 + 2 * (10 + 14 + 2), 2 + 3 * (12 + 2), 3)
    for colour in colours:  # every tile pasted whole (labels are gray text, never these colours)
        assert (grid == np.asarray(colour, np.uint8)).all(-1).sum() == 10 * 12


def test_visualize_main_featvis_writes_the_grid_and_reports_ratios(tiny, tmp_path, monkeypatch):
    from PIL import Image

    from tljax import visualize
    from tljax.imageopt import backbone, cli

    model, variables = tiny
    monkeypatch.setattr(backbone, "load_backbone", lambda *a, **k: (model, variables, Normalise))
    config = featvis.default_config()
    config.model, config.weights, config.tap = "tiny", "random", "conv2"
    config.channels = cli.parse_channels("0-1,5")
    config.out = str(tmp_path / "grid.png")
    config.size, config.steps, config.learning_rate, config.transforms = 32, 16, 0.2, False
    report = visualize.run_from_config(config)
    assert report["result"].channels == [0, 1, 5]
    assert report["ratio"].shape == (3,) and report["natural_max"].shape == (
        3,
    )  # vs 20 ImageNet photos
    grid = np.asarray(Image.open(report["path"]))
    assert grid.shape[2] == 3 and grid.shape[0] > 2 * 32 and grid.shape[1] > 2 * 32
    with pytest.raises(ValueError, match="bad --channels"):
        cli.parse_channels("0-x")
