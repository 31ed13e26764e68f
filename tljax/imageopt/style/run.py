"""Neural style transfer (Gatys, Ecker & Bethge 2015), compiled end to end with JAX: the driver and its config.

What neural-style users ask for most is here: init from content / style / noise; Adam or L-BFGS (optax's
`lbfgs` with its zoom linesearch); several style images with blend weights; colour preservation
(luminance-only transfer in YIQ, or matching the style images' colour statistics to the content);
style scale; coarse-to-fine over several sizes. The optimisation runs inside jit in chunks of
`lax.scan` steps (`tljax.imageopt.core.ChunkedLoop`), compiled once per size, and each size's memory
need is estimated (compiled from shapes) before anything is allocated.

Entry points: `stylize(...)` for arrays, `run_from_config(config)` for the CLI (`python -m tljax.style`);
`default_config()` is the documented config, per-backbone values are `configs/style_*.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.errors import ConfigError
from tljax.imageopt import backbone, images, objective
from tljax.imageopt.core import ChunkedLoop, MemoryBudgetExceeded, memory_budget_bytes
from tljax.imageopt.objective import MeanStd
from tljax.imageopt.options import read_options, tool_config
from tljax.imageopt.style.colour import match_color_statistics, preserve_luminance
from tljax.imageopt.style.optimize import (
    StyleOptions,
    build_targets,
    make_optimizer,
    make_step,
    style_transfer_loss,
)
from tljax.typing import Config, PyTree

__all__ = ["StyleResult", "default_config", "options_from_config", "run_from_config", "stylize"]


@dataclasses.dataclass
class StyleResult:
    """Output of `stylize`: the image `[H, W, 3]` in 0..255, per-step metrics and the final loss terms."""

    image: np.ndarray
    history: dict[str, np.ndarray]
    final_terms: dict[str, float]
    scales: list[tuple[int, int]]
    trace_count: int


def _shape_for(image: np.ndarray, max_side: int) -> tuple[int, int]:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


_NO_TILING_HINT = (
    "style transfer cannot be tiled (each Gram matrix spans the whole image): lower `sizes`, use a "
    "lighter backbone, or bf16 (dtype=bfloat16)"
)


def stylize(
    model: Any,
    variables: PyTree,
    content: np.ndarray,
    styles: Sequence[np.ndarray] | np.ndarray,
    *,
    preprocessing: MeanStd | None,
    options: StyleOptions | None = None,
    blend_weights: Sequence[float] | None = None,
    progress: bool = True,
    memory_budget: int | None = None,
) -> StyleResult:
    """Stylises `content` with `styles` (RGB `[H, W, 3]` 0..255 arrays) using a fixed `model`.

    `blend_weights` weight several style images (normalised to sum to 1; default equal). Runs one
    chunked, jit-compiled optimisation per entry of `options.sizes`, coarse to fine. `memory_budget`
    (bytes; default 80% of free device memory) turns an image too large for the device into a
    `MemoryBudgetExceeded` before anything runs.
    """
    options = options or StyleOptions()
    if isinstance(styles, np.ndarray) and styles.ndim == 3:
        styles = [styles]
    styles = [np.asarray(s, np.float32) for s in styles]
    if not styles:
        raise ConfigError("at least one style image is needed")
    if blend_weights is None:
        blend_weights = [1.0] * len(styles)
    if len(blend_weights) != len(styles):
        raise ConfigError(f"{len(blend_weights)} blend weights for {len(styles)} style images")
    total_weight = float(sum(blend_weights))
    if total_weight <= 0 or min(blend_weights) < 0:
        raise ConfigError(
            f"blend weights must be >= 0 with a positive sum, got {list(blend_weights)}"
        )
    blend_weights = [float(w) / total_weight for w in blend_weights]

    content = np.asarray(content, np.float32)
    taps_fn = objective.make_taps_fn(
        model, variables, (*options.content_taps, *options.style_taps), preprocessing=preprocessing
    )
    optimizer = make_optimizer(options)
    loop = ChunkedLoop(
        make_step(taps_fn, options, optimizer),
        options.chunk_size,
        desc=f"style ({options.optimizer})",
        memory_budget=memory_budget if memory_budget is not None else memory_budget_bytes(),
        cpu_inner=options.cpu_loop,
    )
    rng = np.random.default_rng(options.seed)
    histories: list[dict[str, np.ndarray]] = []
    scales: list[tuple[int, int]] = []
    image: np.ndarray | None = None
    content_at_scale = content
    for size in options.sizes:
        hw = _shape_for(content, size)
        scales.append(hw)
        style_side = max(16, round(size * options.style_scale))
        style_hws = [_shape_for(s, style_side) for s in styles]
        # Estimate first: compile this scale's step from shapes alone (XLA's memory analysis), so a size
        # that cannot fit is refused before the targets' forward passes or the step allocate anything.
        _check_fits(loop, optimizer, taps_fn, variables, hw, style_hws, blend_weights, options)
        content_at_scale = images.resize_image(content, hw)
        styles_at_scale = [images.resize_image(s, shw) for s, shw in zip(styles, style_hws)]
        if options.preserve_colors == "histogram":
            styles_at_scale = [match_color_statistics(s, content_at_scale) for s in styles_at_scale]
        targets = build_targets(
            taps_fn, variables, content_at_scale, styles_at_scale, blend_weights, options
        )

        if image is None:
            image = _initial_image(options.init, content_at_scale, styles_at_scale[0], rng)
        else:  # coarse-to-fine: the previous scale's result, upsampled
            image = images.resize_image(image, hw)
        start = jnp.asarray(image, jnp.float32)  # a fresh buffer: the loop donates it
        carry = (start, optimizer.init(start))
        consts = (variables, targets)
        carry, history = loop.run(carry, consts, options.steps, progress=progress)
        image = np.asarray(carry[0])
        histories.append(history)

    assert image is not None  # `sizes` is never empty (StyleOptions checks)
    _, final_terms = jax.jit(style_transfer_loss, static_argnums=(3, 4))(
        jnp.asarray(image), targets, variables, taps_fn, options
    )
    image = np.clip(image, 0.0, 255.0)
    if options.preserve_colors == "luminance":
        image = preserve_luminance(image, content_at_scale)
    history = {k: np.concatenate([h[k] for h in histories]) for k in histories[0]}
    return StyleResult(
        image=image,
        history=history,
        final_terms={k: float(v) for k, v in final_terms.items()},
        scales=scales,
        trace_count=loop.trace_count,
    )


def _check_fits(
    loop: ChunkedLoop,
    optimizer: optax.GradientTransformation,
    taps_fn: objective.TapsFn,
    variables: PyTree,
    hw: tuple[int, int],
    style_hws: Sequence[tuple[int, int]],
    blend_weights: Sequence[float],
    options: StyleOptions,
) -> None:
    """Compiles the step for output size `hw` from shapes only; `MemoryBudgetExceeded` if it cannot fit."""
    image = jax.ShapeDtypeStruct((*hw, 3), jnp.float32)
    content = jax.ShapeDtypeStruct((*hw, 3), jnp.float32)
    styles = [jax.ShapeDtypeStruct((*shw, 3), jnp.float32) for shw in style_hws]
    targets = jax.eval_shape(
        lambda c, s, v: build_targets(taps_fn, v, c, s, blend_weights, options),
        content,
        styles,
        variables,
    )
    carry = (image, jax.eval_shape(optimizer.init, image))
    try:
        loop.compile(carry, (variables, targets))
    except MemoryBudgetExceeded as err:
        raise MemoryBudgetExceeded(
            err.needed, err.budget, f"style transfer at {hw[1]}×{hw[0]}", _NO_TILING_HINT
        ) from None


def _initial_image(
    init: str, content: np.ndarray, style: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    if init == "content":
        return content.copy()
    if init == "style":
        return images.resize_image(style, content.shape[:2])
    # White noise around mid-gray (Gatys' random init); the seed makes runs repeatable.
    return np.clip(127.5 + 64.0 * rng.standard_normal(content.shape), 0.0, 255.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Config form (`python -m tljax.style`, configs/style_*.py)


def default_config() -> Config:
    """The style-transfer run config: I/O keys plus every `StyleOptions` field with its default.

    Keys: `model`, `weights` ("default" = the model's registered weights, another registered name, a
    .pth/.safetensors path, or "random"), `dtype`, `content` (a path), `styles` (a tuple of paths),
    `style_blend_weights` (a tuple, () = equal), `out`, then the `StyleOptions` fields (documented
    there, real types: tuples of taps and sizes). The defaults are neural-style's VGG19 setting;
    `configs/style_lite0.py` (the CLI's default), `style_vgg19.py` and `style_resnet50.py` hold the
    per-backbone values. Locked: setting a key that does not exist raises.
    """
    io = dict(model="vgg19", weights="default", dtype="float32", content="", styles=())
    return tool_config({**io, "style_blend_weights": (), "out": "stylized.png"}, StyleOptions())


def options_from_config(config: Config) -> StyleOptions:
    """The `StyleOptions` of a `default_config()`-shaped config (validated by `StyleOptions`)."""
    return read_options(config, StyleOptions)


def run_from_config(config: Config, *, progress: bool = True) -> StyleResult:
    """Checks `config.out`, loads the images and the backbone, stylises, writes `config.out` atomically."""
    from pathlib import Path

    style_options = options_from_config(config)
    if not config.content or not config.styles:
        raise ConfigError(
            "both a content image (--content) and at least one style image (--style) are needed"
        )
    images.check_writable(config.out)
    content = images.load_image(config.content)
    styles = [images.load_image(p) for p in config.styles]
    model, variables, preprocessing = backbone.from_config(config)
    result = stylize(
        model,
        variables,
        content,
        styles,
        preprocessing=preprocessing,
        options=style_options,
        blend_weights=tuple(config.style_blend_weights) or None,
        progress=progress,
    )
    out = images.save_image(config.out, result.image)
    print(
        f"wrote {Path(out).resolve()}  ({result.image.shape[1]}×{result.image.shape[0]}, final terms "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.final_terms.items())
        + ")"
    )
    return result
