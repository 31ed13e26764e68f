"""Feature visualisation by activation maximisation (Erhan et al.; Olah et al., "Feature Visualization").

Find an image that makes one channel (or one unit) of a tap fire strongly. Plain pixel-space gradient
ascent produces high-frequency adversarial noise; three standard remedies, as in lucid, make the result
show what the channel actually responds to:

* **Decorrelated Fourier parameterisation.** The image is `irfft2(spectrum * 1/f)`: scaling each
  coefficient by the inverse of its spatial frequency whitens the natural-image 1/f spectrum, so the
  optimiser moves all frequencies at comparable speed instead of mostly the highest.
* **Colour decorrelation.** The three parameter channels are mixed by the square root of the RGB
  covariance of natural images (`COLOR_CORRELATION_SQRT`, recomputed from real ImageNet photos by
  `color_correlation_sqrt`), so steps go along natural colour directions; a sigmoid maps to 0..1.
* **Robustness transforms.** Every step the network sees the image padded, jittered, scaled and rotated
  by random amounts (`RobustnessTransforms`, `tljax.imageopt.transforms`), drawn from a seeded key *inside* the compiled step; an image
  that works under all of them cannot rely on single-pixel patterns.

The optimisation runs through `tljax.imageopt.core.ChunkedLoop`: many steps per compiled `lax.scan`,
compiled once (its trace counter is returned so tests can assert it), a progress bar between chunks.
Several channels are optimised together as one batch, each image for its own channel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax.imageopt import render
from tljax.imageopt.core import ChunkedLoop
from tljax.imageopt.objective import MeanStd, check_taps, make_taps_fn, parse_tap_spec
from tljax.imageopt.options import keyword_defaults, tool_config
from tljax.imageopt.transforms import RobustnessTransforms
from tljax.typing import Config

Array = jax.Array
Objective = Literal["channel", "unit"]

# lucid's standard transforms (frozen, so one shared instance is a safe default argument).
STANDARD_TRANSFORMS = RobustnessTransforms()

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "FeatVisResult",
    "RobustnessTransforms",
    "STANDARD_TRANSFORMS",
    "channel_grid",
    "default_config",
    "color_correlation_sqrt",
    "fourier_init",
    "fourier_to_rgb",
    "objective_values",
    "parse_target",
    "run_from_config",
    "visualize_channels",
]

# Square root (U·sqrt(S) of the eigendecomposition) of the RGB covariance of the 20 ImageNet validation
# photos shipped with foolbox, pixels in 0..1; columns: luminance, then two colour-opponent axes.
# Recompute with `color_correlation_sqrt(foolbox images)` (tests/imageopt/test_featvis.py does). It is
# within 0.03 of the constant lucid derived from the whole of ImageNet.
COLOR_CORRELATION_SQRT = np.array(
    [
        [0.2263, 0.0712, 0.0386],
        [0.2374, 0.0114, -0.0628],
        [0.2395, -0.0786, 0.0258],
    ],
    np.float32,
)


def color_correlation_sqrt(images: Iterable[np.ndarray]) -> np.ndarray:
    """`U · sqrt(S)` of the RGB covariance of `images` ([H, W, 3] in 0..255), columns by decreasing variance.

    Eigenvector signs are fixed so each column sums to a positive number, which makes the result unique
    (the first column is then the all-positive luminance direction).
    """
    pixels = np.concatenate([np.asarray(im, np.float64).reshape(-1, 3) / 255.0 for im in images])
    eigvals, eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = eigvals[order], eigvecs[:, order]
    eigvecs = eigvecs * np.sign(eigvecs.sum(axis=0))
    return (eigvecs * np.sqrt(np.maximum(eigvals, 0.0))).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Parameterisation


def _frequencies(h: int, w: int) -> np.ndarray:
    """Spatial frequency magnitude (cycles/pixel) of every `rfft2` coefficient of an h×w image, [h, w//2+1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def fourier_init(seed: int, batch: int, hw: tuple[int, int], sd: float = 0.01) -> Array:
    """Random Fourier parameters `[B, 2 (real, imag), 3, H, W//2+1]`, small so the start is near gray.

    Drawn with NumPy: an eager `jax.random` call would compile a kernel just for this one draw.
    """
    h, w = hw
    rng = np.random.default_rng(seed)
    return jnp.asarray(sd * rng.standard_normal((batch, 2, 3, h, w // 2 + 1)), jnp.float32)


def fourier_to_rgb(
    params: Array,
    hw: tuple[int, int],
    *,
    decay_power: float = 1.0,
    decorrelate: bool = True,
) -> Array:
    """Fourier parameters → RGB images `[B, H, W, 3]` in (0, 1).

    Coefficients are scaled by `1/f^decay_power` (f floored at one cycle per image) and by `sqrt(H·W)`, so
    that the map is roughly unitary and learning rates mean the same as in pixel space; the division by 4
    keeps the pre-sigmoid values of a random start in the sigmoid's linear range (lucid's constant).
    """
    h, w = hw
    freqs = _frequencies(h, w)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    scale = jnp.asarray(scale * math.sqrt(h * w), jnp.float32)
    spectrum = jax.lax.complex(params[:, 0], params[:, 1]) * scale  # [B, 3, H, W//2+1]
    image = jnp.fft.irfft2(spectrum, s=(h, w), axes=(-2, -1)) / 4.0  # [B, 3, H, W]
    image = jnp.transpose(image, (0, 2, 3, 1))  # [B, H, W, 3]
    if decorrelate:
        corr = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))
        image = image @ jnp.asarray(corr.T)
    return jax.nn.sigmoid(image)


# ----------------------------------------------------------------------------------------------------
# Objectives


def parse_target(spec: str) -> tuple[str, int]:
    """`"blocks.10:37"` → `("blocks.10", 37)`; a channel is required here."""
    parsed = parse_tap_spec(spec)
    if parsed.channel is None:
        raise ValueError(f"expected 'tap:channel', got {spec!r}")
    return parsed.tap, parsed.channel


def _select(acts: Array, channels: Array, objective: Objective) -> Array:
    """Per image b, the objective for channel `channels[b]` of `acts` `[B, h, w, C]` → `[B]`."""
    picked = jnp.take_along_axis(acts, channels[:, None, None, None], axis=-1)[..., 0]  # [B, h, w]
    if objective == "channel":
        return picked.mean(axis=(1, 2))
    if objective == "unit":  # the unit at the centre of the map
        return picked[:, picked.shape[1] // 2, picked.shape[2] // 2]
    raise ValueError(f"unknown objective {objective!r}; use 'channel' or 'unit'")


def _num_channels(model: nn.Module, variables: Any, tap: str, hw: tuple[int, int]) -> int:
    def tap_output(v: Any, x: jax.Array) -> jax.Array:
        outputs = cast(dict[str, jax.Array], model.apply(v, x, train=False, taps=(tap,)))
        return outputs[tap]

    shape = jax.eval_shape(
        tap_output,
        variables,
        jax.ShapeDtypeStruct((1, hw[0], hw[1], 3), jnp.float32),
    ).shape
    if len(shape) != 4:
        raise ValueError(
            f"tap {tap!r} has shape {tuple(shape)}; feature visualisation needs a [B, H, W, C] map"
        )
    return int(shape[-1])


def _check_channels(channels: Sequence[int], num_channels: int, tap: str) -> None:
    bad = [c for c in channels if not 0 <= c < num_channels]
    if bad:
        raise ValueError(
            f"channel(s) {bad} out of range: tap {tap!r} has {num_channels} channels (0..{num_channels - 1})"
        )


def objective_values(
    model: nn.Module,
    variables: Any,
    images: Array | np.ndarray,
    tap: str,
    channels: Sequence[int],
    *,
    preprocessing: MeanStd | None = None,
    objective: Objective = "channel",
) -> np.ndarray:
    """Objective of every `channels[j]` on every image: `[N, len(channels)]` for `images` `[N, H, W, 3]` in 0..255.

    Used to compare optimised images with natural photos (the activation ratio) on equal terms.
    """
    check_taps(model, (tap,))
    images = jnp.asarray(images, jnp.float32)
    taps_fn = make_taps_fn(model, variables, (tap,), preprocessing=preprocessing)
    acts = jax.jit(lambda x, v: taps_fn(x, v)[tap])(images, variables)  # [N, h, w, C]
    _check_channels(list(channels), acts.shape[-1], tap)
    cols = [_select(acts, jnp.full((acts.shape[0],), c, jnp.int32), objective) for c in channels]
    return np.asarray(jnp.stack(cols, axis=1))


# ----------------------------------------------------------------------------------------------------
# The optimisation


@dataclasses.dataclass
class FeatVisResult:
    """Images (`[B, H, W, 3]` uint8) maximising each `channels[b]` of `tap`, with their objective values.

    `objective` holds each image's final objective on the plain (untransformed) image; `history` the batch
    mean objective per step (under the random transforms); `trace_count` how often the step was traced
    (1 means compiled once).
    """

    tap: str
    channels: list[int]
    images: np.ndarray
    objective: np.ndarray
    history: np.ndarray
    trace_count: int


def visualize_channels(
    model: nn.Module,
    variables: Any,
    tap: str,
    channels: Sequence[int],
    *,
    preprocessing: MeanStd | None = None,
    size: int | tuple[int, int] = 128,
    steps: int = 256,
    learning_rate: float = 0.05,
    objective: Objective = "channel",
    transforms: RobustnessTransforms | None = STANDARD_TRANSFORMS,
    decorrelate: bool = True,
    decay_power: float = 1.5,
    seed: int = 0,
    chunk_size: int = 32,
    progress: bool = True,
) -> FeatVisResult:
    """Activation maximisation of `channels` of `tap`, one image per channel, optimised jointly.

    `decay_power` is the exponent of the 1/f spectrum scaling: lucid uses 1.0; 1.5 (the default here)
    gave bolder, smoother patterns with the same objective on EfficientNet-Lite0, whose stride-2
    depthwise convs otherwise imprint a fine grid (compared side by side at blocks.10, 256 steps).

    The images are Fourier-parameterised and colour-decorrelated; every step applies fresh random
    `transforms` (None disables them) and takes an Adam step on `-sum_b objective_b`. Because each image
    only enters its own objective term, the joint optimisation equals separate ones. The tap name and
    channel indices are checked before anything is compiled.
    """
    from tljax.train.state import make_key

    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("no channels to visualise")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    check_taps(model, (tap,))
    in_hw = transforms.output_hw(hw) if transforms is not None else hw
    _check_channels(channels, _num_channels(model, variables, tap, in_hw), tap)

    taps_fn = make_taps_fn(model, variables, (tap,), preprocessing=preprocessing)
    optimizer = optax.adam(learning_rate)

    def render(params: Array) -> Array:
        return fourier_to_rgb(params, hw, decay_power=decay_power, decorrelate=decorrelate)

    def loss_fn(params, key, variables, channel_ids):
        image = render(params)  # [B, H, W, 3] in (0, 1)
        if transforms is not None:
            image = transforms(key, image)
        acts = taps_fn(image * 255.0, variables)[tap]
        values = _select(acts, channel_ids, objective)  # [B]
        return -values.sum(), values.mean()

    def step(carry, consts):
        params, opt_state, key = carry
        variables, channel_ids = consts
        key, sub = jax.random.split(key)
        grads, value = jax.grad(loss_fn, has_aux=True)(params, sub, variables, channel_ids)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, key), {"objective": value}

    params = fourier_init(seed, len(channels), hw)
    # Split inside the compiled step, never on the host; "rbg" keys, the policy of tljax.train.state.
    loop_key = make_key(seed)
    carry = (params, optimizer.init(params), loop_key)
    consts = (variables, jnp.asarray(channels, jnp.int32))
    loop = ChunkedLoop(step, chunk_size=chunk_size, desc=f"featvis {tap}")
    (params, _, _), history = loop.run(carry, consts, steps, progress=progress)

    images = render(params)
    final = jax.jit(lambda x, v, c: _select(taps_fn(x * 255.0, v)[tap], c, objective))(
        images, variables, consts[1]
    )
    pixels = np.asarray(jnp.round(images * 255.0)).astype(np.uint8)
    return FeatVisResult(
        tap=tap,
        channels=channels,
        images=pixels,
        objective=np.asarray(final),
        history=np.asarray(history.get("objective", np.zeros((0,)))),
        trace_count=loop.trace_count,
    )


# ----------------------------------------------------------------------------------------------------
# Rendering


def channel_grid(
    images: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    gap: int = 4,
    title: str | None = None,
) -> np.ndarray:
    """Tiles `[N, H, W, 3]` uint8 images into one `[H', W', 3]` uint8 picture, each with a caption."""
    return render.grid(images, labels, columns=columns, gap=gap, caption=14, title=title)


# ----------------------------------------------------------------------------------------------------
# Config form (`python -m tljax.visualize`, configs/featvis_*.py)


# `visualize_channels` arguments that are not run options: objects, or the CLI's business.
_NOT_OPTIONS = ("preprocessing", "transforms", "progress")


def default_config() -> Config:
    """The feature-visualisation run config: I/O keys plus `visualize_channels`' keyword arguments.

    `technique="featvis"` (what `python -m tljax.visualize` dispatches on), `model`, `weights`
    ("default", a registered name, a file, or "random"), `tap`, `channels` (a tuple), `transforms`
    (lucid's standard robustness transforms on or off), `compare_with_photos` (each channel's objective
    on the 20 ImageNet photos of foolbox, and the ratio), `out`; then every keyword argument of
    `visualize_channels` with its default (`size`, `steps`, `learning_rate`, `objective`, `decorrelate`,
    `decay_power`, `seed`, `chunk_size`), taken from its signature so an option is defined once there.
    `configs/featvis_lite0.py` is the CLI's default.
    """
    io: dict[str, Any] = dict(
        technique="featvis", model="efficientnet_lite0", weights="default", tap="blocks.10"
    )
    io.update(
        channels=tuple(range(8)), transforms=True, compare_with_photos=True, out="featvis.png"
    )
    return tool_config(io, keyword_defaults(visualize_channels, exclude=_NOT_OPTIONS))


def run_from_config(config: Config, *, progress: bool = True) -> dict[str, Any]:
    """Optimises one image per channel, writes the grid image atomically, compares with natural photos.

    Returns the `FeatVisResult` under "result", the written path under "path" and, if the foolbox photos
    are installed and `compare_with_photos`, each channel's objective on them (same size, same
    objective: "natural_mean", "natural_max") and the ratio optimised / best photo ("ratio").
    """
    from pathlib import Path

    from tljax.imageopt import backbone, images, inputs

    images.check_writable(config.out)
    model, variables, preprocessing = backbone.from_config(config)
    tap, objective = config.tap, config.objective
    options = {name: config[name] for name in keyword_defaults(visualize_channels, _NOT_OPTIONS)}
    result = visualize_channels(
        model,
        variables,
        tap,
        config.channels,
        preprocessing=preprocessing,
        transforms=STANDARD_TRANSFORMS if config.transforms else None,
        progress=progress,
        **options,
    )
    report: dict[str, Any] = {"result": result}
    labels = [f"{tap}:{c}  {v:.3g}" for c, v in zip(result.channels, result.objective, strict=True)]
    photos = (
        inputs.foolbox_photos((config.size, config.size)) if config.compare_with_photos else None
    )
    if photos is not None:
        natural = objective_values(
            model,
            variables,
            photos,
            tap,
            result.channels,
            preprocessing=preprocessing,
            objective=objective,
        )
        best = natural.max(axis=0)
        report.update(
            natural_mean=natural.mean(axis=0),
            natural_max=best,
            ratio=result.objective / np.where(best > 0, best, np.nan),
        )
        for j, c in enumerate(result.channels):
            print(
                f"{tap}:{c}: optimised {result.objective[j]:.3g}, photos mean "
                f"{natural[:, j].mean():.3g} max {best[j]:.3g}, ratio to best photo "
                f"{report['ratio'][j]:.2f}x"
            )
        labels = [
            f"{tap}:{c} x{r:.1f}" for c, r in zip(result.channels, report["ratio"], strict=True)
        ]
    grid = channel_grid(result.images, labels, title=f"{config.model} {tap} ({objective})")
    report["path"] = images.save_image(config.out, grid)
    print(f"wrote {Path(report['path']).resolve()}  (trace count {result.trace_count})")
    return report
