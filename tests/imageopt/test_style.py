"""Neural style transfer: every loss term against NumPy, optimisers, options, bad input, a real model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax.imageopt import core, images, objective, style
from tljax.imageopt.style import colour
from tljax.models.common import TapRecorder


class TinyVGG(nn.Module):
    """Three conv stages named like VGG's taps, following the tljax `taps=` contract."""

    def tap_names(self) -> tuple[str, ...]:
        return ("relu1_1", "relu2_1", "relu3_1")

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        taps = tuple(taps or ())
        TapRecorder(taps, self.tap_names(), type(self).__name__)  # refuses unknown names
        out = {}
        for i, width in enumerate((4, 8, 8), start=1):
            x = nn.relu(nn.Conv(width, (3, 3), name=f"conv{i}_1")(x))
            out[f"relu{i}_1"] = x
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return {t: out[t] for t in taps}


class Pre:
    mean = (127.0, 127.0, 127.0)
    std = (64.0, 64.0, 64.0)


TINY_OPTIONS = dict(
    content_taps=("relu2_1",),
    style_taps=("relu1_1", "relu2_1", "relu3_1"),
    sizes=(24,),
    chunk_size=8,
    tv_weight=0.0,
)


@pytest.fixture(scope="module")
def tiny():
    model = TinyVGG()
    variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 24, 24, 3)))
    rng = np.random.default_rng(0)
    # Smooth-ish content (a gradient plus blobs) and a striped style, both 0..255.
    yy, xx = np.mgrid[0:24, 0:24] / 23.0
    content = np.stack([255 * yy, 255 * xx, 128 + 60 * np.sin(6 * yy)], -1).astype(np.float32)
    stripes = 255.0 * (np.sin(xx * 20) > 0)
    style_image = np.stack([stripes, 255 - stripes, rng.uniform(0, 255, (24, 24))], -1).astype(
        np.float32
    )
    return model, variables, content, style_image


# ---------------------------------------------------------------------------------------------------- terms vs NumPy


def _np_gram(a):  # a: [n_H, n_W, n_C] → G = A Aᵀ with A = [n_C, n_H·n_W] (the seeds' convention)
    unrolled = a.reshape(-1, a.shape[-1]).T.astype(np.float64)
    return unrolled @ unrolled.T


def test_gram_and_loss_terms_equal_numpy():
    rng = np.random.default_rng(3)
    a_s, a_g, a_c = (rng.normal(size=(1, 5, 7, 6)).astype(np.float32) for _ in range(3))
    n_h, n_w, n_c = 5, 7, 6
    np.testing.assert_allclose(style.gram_matrix(a_g), _np_gram(a_g[0]), rtol=1e-5)

    want_content = np.sum((a_c.astype(np.float64) - a_g) ** 2) / (4 * n_h * n_w * n_c)
    np.testing.assert_allclose(style.content_cost(a_c, a_g), want_content, rtol=1e-5)

    want_style = np.sum((_np_gram(a_s[0]) - _np_gram(a_g[0])) ** 2) / (2 * n_h * n_w * n_c) ** 2
    np.testing.assert_allclose(style.style_layer_cost(a_s, a_g), want_style, rtol=1e-5)

    image = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    x = image.astype(np.float64) / 255
    want_tv = (np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2)) / x.size
    np.testing.assert_allclose(style.total_variation(image), want_tv, rtol=1e-5)


def test_total_loss_equals_numpy_reference(tiny):
    model, variables, content, style_image = tiny
    options = style.StyleOptions(
        **{
            **TINY_OPTIONS,
            "content_weight": 3.0,
            "style_weight": 7.0,
            "tv_weight": 0.25,
            "style_layer_weights": (0.5, 0.3, 0.2),
        }
    )
    taps_fn = objective.make_taps_fn(
        model, variables, ("relu2_1", "relu1_1", "relu3_1"), preprocessing=Pre
    )
    targets = style.build_targets(taps_fn, variables, content, [style_image], [1.0], options)
    generated = np.random.default_rng(4).uniform(0, 255, content.shape).astype(np.float32)
    total, terms = style.style_transfer_loss(
        jnp.asarray(generated), targets, variables, taps_fn, options
    )

    def acts(img):
        x = (img - 127.0) / 64.0
        out = model.apply(variables, jnp.asarray(x[None], jnp.float32), taps=model.tap_names())
        return {k: np.asarray(v, np.float64)[0] for k, v in out.items()}

    a_c, a_s, a_g = acts(content), acts(style_image), acts(generated)
    h, w, c = a_g["relu2_1"].shape
    j_content = np.sum((a_c["relu2_1"] - a_g["relu2_1"]) ** 2) / (4 * h * w * c)
    j_style = 0.0
    for tap, lam in zip(("relu1_1", "relu2_1", "relu3_1"), (0.5, 0.3, 0.2), strict=True):
        h, w, c = a_g[tap].shape
        j_style += (
            lam * np.sum((_np_gram(a_s[tap]) - _np_gram(a_g[tap])) ** 2) / (2 * h * w * c) ** 2
        )
    x = generated.astype(np.float64) / 255
    j_tv = (np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2)) / x.size
    np.testing.assert_allclose(terms["content"], j_content, rtol=1e-4)
    np.testing.assert_allclose(terms["style"], j_style, rtol=1e-4)
    np.testing.assert_allclose(terms["tv"], j_tv, rtol=1e-5)
    np.testing.assert_allclose(total, 3 * j_content + 7 * j_style + 0.25 * j_tv, rtol=1e-4)


def test_blend_weights_average_the_normalised_grams(tiny):
    model, variables, content, style_image = tiny
    options = style.StyleOptions(**TINY_OPTIONS)
    taps_fn = objective.make_taps_fn(
        model, variables, ("relu2_1", *options.style_taps), preprocessing=Pre
    )
    other = style_image[::-1, ::-1] * 0.5
    one = style.build_targets(taps_fn, variables, content, [style_image], [1.0], options)
    two = style.build_targets(taps_fn, variables, content, [other], [1.0], options)
    mixed = style.build_targets(
        taps_fn, variables, content, [style_image, other], [0.25, 0.75], options
    )
    for tap in options.style_taps:
        np.testing.assert_allclose(
            mixed.grams[tap], 0.25 * one.grams[tap] + 0.75 * two.grams[tap], rtol=1e-5
        )


# ---------------------------------------------------------------------------------------------------- optimisation


@pytest.mark.parametrize("optimizer, lr", [("adam", 8.0), ("lbfgs", 0.0)])
def test_style_content_loss_decreases(tiny, optimizer, lr):
    model, variables, content, style_image = tiny
    options = style.StyleOptions(
        **{
            **TINY_OPTIONS,
            "optimizer": optimizer,
            "learning_rate": lr or 1.0,
            "init": "noise",
            "steps": 24,
        }
    )
    result = style.stylize(
        model, variables, content, style_image, preprocessing=Pre, options=options, progress=False
    )
    loss = result.history["loss"]
    assert loss.shape == (24,) and np.all(np.isfinite(loss))
    assert loss[-1] < 0.5 * loss[0], loss
    if optimizer == "lbfgs":  # the linesearch accepts (almost) only decreasing steps
        assert np.all(np.diff(loss) <= 1e-3 * loss[0]), loss
    assert result.trace_count == 1  # 3 chunks, one compilation
    assert (
        result.image.shape == (24, 24, 3) and result.image.min() >= 0 and result.image.max() <= 255
    )


def test_lbfgs_converges_on_a_quadratic_with_known_optimum():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(12, 12))
    hessian = jnp.asarray(q @ q.T + 0.5 * np.eye(12), jnp.float32)  # SPD, condition number ~ 100
    optimum = jnp.asarray(rng.normal(size=12), jnp.float32)

    def value_fn(x, consts):
        h, x_star = consts
        d = x - x_star
        return 0.5 * d @ h @ d + 3.0

    optimizer = style.make_optimizer(style.StyleOptions(optimizer="lbfgs"))
    loop = core.ChunkedLoop(style.make_lbfgs_step(value_fn, optimizer), chunk_size=10)
    x0 = jnp.zeros(12, jnp.float32)
    (x, _), history = loop.run((x0, optimizer.init(x0)), (hessian, optimum), 40, progress=False)
    np.testing.assert_allclose(x, optimum, atol=1e-3)
    assert history["loss"][-1] == pytest.approx(3.0, abs=1e-4)
    assert loop.trace_count == 1


def test_multiscale_style_scale_and_init_from_style(tiny):
    model, variables, content, style_image = tiny
    options = style.StyleOptions(
        **{
            **TINY_OPTIONS,
            "sizes": (16, 24),
            "steps": 3,
            "init": "style",
            "style_scale": 0.75,
            "optimizer": "adam",
        }
    )
    result = style.stylize(
        model, variables, content, style_image, preprocessing=Pre, options=options, progress=False
    )
    assert result.scales == [(16, 16), (24, 24)]
    assert result.image.shape == (24, 24, 3)
    assert result.history["loss"].shape == (6,)
    assert result.trace_count == 2  # one compilation per scale


# ---------------------------------------------------------------------------------------------------- colour


def test_luminance_preservation_keeps_content_chroma():
    rng = np.random.default_rng(6)
    # Gray-ish colours, so that swapping chroma never leaves the RGB cube (no clipping).
    stylised, content = (rng.uniform(100, 150, (5, 5, 3)).astype(np.float32) for _ in range(2))
    out = style.preserve_luminance(stylised, content)
    to_yiq = colour._RGB_TO_YIQ.T
    np.testing.assert_allclose((out @ to_yiq)[..., 0], (stylised @ to_yiq)[..., 0], atol=1e-2)
    np.testing.assert_allclose((out @ to_yiq)[..., 1:], (content @ to_yiq)[..., 1:], atol=1e-2)


def test_histogram_matching_gives_reference_mean_and_covariance():
    rng = np.random.default_rng(7)
    source = rng.uniform(50, 150, (30, 30, 3)).astype(np.float32)
    reference = np.clip(rng.normal([120, 90, 60], [20, 15, 10], (30, 30, 3)), 0, 255).astype(
        np.float32
    )
    out = style.match_color_statistics(source, reference).reshape(-1, 3)
    ref = reference.reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), ref.mean(0), atol=0.1)
    np.testing.assert_allclose(
        np.cov(out, rowvar=False), np.cov(ref, rowvar=False), rtol=1e-2, atol=0.5
    )


# ---------------------------------------------------------------------------------------------------- bad input


def test_unknown_tap_and_too_large_image_fail_clearly(tiny):
    model, variables, content, style_image = tiny
    bad = style.StyleOptions(**{**TINY_OPTIONS, "content_taps": ("relu4_2",)})
    with pytest.raises(ValueError, match=r"relu4_2.*valid taps are: relu1_1, relu2_1, relu3_1"):
        style.stylize(
            model, variables, content, style_image, preprocessing=Pre, options=bad, progress=False
        )
    options = style.StyleOptions(**{**TINY_OPTIONS, "steps": 2})
    with pytest.raises(core.MemoryBudgetExceeded, match="style transfer at 24×24.*cannot be tiled"):
        style.stylize(
            model,
            variables,
            content,
            style_image,
            preprocessing=Pre,
            options=options,
            progress=False,
            memory_budget=10_000,
        )
    with pytest.raises(ValueError, match="optimizer"):
        style.StyleOptions(optimizer="sgd")
    with pytest.raises(ValueError, match="blend weights"):
        style.stylize(
            model,
            variables,
            content,
            [style_image],
            preprocessing=Pre,
            options=options,
            blend_weights=[1.0, 2.0],
            progress=False,
        )


def test_cli_reports_missing_image(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tljax.style",
            f"--content={tmp_path / 'missing.png'}",
            f"--style={tmp_path / 'missing.png'}",
            f"--out={tmp_path / 'o.png'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "image file not found" in proc.stderr and "missing.png" in proc.stderr


# ---------------------------------------------------------------------------------------------------- real model


def _load_config(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_real_registered_model_end_to_end(tmp_path):
    """EfficientNet-Lite0 with its real (offline) weights, at 32 px, through the config entry point."""
    content = images.save_image(
        tmp_path / "content.png", np.random.default_rng(8).uniform(0, 255, (40, 56, 3))
    )
    yy, xx = np.mgrid[0:48, 0:48]
    painting = np.stack([(xx // 6 % 2) * 255, (yy // 6 % 2) * 255, np.full_like(xx, 90)], -1)
    style_path = images.save_image(tmp_path / "style.png", painting)
    config = _load_config("style_lite0")
    config.content, config.styles, config.out = (
        str(content),
        (str(style_path),),
        str(tmp_path / "out.png"),
    )
    config.sizes, config.steps, config.chunk_size, config.optimizer = (32,), 6, 3, "adam"
    with pytest.raises(AttributeError):
        config.no_such_option = 1  # locked: typos are errors, not silent defaults
    result = style.run_from_config(config, progress=False)
    assert images.load_image(tmp_path / "out.png").shape == (23, 32, 3)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.trace_count == 1


def test_9000px_is_refused_from_the_estimate_before_anything_is_allocated(tiny, monkeypatch):
    """The size is checked by compiling the step from shapes: no 9000 px buffer is ever made."""
    model, variables, content, style_image = tiny

    def no_resize(*args, **kwargs):
        raise AssertionError("an image was resized to the output size before the memory check")

    monkeypatch.setattr(images, "resize_image", no_resize)
    options = style.StyleOptions(**{**TINY_OPTIONS, "sizes": (9000,), "optimizer": "adam"})
    with pytest.raises(core.MemoryBudgetExceeded, match="style transfer at 9000×9000") as err:
        style.stylize(
            model,
            variables,
            content,
            style_image,
            preprocessing=Pre,
            options=options,
            progress=False,
            memory_budget=2**30,
        )
    # The estimate counts at least the image and Adam's two moments, each 9000² × 3 float32.
    assert err.value.needed >= 3 * 9000 * 9000 * 3 * 4
    assert "cannot be tiled" in str(err.value)
