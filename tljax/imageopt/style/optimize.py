"""One style-transfer problem: its options, targets, loss and optimisation step.

The generated image G (0..255 RGB pixels) minimises J(G) = α·J_content + β·Σ_l λ_l·J_style^l + γ·TV
(terms in `tljax.imageopt.style.losses`). Several style images blend by averaging their normalised Gram
matrices with the given weights. `StyleOptions` is the one definition of every option and its default;
the run config (`tljax.imageopt.style.run.default_config`) is built from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.errors import ConfigError
from tljax.imageopt import objective
from tljax.imageopt.options import check_choices, checked_weights
from tljax.imageopt.style.losses import (
    content_cost,
    normalised_gram,
    style_cost_from_target,
    total_variation,
)
from tljax.typing import PyTree

Array = jax.Array

__all__ = [
    "StyleOptions",
    "StyleTargets",
    "build_targets",
    "make_lbfgs_step",
    "make_optimizer",
    "make_step",
    "style_transfer_loss",
]


@dataclasses.dataclass(frozen=True)
class StyleOptions:
    """Everything that shapes one style-transfer run: the one definition of each option and its default.

    The defaults are neural-style's VGG19 setting; per-backbone values live in `configs/style_*.py`.

    Attributes:
      content_taps: taps compared with the content image (averaged when several).
      style_taps: taps whose Gram matrices carry the style.
      style_layer_weights: λ_l per style tap; () → equal weights 1/L (the seeds' 0.2 × 5).
      content_weight, style_weight, tv_weight: α, β, γ.
      sizes: longer side of the output at each scale, coarse to fine; each scale starts from the previous
        result upsampled ("multi-scale"/"multires" in neural-style). One value → single scale.
      steps: optimisation steps per scale.
      style_scale: the style images are resized to `style_scale × size` (their longer side); smaller
        values give finer, larger values coarser brush strokes.
      init: "content", "style" (the first style image stretched to the content's shape) or "noise".
      optimizer: "adam" or "lbfgs" (optax.lbfgs with its zoom linesearch).
      learning_rate: Adam step in pixel units (0..255 scale); ignored by L-BFGS.
      lbfgs_memory: number of (s, y) pairs L-BFGS keeps.
      preserve_colors: "none", "luminance" (transfer only the YIQ luminance; the content's chroma is
        kept) or "histogram" (the style images' colour mean/covariance are matched to the content first).
      edge_pad: pixels of reflection border added around every image before the network, whose
        activations are cropped back out. With EfficientNet-Lite the activations at the network's
        border (zero padding of BN-shifted features, TF's asymmetric 'SAME') pull a band of coloured
        noise into the top rows; excluding them removes it. 0 for VGG (as neural-style).
      chunk_size: steps per chunk of `core.ChunkedLoop` (progress-bar granularity).
      cpu_loop: how a chunk runs on XLA:CPU, "scan" or "python" (one compiled step per call): which is
        faster depends on the network (`core.ChunkedLoop`); accelerators always use `lax.scan`.
      seed: for the noise init.
    """

    content_taps: tuple[str, ...] = ("relu4_2",)
    style_taps: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[float, ...] = ()
    content_weight: float = 10.0
    style_weight: float = 40.0
    tv_weight: float = 0.0
    sizes: tuple[int, ...] = (512,)
    steps: int = 300
    style_scale: float = 1.0
    init: str = "content"
    optimizer: str = "lbfgs"
    learning_rate: float = 2.0
    lbfgs_memory: int = 10
    preserve_colors: str = "none"
    edge_pad: int = 0
    chunk_size: int = 25
    cpu_loop: str = "scan"
    seed: int = 0

    def __post_init__(self):
        # Config values may arrive as lists (YAML, ConfigDict overrides): store tuples.
        for name in ("content_taps", "style_taps", "sizes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        weights = checked_weights(self.style_layer_weights, self.style_taps, "style_layer_weights")
        object.__setattr__(self, "style_layer_weights", weights)
        choices = {
            "init": ("content", "style", "noise"),
            "optimizer": ("adam", "lbfgs"),
            "preserve_colors": ("none", "luminance", "histogram"),
            "cpu_loop": ("scan", "python", "unrolled"),
        }
        check_choices(self, choices)
        if not self.content_taps or not self.style_taps:
            raise ConfigError("style transfer needs at least one content tap and one style tap")
        if not self.sizes or min(self.sizes) < 16:
            raise ConfigError(
                f"sizes must be a non-empty list of sides >= 16 pixels, got {self.sizes}"
            )
        if self.steps < 0 or self.style_scale <= 0:
            raise ConfigError("steps must be >= 0 and style_scale > 0")

    @property
    def layer_weights(self) -> tuple[float, ...]:
        """λ_l per style tap: `style_layer_weights`, or 1/L each when it is empty."""
        if self.style_layer_weights:
            return self.style_layer_weights
        return (1.0 / len(self.style_taps),) * len(self.style_taps)


class StyleTargets(NamedTuple):
    """What G is compared with: content activations `{tap: [1, h, w, C]}` and blended style Grams `{tap: [C, C]}`."""

    content: dict[str, Array]
    grams: dict[str, Array]


def build_targets(
    taps_fn: objective.TapsFn,
    variables: PyTree,
    content: Array | np.ndarray,
    styles: Sequence[Array | np.ndarray],
    blend_weights: Sequence[float],
    options: StyleOptions,
) -> StyleTargets:
    """Content activations of `content` and the blend-weighted normalised Grams of `styles`."""
    features = jax.jit(lambda x, v: _padded_taps(taps_fn, x, v, options.edge_pad))
    content_acts = features(jnp.asarray(content), variables)
    content_targets = {t: content_acts[t] for t in options.content_taps}
    grams: dict[str, Array] = {}
    for style, weight in zip(styles, blend_weights, strict=True):
        acts = features(jnp.asarray(style), variables)
        for t in options.style_taps:
            term = weight * normalised_gram(acts[t])
            grams[t] = grams[t] + term if t in grams else term
    return StyleTargets(content_targets, grams)


def _padded_taps(
    taps_fn: objective.TapsFn, image: Array, variables: PyTree, pad: int
) -> dict[str, Array]:
    """Activations of `image [H, W, 3]` seen through a reflection border (see `StyleOptions.edge_pad`).

    The image is mirrored by `pad` pixels per side, and every activation map is cropped by the same
    margin (scaled to its resolution), so the network's own border - where zero padding makes
    spurious responses - never enters the loss, and the image's border rows are seen like interior ones.
    """
    if pad <= 0:
        return taps_fn(image, variables)
    pad = min(pad, image.shape[0] - 1, image.shape[1] - 1)  # reflection needs pad < size
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = {}
    for name, act in taps_fn(padded, variables).items():
        margin_h = round(pad * act.shape[1] / padded.shape[0])
        margin_w = round(pad * act.shape[2] / padded.shape[1])
        out[name] = act[:, margin_h : act.shape[1] - margin_h, margin_w : act.shape[2] - margin_w]
    return out


def style_transfer_loss(
    image: Array,
    targets: StyleTargets,
    variables: PyTree,
    taps_fn: objective.TapsFn,
    options: StyleOptions,
) -> tuple[Array, dict[str, Array]]:
    """J(G) and its unweighted terms `{"content", "style", "tv"}` (style = Σ_l λ_l·J_style^l)."""
    acts = _padded_taps(taps_fn, image, variables, options.edge_pad)
    j_content = jnp.zeros((), jnp.float32)
    for t in options.content_taps:
        j_content = j_content + content_cost(targets.content[t], acts[t])
    j_content = j_content / len(options.content_taps)
    j_style = jnp.zeros((), jnp.float32)
    for t, w in zip(options.style_taps, options.layer_weights, strict=True):
        j_style = j_style + w * style_cost_from_target(targets.grams[t], acts[t])
    j_tv = total_variation(image)
    total = (
        options.content_weight * j_content
        + options.style_weight * j_style
        + options.tv_weight * j_tv
    )
    return total, {"content": j_content, "style": j_style, "tv": j_tv}


# ----------------------------------------------------------------------------------------------------
# Optimisation steps (carry = (image, optimiser state); consts = (variables, targets))


def make_step(
    taps_fn: objective.TapsFn, options: StyleOptions, optimizer: optax.GradientTransformation
):
    """The per-step function for `core.ChunkedLoop`: one Adam or one L-BFGS (with linesearch) update."""

    def loss_only(image, consts):
        variables, targets = consts
        return style_transfer_loss(image, targets, variables, taps_fn, options)[0]

    if options.optimizer == "adam":

        def adam_step(carry, consts):
            image, opt_state = carry
            variables, targets = consts
            (loss, terms), grad = jax.value_and_grad(style_transfer_loss, has_aux=True)(
                image, targets, variables, taps_fn, options
            )
            updates, opt_state = optimizer.update(grad, opt_state, image)
            # Projected Adam: pixels stay displayable, so what is optimised is what gets saved.
            image = jnp.clip(optax.apply_updates(image, updates), 0.0, 255.0)
            return (image, opt_state), {"loss": loss, **terms}

        return adam_step

    return make_lbfgs_step(loss_only, optimizer)


def make_lbfgs_step(value_fn, optimizer: optax.GradientTransformationExtraArgs):
    """A `core.ChunkedLoop` step doing one L-BFGS iteration (with its linesearch) on `value_fn(x, consts)`.

    carry = (x, optimiser state). Generic over the objective so it can be tested on a quadratic whose
    optimum is known.
    """

    def lbfgs_step(carry, consts):
        x, opt_state = carry

        def value_at(y):
            return value_fn(y, consts)

        # Reuses the value and gradient the linesearch already computed at the accepted point, so an
        # iteration costs one forward/backward plus the linesearch's extra evaluations (often none).
        value, grad = optax.value_and_grad_from_state(value_at)(x, state=opt_state)
        updates, opt_state = optimizer.update(
            grad, opt_state, x, value=value, grad=grad, value_fn=value_at
        )
        # No clipping here: projecting would break the curvature pairs L-BFGS relies on. Pixels that
        # wander out of range are clipped once, when the result is returned.
        return (optax.apply_updates(x, updates), opt_state), {"loss": value}

    return lbfgs_step


def make_optimizer(options: StyleOptions) -> optax.GradientTransformation:
    """Adam (pixel-unit learning rate) or optax's L-BFGS with its default zoom linesearch."""
    if options.optimizer == "adam":
        return optax.adam(options.learning_rate)
    return optax.lbfgs(memory_size=options.lbfgs_memory)
