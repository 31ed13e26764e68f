"""DeepDream: gradient ascent on the image to amplify what chosen taps (or channels) respond to.

One step: roll the image by a random offset (jitter, so no pixel grid is favoured and tile seams move),
take the gradient of the objective, roll it back, divide by its mean absolute value (a normalised step:
the step size is in pixels whatever the layer's scale) and add it. Octaves run the same ascent on a
pyramid of sizes (×`octave_scale` each), coarse to fine, carrying only the *detail* added so far up to
the next size, so large structures form at the coarse octaves and the original image stays sharp.

Objective: for each spec `"tap"` or `"tap:channel"`, the mean of the activation ("mean") or half its mean
square ("l2", the original DeepDream objective whose gradient is the activation itself), weighted.

Tiled gradients: an image too large to differentiate at once is cut into `tile_size` cores, each
differentiated inside a window with `tile_overlap` pixels of context on every side, and only the core
of each window's gradient is kept. With enough context (twice the tap's receptive-field radius) and
window starts on the tap's stride grid this is exactly the untiled gradient; with less, the random roll
moves the remaining seams every step so they never accumulate (`tljax.imageopt.tiling`).
`tiling="auto"` tiles when XLA's memory analysis of the compiled untiled step (an estimate made before
anything runs) exceeds `untiled_memory_fraction` of the memory budget. Windows are visited by a `lax.scan`, so only one
window's activations are alive at a time (on XLA:CPU that loop is slower than untiled, which is why
tiling is not the default when the image fits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tljax.errors import ConfigError
from tljax.imageopt import backbone, images
from tljax.imageopt.core import ChunkedLoop, MemoryBudgetExceeded, memory_budget_bytes
from tljax.imageopt.objective import (
    MeanStd,
    TapsFn,
    TapSpec,
    make_taps_fn,
    num_positions,
    parse_tap_spec,
)
from tljax.imageopt.options import check_choices, checked_weights, read_options, tool_config
from tljax.imageopt.tiling import region_mask, tile_windows, tiled_value_and_grad
from tljax.typing import Config, PyTree

Array = jax.Array

__all__ = [
    "DreamOptions",
    "DreamResult",
    "OctaveReport",
    "default_config",
    "dream",
    "make_objective",
    "octave_shapes",
    "plan_tiling",
    "run_from_config",
    "tile_windows",
    "tiled_value_and_grad",
]


@dataclasses.dataclass(frozen=True)
class DreamOptions:
    """Settings of one DeepDream run.

    Attributes:
      objectives: `"tap"` or `"tap:channel"` specs whose activation is amplified.
      objective_weights: one weight per spec; () → 1 each.
      reduction: "mean" (mean activation) or "l2" (half the mean squared activation).
      octaves: number of pyramid levels; octave k (from the finest) is 1/octave_scale^k of the size.
      octave_scale: size ratio between octaves (≈1.3–1.4 in the original).
      steps_per_octave: ascent steps at each octave.
      step_size: pixels moved per step, on the gradient normalised by its mean |·|.
      jitter: maximal random roll, in pixels, along each axis before each step.
      tiling: "auto" (tile only if the untiled step would not fit in memory), "always" or "never".
      tile_size: core size of a tile, in pixels.
      tile_overlap: context pixels around each tile's core.
      untiled_memory_fraction: with tiling="auto", the untiled step is used only when XLA's estimate
        for it is below this fraction of the memory budget. XLA's analysis counts the compiled
        program's buffers, not the host copies and allocator slack around it, and untiled is no faster
        than tiled for images that big, so large images tile with room to spare.
      min_side: octaves whose shorter side would be smaller than this are dropped.
      chunk_size: steps per chunk of `ChunkedLoop` (progress-bar granularity).
      cpu_loop: how a chunk runs on XLA:CPU, "scan" or "python" (one compiled step per call): which is
        faster depends on the network (`ChunkedLoop`); accelerators always use `lax.scan`.
      seed: for the jitter.
    """

    objectives: tuple[str, ...] = ("blocks.10",)
    objective_weights: tuple[float, ...] = ()
    reduction: str = "mean"
    octaves: int = 4
    octave_scale: float = 1.3
    steps_per_octave: int = 20
    step_size: float = 1.5
    jitter: int = 32
    tiling: str = "auto"
    tile_size: int = 512
    tile_overlap: int = 64
    untiled_memory_fraction: float = 0.5
    min_side: int = 32
    chunk_size: int = 10
    cpu_loop: str = "scan"
    seed: int = 0

    def __post_init__(self):
        # Config values may arrive as lists: store tuples.
        object.__setattr__(self, "objectives", tuple(self.objectives))
        for spec in self.objectives:
            parse_tap_spec(spec)  # raises on a malformed spec
        if not self.objectives:
            raise ConfigError("DeepDream needs at least one objective tap")
        weights = checked_weights(self.objective_weights, self.objectives, "objective_weights")
        object.__setattr__(self, "objective_weights", weights)
        choices = {
            "reduction": ("mean", "l2"),
            "tiling": ("auto", "always", "never"),
            "cpu_loop": ("scan", "python", "unrolled"),
        }
        check_choices(self, choices)
        if self.octaves < 1 or self.octave_scale < 1.0:
            raise ConfigError("octaves must be >= 1 and octave_scale >= 1")
        if self.tile_size < 16 or self.tile_overlap < 0 or self.jitter < 0:
            raise ConfigError("tile_size must be >= 16, tile_overlap and jitter >= 0")
        if not 0.0 < self.untiled_memory_fraction <= 1.0:
            raise ConfigError(
                f"untiled_memory_fraction={self.untiled_memory_fraction}; expected 0 < f <= 1"
            )

    @property
    def specs(self) -> tuple[TapSpec, ...]:
        return tuple(parse_tap_spec(s) for s in self.objectives)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.objective_weights or (1.0,) * len(self.objectives)


# ----------------------------------------------------------------------------------------------------
# Objective


def make_objective(
    taps_fn: TapsFn,
    specs: Sequence[TapSpec],
    weights: Sequence[float],
    reduction: str,
    full_shapes: Mapping[str, tuple[int, ...]],
):
    """`objective(image [H, W, 3], variables, region=None) -> scalar`: Σ_specs weight · Σ f(activation) / N.

    N is the number of summed elements *on the full image* (`full_shapes`, tap → activation shape), so
    on the whole image this is the mean, and per-tile sums add up to it: summing rather than averaging
    per tile is what makes tiled and untiled gradients equal. `region = (y0, y1, x0, x1)` (pixels, may
    be traced) restricts the sum to activations whose receptive-field origin lies inside it; tiles use
    it to report the exact value of the part they own.
    """
    normalisers = []
    for spec in specs:
        shape = full_shapes[spec.tap]
        channels = shape[-1]
        if spec.channel is not None and spec.channel >= channels:
            raise ValueError(
                f"channel {spec.channel} out of range for tap {spec.tap!r} ({channels} channels)"
            )
        normalisers.append(num_positions(shape) * (1 if spec.channel is not None else channels))

    def reduce(acts: Mapping[str, Array], image_hw: tuple[int, int], region: tuple | None) -> Array:
        total = jnp.zeros((), jnp.float32)
        for spec, weight, n in zip(specs, weights, normalisers, strict=True):
            a = acts[spec.tap].astype(jnp.float32)[0]  # [h, w, C]
            a = a[..., spec.channel] if spec.channel is not None else a
            per_element = a if reduction == "mean" else 0.5 * a * a
            if region is not None:
                mask = region_mask((a.shape[0], a.shape[1]), image_hw, region)
                per_element = per_element * mask.reshape(mask.shape + (1,) * (a.ndim - 2))
            total = total + weight * jnp.sum(per_element) / n
        return total

    def objective(image: Array, variables: PyTree, region: tuple | None = None) -> Array:
        return reduce(taps_fn(image, variables), (image.shape[0], image.shape[1]), region)

    def full_and_region(image: Array, variables: PyTree, region: tuple) -> tuple[Array, Array]:
        """Both sums from one forward pass (for tiles: gradient of the first, report the second)."""
        acts = taps_fn(image, variables)
        image_hw = (image.shape[0], image.shape[1])
        return reduce(acts, image_hw, None), reduce(acts, image_hw, region)

    # A function attribute (tiling calls it): a pattern mypy does not model.
    objective.full_and_region = full_and_region  # type: ignore[attr-defined]
    return objective


def make_step(objective, options: DreamOptions, tiled: bool):
    """The `ChunkedLoop` step: carry = (image [H, W, 3], key), consts = variables."""

    def value_and_grad(image, variables):
        if tiled:
            return tiled_value_and_grad(
                objective, image, variables, options.tile_size, options.tile_overlap
            )
        return jax.value_and_grad(objective)(image, variables)

    def step(carry, variables):
        image, key = carry
        key, sub = jax.random.split(key)
        shift = jax.random.randint(sub, (2,), -options.jitter, options.jitter + 1)
        rolled = jnp.roll(image, shift, axis=(0, 1))
        value, grad = value_and_grad(rolled, variables)
        grad = jnp.roll(grad, -shift, axis=(0, 1))
        grad = grad / (jnp.mean(jnp.abs(grad)) + 1e-8)
        image = jnp.clip(image + options.step_size * grad, 0.0, 255.0)
        return (image, key), {"objective": value}

    return step, value_and_grad


# ----------------------------------------------------------------------------------------------------
# Driver


@dataclasses.dataclass
class OctaveReport:
    """One octave: its size, whether it was tiled, the objective before/after and the step's memory."""

    shape: tuple[int, int]
    tiled: bool
    objective_before: float
    objective_after: float
    chunk_bytes: int | None


@dataclasses.dataclass
class DreamResult:
    image: np.ndarray  # [H, W, 3], 0..255
    octaves: list[OctaveReport]
    history: dict[str, np.ndarray]
    trace_counts: dict[str, int]


def octave_shapes(
    hw: tuple[int, int], octaves: int, scale: float, min_side: int
) -> list[tuple[int, int]]:
    """Sizes of the pyramid, coarsest first, ending at `hw`; levels below `min_side` are dropped."""
    shapes = []
    for k in range(octaves - 1, -1, -1):
        shape = (round(hw[0] / scale**k), round(hw[1] / scale**k))
        if min(shape) >= min_side or k == 0:
            shapes.append(shape)
    return shapes


def _octave_objective(
    taps_fn: TapsFn, options: DreamOptions, hw: tuple[int, int], variables: PyTree
) -> Any:
    """The objective for an octave of size `hw` (normalised by that size's activation shapes)."""
    image = jax.ShapeDtypeStruct((*hw, 3), jnp.float32)
    full_shapes = {t: s.shape for t, s in jax.eval_shape(taps_fn, image, variables).items()}
    return make_objective(taps_fn, options.specs, options.weights, options.reduction, full_shapes)


def _compile_octave(
    objective_fn: Any, options: DreamOptions, budget: int, carry: Any, variables: PyTree
) -> tuple[bool, ChunkedLoop, Any]:
    """Chooses tiled or untiled for one octave and compiles its loop: (tiled, loop, value_and_grad).

    The choice uses XLA's memory analysis of the compiled steps, made before anything runs: under
    "auto" the untiled step must fit in `untiled_memory_fraction` of `budget`, the tiled one in `budget`.
    """
    hw = tuple(carry[0].shape[:2])
    order = {"never": (False,), "always": (True,), "auto": (False, True)}[options.tiling]
    for tiled in order:
        step, value_and_grad = make_step(objective_fn, options, tiled)
        # Untiled under "auto" must fit with room to spare (see `untiled_memory_fraction`).
        spare = options.tiling == "auto" and not tiled
        loop = ChunkedLoop(
            step,
            options.chunk_size,
            desc=f"dream {hw[1]}×{hw[0]}",
            memory_budget=int(budget * options.untiled_memory_fraction) if spare else budget,
            cpu_inner=options.cpu_loop,
        )
        try:
            loop.compile(carry, variables)
        except MemoryBudgetExceeded as err:
            if tiled or options.tiling == "never":
                hint = (
                    "lower tile_size (tiles are differentiated one at a time)"
                    if tiled
                    else "use tiling='auto' or 'always', or a smaller image"
                )
                raise MemoryBudgetExceeded(err.needed, err.budget, err.what, hint) from None
            logging.info("dream: %s×%s does not fit untiled (%s); tiling", hw[1], hw[0], err)
            continue
        break
    return tiled, loop, value_and_grad


def plan_tiling(
    model: Any,
    variables: PyTree,
    hw: tuple[int, int],
    *,
    preprocessing: MeanStd | None,
    options: DreamOptions | None = None,
    memory_budget: int | None = None,
) -> OctaveReport:
    """Whether `dream` would tile an octave of size `hw`, and XLA's estimate of its step's memory.

    Compiles exactly what `dream` compiles for that octave, from shapes only: nothing is allocated at
    `hw` and no step runs, so even a 6000×4000 image can be planned cheaply. The report's objective
    values are NaN (nothing was evaluated).
    """
    from tljax.train.state import make_key

    options = options or DreamOptions()
    taps = [s.tap for s in options.specs]
    taps_fn = make_taps_fn(model, variables, taps, preprocessing=preprocessing)
    image = jax.ShapeDtypeStruct((*hw, 3), jnp.float32)
    objective_fn = _octave_objective(taps_fn, options, hw, variables)
    budget = memory_budget if memory_budget is not None else memory_budget_bytes()
    carry = (image, make_key(options.seed))
    tiled, loop, _ = _compile_octave(objective_fn, options, budget, carry, variables)
    return OctaveReport(hw, tiled, math.nan, math.nan, loop.last_compiled_bytes)


def dream(
    model: Any,
    variables: PyTree,
    image: np.ndarray,
    *,
    preprocessing: MeanStd | None,
    options: DreamOptions = DreamOptions(),
    progress: bool = True,
    memory_budget: int | None = None,
) -> DreamResult:
    """Runs DeepDream on `image` (RGB `[H, W, 3]`, 0..255) with a fixed `model`; returns the dreamed image.

    Unknown taps raise the model's `ValueError` listing the valid names before anything is compiled.
    `memory_budget` (bytes; default 80% of free device memory) decides automatic tiling; if even a tile
    does not fit, `MemoryBudgetExceeded` says so.
    """
    from tljax.train.state import make_key

    specs = options.specs
    taps_fn = make_taps_fn(model, variables, [s.tap for s in specs], preprocessing=preprocessing)
    budget = memory_budget if memory_budget is not None else memory_budget_bytes()
    base = np.asarray(image, np.float32)
    loops: dict[bool, dict[tuple[int, int], ChunkedLoop]] = {False: {}, True: {}}
    key = make_key(options.seed)  # the project's RNG-key policy (tljax.train.state: "rbg" keys)
    detail = None
    reports: list[OctaveReport] = []
    histories = []
    for hw in octave_shapes(
        base.shape[:2], options.octaves, options.octave_scale, options.min_side
    ):
        octave_base = images.resize_image(base, hw)
        detail = np.zeros_like(octave_base) if detail is None else images.resize_image(detail, hw)
        current = np.clip(octave_base + detail, 0.0, 255.0)
        objective_fn = _octave_objective(taps_fn, options, hw, variables)
        carry = (jnp.asarray(current), key)
        tiled, loop, value_and_grad = _compile_octave(
            objective_fn, options, budget, carry, variables
        )
        loops[tiled][hw] = loop
        measure = jax.jit(lambda x, v, f=value_and_grad: f(x, v)[0])
        before = float(measure(jnp.asarray(current), variables))
        (result, key), history = loop.run(
            carry, variables, options.steps_per_octave, progress=progress
        )
        after = float(measure(result, variables))
        current = np.asarray(result)
        detail = current - octave_base
        histories.append(history)
        reports.append(OctaveReport(hw, tiled, before, after, loop.last_compiled_bytes))

    history = {k: np.concatenate([h[k] for h in histories]) for k in histories[0]}
    trace_counts = {
        f"{'tiled' if tiled else 'untiled'} {hw[1]}×{hw[0]}": loop.trace_count
        for tiled, by_shape in loops.items()
        for hw, loop in by_shape.items()
    }
    return DreamResult(current, reports, history, trace_counts)


# ----------------------------------------------------------------------------------------------------
# Config form (`python -m tljax.dream`, configs/dream_*.py)


def default_config() -> Config:
    """The DeepDream run config: I/O keys plus every `DreamOptions` field with its default.

    Keys: `model` (EfficientNet-Lite0, whose weights install offline), `weights` ("default", a
    registered name, a .pth/.safetensors path, or "random"), `dtype`, `image` (a path), `out`,
    `max_side` (resize the input so its longer side is this; 0 keeps it), then the `DreamOptions`
    fields (documented there, real types). Per-backbone values: `configs/dream_lite0.py` (the CLI's
    default), `dream_vgg19.py`, `dream_resnet50.py`. Locked: setting a key that does not exist raises.
    """
    io = dict(model="efficientnet_lite0", weights="default", dtype="float32", image="")
    return tool_config({**io, "out": "dream.png", "max_side": 0}, DreamOptions())


def options_from_config(config: Config) -> DreamOptions:
    """The `DreamOptions` of a `default_config()`-shaped config (validated by `DreamOptions`)."""
    return read_options(config, DreamOptions)


def run_from_config(config: Config, *, progress: bool = True) -> DreamResult:
    """Checks `config.out`, loads `config.image` and the backbone, dreams, writes `config.out` atomically."""
    from pathlib import Path

    dream_options = options_from_config(config)
    if not config.image:
        raise ConfigError("an input image is needed (--image)")
    images.check_writable(config.out)
    image = images.load_image(config.image, max_side=config.max_side or None)
    model, variables, preprocessing = backbone.from_config(config)
    result = dream(
        model,
        variables,
        image,
        preprocessing=preprocessing,
        options=dream_options,
        progress=progress,
    )
    out = images.save_image(config.out, result.image)
    gains = ", ".join(f"{r.objective_before:.3g}→{r.objective_after:.3g}" for r in result.octaves)
    print(
        f"wrote {Path(out).resolve()}  ({result.image.shape[1]}×{result.image.shape[0]}; "
        f"objective per octave {gains})"
    )
    return result
