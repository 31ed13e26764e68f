"""Neural style transfer (Gatys, Ecker & Bethge 2015), compiled end to end with JAX.

The generated image G (0..255 RGB pixels) minimises

    J(G) = α·J_content(C, G) + β·Σ_l λ_l·J_style^l(S, G) + γ·TV(G)

with the normalisations of the deeplearning.ai seeds, for activations a of shape n_H × n_W × n_C:

    J_content   = 1 / (4·n_H·n_W·n_C) · Σ (a_C − a_G)²
    G           = Aᵀ·A, A the activations unrolled to [n_H·n_W, n_C]          (the Gram matrix, n_C × n_C)
    J_style^l   = 1 / (2·n_H·n_W·n_C)² · Σ (G_S − G_G)²
    TV          = mean over pixels and channels of the squared neighbour differences of G/255

When the style image has a different size from G (style scale, non-square images), each Gram matrix is
divided by its own n_H·n_W first, which leaves the formula above unchanged for equal sizes and makes
the style target independent of the style image's size. Several style images blend by averaging their
normalised Gram matrices with the given weights.

What neural-style users ask for most is here: init from content / style / noise; Adam or L-BFGS (optax's
`lbfgs` with its zoom linesearch); several style images with blend weights; colour preservation
(luminance-only transfer in YIQ, or matching the style images' colour statistics to the content);
style scale; coarse-to-fine over several sizes. The optimisation runs inside jit in chunks of
`lax.scan` steps (`tljax.imageopt.core.ChunkedLoop`), compiled once per size.

Entry points: `stylize(...)` for arrays, `run_from_config(config)` for the CLI (`python -m tljax.style`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.imageopt import core
from tljax.imageopt.core import Array, MeanStd, PyTree

__all__ = [
    "MODEL_DEFAULTS",
    "StyleOptions",
    "StyleResult",
    "StyleTargets",
    "content_cost",
    "default_config",
    "gram_matrix",
    "make_lbfgs_step",
    "make_optimizer",
    "make_step",
    "match_color_statistics",
    "preserve_luminance",
    "run_from_config",
    "style_defaults",
    "style_layer_cost",
    "style_transfer_loss",
    "stylize",
    "total_variation",
]


# ----------------------------------------------------------------------------------------------------
# Loss terms


def gram_matrix(features: Array) -> Array:
    """Gram matrix `Aᵀ·A` of activations `[(B,) H, W, C]` unrolled to `A = [B·H·W, C]` → `[C, C]` (fp32).

    Accumulating in float32 keeps bf16 activations from losing the style signal in the sum.
    """
    a = features.reshape(-1, features.shape[-1])
    return jnp.einsum("pc,pd->cd", a, a, preferred_element_type=jnp.float32)


def _dims(features: Array) -> tuple[int, int]:
    """(n_H·n_W, n_C) of `[(B,) H, W, C]` activations (batch of 1 assumed, as in the seeds)."""
    return int(np.prod(features.shape[:-1])), int(features.shape[-1])


def content_cost(a_content: Array, a_generated: Array) -> Array:
    """J_content = 1/(4·n_H·n_W·n_C) · Σ(a_C − a_G)² (deeplearning.ai normalisation)."""
    positions, channels = _dims(a_generated)
    diff = a_content.astype(jnp.float32) - a_generated.astype(jnp.float32)
    return jnp.sum(diff * diff) / (4.0 * positions * channels)


def normalised_gram(features: Array) -> Array:
    """Gram matrix divided by n_H·n_W: the size-independent style statistic (see module docstring)."""
    positions, _ = _dims(features)
    return gram_matrix(features) / positions


def style_cost_from_target(target_gram: Array, a_generated: Array) -> Array:
    """J_style^l against a precomputed `normalised_gram` target: Σ(Ĝ_S − Ĝ_G)² / (4·n_C²).

    With Ĝ = G/(n_H·n_W) this is exactly 1/(2·n_H·n_W·n_C)²·Σ(G_S − G_G)² when both images have the
    same size.
    """
    _, channels = _dims(a_generated)
    diff = target_gram - normalised_gram(a_generated)
    return jnp.sum(diff * diff) / (4.0 * channels * channels)


def style_layer_cost(a_style: Array, a_generated: Array) -> Array:
    """J_style^l = 1/(2·n_H·n_W·n_C)² · Σ(G_S − G_G)² for one layer (equal-size images)."""
    return style_cost_from_target(normalised_gram(a_style), a_generated)


def total_variation(image: Array) -> Array:
    """Mean squared difference between vertical and horizontal neighbours of `image/255` `[(B,) H, W, 3]`.

    Measured in 0..1 units and averaged over pixels so its weight does not depend on the image size.
    """
    x = image.astype(jnp.float32) / 255.0
    dy = x[..., 1:, :, :] - x[..., :-1, :, :]
    dx = x[..., :, 1:, :] - x[..., :, :-1, :]
    return (jnp.sum(dy * dy) + jnp.sum(dx * dx)) / x.size


# ----------------------------------------------------------------------------------------------------
# Options and per-architecture defaults


@dataclasses.dataclass(frozen=True)
class StyleOptions:
    """Everything that shapes one style-transfer run; see `MODEL_DEFAULTS` for per-backbone values.

    Attributes:
      content_taps: taps compared with the content image (averaged when several).
      style_taps: taps whose Gram matrices carry the style.
      style_layer_weights: λ_l per style tap; None → equal weights 1/L (the seeds' 0.2 × 5).
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
    style_layer_weights: tuple[float, ...] | None = None
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
        for name in ("content_taps", "style_taps", "sizes"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(s for s in value.split(",") if s)
            object.__setattr__(self, name, tuple(value))
        if self.style_layer_weights is not None:
            weights = tuple(float(w) for w in self.style_layer_weights)
            if len(weights) != len(self.style_taps):
                raise ValueError(
                    f"style_layer_weights has {len(weights)} values for {len(self.style_taps)} style taps"
                )
            object.__setattr__(self, "style_layer_weights", weights)
        choices = {
            "init": ("content", "style", "noise"),
            "optimizer": ("adam", "lbfgs"),
            "preserve_colors": ("none", "luminance", "histogram"),
            "cpu_loop": ("scan", "python", "unrolled"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if not self.content_taps or not self.style_taps:
            raise ValueError("style transfer needs at least one content tap and one style tap")
        if not self.sizes or min(self.sizes) < 16:
            raise ValueError(
                f"sizes must be a non-empty list of sides >= 16 pixels, got {self.sizes}"
            )
        if self.steps < 0 or self.style_scale <= 0:
            raise ValueError("steps must be >= 0 and style_scale > 0")

    @property
    def layer_weights(self) -> tuple[float, ...]:
        if self.style_layer_weights is not None:
            return self.style_layer_weights
        return (1.0 / len(self.style_taps),) * len(self.style_taps)


# Good starting points per backbone family (matched by model-name prefix). VGG19 is neural-style's
# choice of layers with the seeds' α=10, β=40 (whose Gram normalisation already balances the terms).
# EfficientNet-Lite0 was tuned by eye on the embedded default (chelsea × Klimt, 256 px): its block
# outputs are linear projections whose Gram losses differ ~100× between depths, so the stem (the only
# post-ReLU tap, and the weakest term) gets most of λ; content from a deep block leaves the texture free;
# β/α ≈ 300 balances the two terms at convergence, and the TV term and the reflection border
# (`edge_pad`) remove the high-frequency and border noise Lite's stride-2 stem otherwise lets through. ResNet has no weights offline
# to tune against: its values follow the usual choice (block outputs of each stage for style, a
# mid-network block for content) and are a starting point only.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg": dict(
        content_taps=("relu4_2",),
        style_taps=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        content_weight=10.0,
        style_weight=40.0,
        tv_weight=0.0,
        sizes=(512,),
        cpu_loop="python",  # 3-5× faster than lax.scan on XLA:CPU for VGG (see core.ChunkedLoop)
    ),
    "resnet": dict(
        content_taps=("layer3.1",),
        style_taps=("stem", "layer1.2", "layer2.3", "layer3.5"),
        content_weight=10.0,
        style_weight=1e3,
        tv_weight=10.0,
        sizes=(512,),
        cpu_loop="python",  # ResNet-50 at 224²: 0.20 s/step vs 0.35 s in lax.scan on XLA:CPU
    ),
    "efficientnet_lite": dict(
        content_taps=("blocks.10",),
        style_taps=("stem", "blocks.0", "blocks.2", "blocks.4", "blocks.7"),
        style_layer_weights=(0.6, 0.1, 0.1, 0.1, 0.1),
        content_weight=10.0,
        style_weight=3e3,
        tv_weight=1e3,
        edge_pad=16,
        sizes=(512,),
    ),
}


def style_defaults(model_name: str) -> dict[str, Any]:
    """`MODEL_DEFAULTS` entry for `model_name` (by prefix: "vgg19_bn" → "vgg"), or the VGG values."""
    for family, values in MODEL_DEFAULTS.items():
        if model_name.startswith(family):
            return dict(values)
    return dict(MODEL_DEFAULTS["vgg"])


# ----------------------------------------------------------------------------------------------------
# Colour


_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    np.float32,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def preserve_luminance(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keeps the luminance (Y of YIQ) of `stylised` and the chroma (I, Q) of `content`, `[H, W, 3]` 0..255.

    This is Gatys et al.'s "luminance-only transfer" as neural-style's `-original_colors 1` applies it:
    after the optimisation, so the loss is unchanged.
    """
    y = (np.asarray(stylised, np.float32) @ _RGB_TO_YIQ.T)[..., :1]
    iq = (np.asarray(content, np.float32) @ _RGB_TO_YIQ.T)[..., 1:]
    return np.clip(np.concatenate([y, iq], axis=-1) @ _YIQ_TO_RGB.T, 0.0, 255.0)


def match_color_statistics(
    source: np.ndarray, reference: np.ndarray, eps: float = 1e-5
) -> np.ndarray:
    """Affinely recolours `source` so its RGB mean and covariance equal `reference`'s (`[H, W, 3]`, 0..255).

    x ↦ Σ_r^{1/2} Σ_s^{-1/2} (x − μ_s) + μ_r with symmetric square roots: Gatys et al.'s colour-histogram
    matching, used on the style images so the transferred texture comes in the content's colours.
    """

    def stats(img):
        flat = np.asarray(img, np.float64).reshape(-1, 3)
        mean = flat.mean(axis=0)
        return flat, mean, np.cov(flat - mean, rowvar=False) + eps * np.eye(3)

    def sqrtm(cov, power):
        vals, vecs = np.linalg.eigh(cov)
        return (vecs * np.maximum(vals, eps) ** power) @ vecs.T

    flat, mu_s, cov_s = stats(source)
    _, mu_r, cov_r = stats(reference)
    transform = sqrtm(cov_r, 0.5) @ sqrtm(cov_s, -0.5)
    out = (flat - mu_s) @ transform.T + mu_r
    return np.clip(out, 0.0, 255.0).reshape(np.shape(source)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Targets and loss


class StyleTargets(NamedTuple):
    """What G is compared with: content activations `{tap: [1, h, w, C]}` and blended style Grams `{tap: [C, C]}`."""

    content: dict[str, Array]
    grams: dict[str, Array]


def build_targets(
    taps_fn: core.TapsFn,
    variables: PyTree,
    content: Array,
    styles: Sequence[Array],
    blend_weights: Sequence[float],
    options: StyleOptions,
) -> StyleTargets:
    """Content activations of `content` and the blend-weighted normalised Grams of `styles`."""
    features = jax.jit(lambda x, v: _padded_taps(taps_fn, x, v, options.edge_pad))
    content_acts = features(jnp.asarray(content), variables)
    content_targets = {t: content_acts[t] for t in options.content_taps}
    grams = {t: 0.0 for t in options.style_taps}
    for style, weight in zip(styles, blend_weights, strict=True):
        acts = features(jnp.asarray(style), variables)
        for t in options.style_taps:
            grams[t] = grams[t] + weight * normalised_gram(acts[t])
    return StyleTargets(content_targets, grams)


def _padded_taps(
    taps_fn: core.TapsFn, image: Array, variables: PyTree, pad: int
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
    taps_fn: core.TapsFn,
    options: StyleOptions,
) -> tuple[Array, dict[str, Array]]:
    """J(G) and its unweighted terms `{"content", "style", "tv"}` (style = Σ_l λ_l·J_style^l)."""
    acts = _padded_taps(taps_fn, image, variables, options.edge_pad)
    j_content = sum(content_cost(targets.content[t], acts[t]) for t in options.content_taps) / len(
        options.content_taps
    )
    j_style = sum(
        w * style_cost_from_target(targets.grams[t], acts[t])
        for t, w in zip(options.style_taps, options.layer_weights, strict=True)
    )
    j_tv = total_variation(image)
    total = (
        options.content_weight * j_content
        + options.style_weight * j_style
        + options.tv_weight * j_tv
    )
    return total, {"content": j_content, "style": j_style, "tv": j_tv}


# ----------------------------------------------------------------------------------------------------
# Optimisation steps (carry = (image, optimiser state); consts = (variables, targets))


def make_step(taps_fn: core.TapsFn, options: StyleOptions, optimizer: optax.GradientTransformation):
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


# ----------------------------------------------------------------------------------------------------
# Driver


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
    options: StyleOptions = StyleOptions(),
    blend_weights: Sequence[float] | None = None,
    progress: bool = True,
    memory_budget: int | None = None,
) -> StyleResult:
    """Stylises `content` with `styles` (RGB `[H, W, 3]` 0..255 arrays) using a fixed `model`.

    `blend_weights` weight several style images (normalised to sum to 1; default equal). Runs one
    chunked, jit-compiled optimisation per entry of `options.sizes`, coarse to fine. `memory_budget`
    (bytes; default 80% of free device memory) turns an image too large for the device into a
    `core.MemoryBudgetExceeded` before anything runs.
    """
    if isinstance(styles, np.ndarray) and styles.ndim == 3:
        styles = [styles]
    styles = [np.asarray(s, np.float32) for s in styles]
    if not styles:
        raise ValueError("at least one style image is needed")
    if blend_weights is None:
        blend_weights = [1.0] * len(styles)
    if len(blend_weights) != len(styles):
        raise ValueError(f"{len(blend_weights)} blend weights for {len(styles)} style images")
    total_weight = float(sum(blend_weights))
    if total_weight <= 0 or min(blend_weights) < 0:
        raise ValueError(
            f"blend weights must be >= 0 with a positive sum, got {list(blend_weights)}"
        )
    blend_weights = [float(w) / total_weight for w in blend_weights]

    content = np.asarray(content, np.float32)
    taps_fn = core.make_taps_fn(
        model, variables, (*options.content_taps, *options.style_taps), preprocessing=preprocessing
    )
    optimizer = make_optimizer(options)
    loop = core.ChunkedLoop(
        make_step(taps_fn, options, optimizer),
        options.chunk_size,
        desc=f"style ({options.optimizer})",
        memory_budget=memory_budget if memory_budget is not None else core.memory_budget_bytes(),
        cpu_inner=options.cpu_loop,
    )
    rng = np.random.default_rng(options.seed)
    histories: list[dict[str, np.ndarray]] = []
    scales: list[tuple[int, int]] = []
    image = None
    content_at_scale = content
    for size in options.sizes:
        hw = _shape_for(content, size)
        scales.append(hw)
        content_at_scale = core.resize_image(content, hw)
        style_side = max(16, round(size * options.style_scale))
        styles_at_scale = [core.fit_max_side(s, style_side) for s in styles]
        if options.preserve_colors == "histogram":
            styles_at_scale = [match_color_statistics(s, content_at_scale) for s in styles_at_scale]
        targets = build_targets(
            taps_fn, variables, content_at_scale, styles_at_scale, blend_weights, options
        )

        if image is None:
            image = _initial_image(options.init, content_at_scale, styles_at_scale[0], rng)
        else:  # coarse-to-fine: the previous scale's result, upsampled
            image = core.resize_image(image, hw)
        image = jnp.asarray(image, jnp.float32)  # a fresh buffer: the loop donates it
        carry = (image, optimizer.init(image))
        consts = (variables, targets)
        try:
            carry, history = loop.run(carry, consts, options.steps, progress=progress)
        except core.MemoryBudgetExceeded as err:
            raise core.MemoryBudgetExceeded(
                err.needed, err.budget, f"style transfer at {hw[1]}×{hw[0]}", _NO_TILING_HINT
            ) from None
        image = np.asarray(carry[0])
        histories.append(history)

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


def _initial_image(
    init: str, content: np.ndarray, style: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    if init == "content":
        return content.copy()
    if init == "style":
        return core.resize_image(style, content.shape[:2])
    # White noise around mid-gray (Gatys' random init); the seed makes runs repeatable.
    return np.clip(127.5 + 64.0 * rng.standard_normal(content.shape), 0.0, 255.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Config form (used by `python -m tljax.style` and configs/style_*.py)

_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(StyleOptions))


def default_config(model: str = "efficientnet_lite0") -> Any:
    """A locked `ml_collections.ConfigDict` with I/O fields and every `StyleOptions` field.

    Values come from `MODEL_DEFAULTS` for `model`. Locked: overriding a key that does not exist raises.
    """
    import ml_collections

    base = dataclasses.asdict(StyleOptions())
    base.update(style_defaults(model))
    config = ml_collections.ConfigDict()
    config.model = model
    config.weights = (
        "default"  # registered name, file path, "default" (the model's own) or "random"
    )
    config.content = ""
    config.styles = ""  # comma-separated paths
    config.style_blend_weights = ""  # comma-separated floats, "" → equal
    config.out = "stylized.png"
    config.dtype = "float32"
    for name in _OPTION_FIELDS:
        value = base[name]
        if name == "style_layer_weights":
            value = "" if value is None else ",".join(str(v) for v in value)
        elif isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        config[name] = value
    config.lock()
    return config


def _split(value: Any, cast=str) -> tuple:
    if isinstance(value, str):
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    return tuple(cast(v) for v in value)


def options_from_config(config: Mapping[str, Any]) -> StyleOptions:
    """`StyleOptions` from a config produced by `default_config` (lists may be comma-separated strings)."""
    values = {name: config[name] for name in _OPTION_FIELDS}
    for name in ("content_taps", "style_taps"):
        values[name] = _split(values[name])
    values["sizes"] = _split(values["sizes"], int)
    layer_weights = _split(values["style_layer_weights"] or (), float)
    values["style_layer_weights"] = layer_weights or None
    return StyleOptions(**values)


def run_from_config(config: Mapping[str, Any], *, progress: bool = True) -> StyleResult:
    """Loads the images and the backbone named in `config`, stylises, writes `config.out`."""
    from pathlib import Path

    options = options_from_config(config)
    style_paths = _split(config["styles"])
    if not config["content"] or not style_paths:
        raise ValueError(
            "both a content image (--content) and at least one style image (--style) are needed"
        )
    content = core.load_image(config["content"])
    styles = [core.load_image(p) for p in style_paths]
    blend = _split(config["style_blend_weights"], float) or None
    model, variables, preprocessing = core.load_backbone(
        config["model"], config["weights"], dtype=config["dtype"]
    )
    result = stylize(
        model,
        variables,
        content,
        styles,
        preprocessing=preprocessing,
        options=options,
        blend_weights=blend,
        progress=progress,
    )
    out = core.save_image(config["out"], result.image)
    print(
        f"wrote {Path(out).resolve()}  ({result.image.shape[1]}×{result.image.shape[0]}, final terms "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.final_terms.items())
        + ")"
    )
    return result
