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
moves the remaining seams every step so they never accumulate. `tiling="auto"` tiles only when XLA
says the untiled step would not fit in memory. Windows are visited by a `lax.scan`, so only one
window's activations are alive at a time (on XLA:CPU that loop is slower than untiled, which is why
tiling is not the default when the image fits).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tljax.imageopt import core
from tljax.imageopt.core import Array, MeanStd, PyTree, TapSpec

__all__ = [
    "DreamOptions",
    "DreamResult",
    "MODEL_DEFAULTS",
    "OctaveReport",
    "default_config",
    "dream",
    "make_objective",
    "octave_shapes",
    "run_from_config",
    "tile_windows",
    "tiled_value_and_grad",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DreamOptions:
    """Settings of one DeepDream run.

    Attributes:
      objectives: `"tap"` or `"tap:channel"` specs whose activation is amplified.
      objective_weights: one weight per spec (default 1 each).
      reduction: "mean" (mean activation) or "l2" (half the mean squared activation).
      octaves: number of pyramid levels; octave k (from the finest) is 1/octave_scale^k of the size.
      octave_scale: size ratio between octaves (≈1.3–1.4 in the original).
      steps_per_octave: ascent steps at each octave.
      step_size: pixels moved per step, on the gradient normalised by its mean |·|.
      jitter: maximal random roll, in pixels, along each axis before each step.
      tiling: "auto" (tile only if the untiled step would not fit in memory), "always" or "never".
      tile_size: core size of a tile, in pixels.
      tile_overlap: context pixels around each tile's core.
      min_side: octaves whose shorter side would be smaller than this are dropped.
      chunk_size: steps per chunk of `core.ChunkedLoop` (progress-bar granularity).
      cpu_loop: how a chunk runs on XLA:CPU, "scan" or "python" (one compiled step per call): which is
        faster depends on the network (`core.ChunkedLoop`); accelerators always use `lax.scan`.
      seed: for the jitter.
    """

    objectives: tuple[str, ...] = ("blocks.10",)
    objective_weights: tuple[float, ...] | None = None
    reduction: str = "mean"
    octaves: int = 4
    octave_scale: float = 1.3
    steps_per_octave: int = 20
    step_size: float = 1.5
    jitter: int = 32
    tiling: str = "auto"
    tile_size: int = 512
    tile_overlap: int = 64
    min_side: int = 32
    chunk_size: int = 10
    cpu_loop: str = "scan"
    seed: int = 0

    def __post_init__(self):
        objectives = self.objectives
        if isinstance(objectives, str):
            objectives = tuple(s.strip() for s in objectives.split(",") if s.strip())
        object.__setattr__(self, "objectives", tuple(objectives))
        for spec in self.objectives:
            core.parse_tap_spec(spec)  # raises on a malformed spec
        if not self.objectives:
            raise ValueError("DeepDream needs at least one objective tap")
        if self.objective_weights is not None:
            weights = tuple(float(w) for w in self.objective_weights)
            if len(weights) != len(self.objectives):
                raise ValueError(
                    f"{len(weights)} objective weights for {len(self.objectives)} objectives"
                )
            object.__setattr__(self, "objective_weights", weights)
        if self.reduction not in ("mean", "l2"):
            raise ValueError(f"reduction={self.reduction!r}; expected 'mean' or 'l2'")
        if self.tiling not in ("auto", "always", "never"):
            raise ValueError(f"tiling={self.tiling!r}; expected 'auto', 'always' or 'never'")
        if self.octaves < 1 or self.octave_scale < 1.0:
            raise ValueError("octaves must be >= 1 and octave_scale >= 1")
        if self.cpu_loop not in ("scan", "python", "unrolled"):
            raise ValueError(f"cpu_loop={self.cpu_loop!r}; expected 'scan', 'python' or 'unrolled'")
        if self.tile_size < 16 or self.tile_overlap < 0 or self.jitter < 0:
            raise ValueError("tile_size must be >= 16, tile_overlap and jitter >= 0")

    @property
    def specs(self) -> tuple[TapSpec, ...]:
        return tuple(core.parse_tap_spec(s) for s in self.objectives)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.objective_weights or (1.0,) * len(self.objectives)


# Starting points per backbone family (by model-name prefix). Lite0's values were chosen by eye on the
# embedded default (astronaut, 256 px); deeper Lite blocks give object parts, early ones strokes.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg": dict(objectives=("relu4_3",), reduction="l2", cpu_loop="python"),
    "resnet": dict(objectives=("layer3.3",), reduction="l2", cpu_loop="python"),
    "efficientnet_lite": dict(objectives=("blocks.10",), reduction="l2"),
}


def dream_defaults(model_name: str) -> dict[str, Any]:
    for family, values in MODEL_DEFAULTS.items():
        if model_name.startswith(family):
            return dict(values)
    return dict(MODEL_DEFAULTS["efficientnet_lite"])


# ----------------------------------------------------------------------------------------------------
# Objective


def make_objective(
    taps_fn: core.TapsFn,
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
        normalisers.append(
            core.num_positions(shape) * (1 if spec.channel is not None else channels)
        )

    def reduce(acts: Mapping[str, Array], image_hw: tuple[int, int], region: tuple | None) -> Array:
        total = jnp.zeros((), jnp.float32)
        for spec, weight, n in zip(specs, weights, normalisers, strict=True):
            a = acts[spec.tap].astype(jnp.float32)[0]  # [h, w, C]
            a = a[..., spec.channel] if spec.channel is not None else a
            per_element = a if reduction == "mean" else 0.5 * a * a
            if region is not None:
                mask = _region_mask(a.shape[:2], image_hw, region)
                per_element = per_element * mask.reshape(mask.shape + (1,) * (a.ndim - 2))
            total = total + weight * jnp.sum(per_element) / n
        return total

    def objective(image: Array, variables: PyTree, region: tuple | None = None) -> Array:
        return reduce(taps_fn(image, variables), image.shape[:2], region)

    def full_and_region(image: Array, variables: PyTree, region: tuple) -> tuple[Array, Array]:
        """Both sums from one forward pass (for tiles: gradient of the first, report the second)."""
        acts = taps_fn(image, variables)
        return reduce(acts, image.shape[:2], None), reduce(acts, image.shape[:2], region)

    objective.full_and_region = full_and_region
    return objective


def _region_mask(map_hw: tuple[int, int], image_hw: tuple[int, int], region: tuple) -> Array:
    """[h, w] mask of activation positions whose top-left pixel (index × stride) lies in `region`."""
    y0, y1, x0, x1 = region
    ys = jnp.arange(map_hw[0]) * (image_hw[0] / map_hw[0])
    xs = jnp.arange(map_hw[1]) * (image_hw[1] / map_hw[1])
    inside_y = (ys >= y0) & (ys < y1)
    inside_x = (xs >= x0) & (xs < x1)
    return (inside_y[:, None] & inside_x[None, :]).astype(jnp.float32)


def tile_windows(length: int, tile: int, overlap: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Tiling of one axis: (core starts, window starts, core length, window length).

    Cores of `tile` pixels cover [0, length) (the last one shifted back to end at `length`, overlapping
    its neighbour: overlapping cores receive identical values when the context suffices). Each window
    adds `overlap` pixels of context per side, clamped inside the image, where the image border is the
    true border, so it needs no context. An axis that fits in one window is not split.
    """
    window = tile + 2 * overlap
    if length <= window:
        return np.zeros(1, np.int32), np.zeros(1, np.int32), length, length
    count = math.ceil(length / tile)
    cores = np.minimum(np.arange(count) * tile, length - tile)
    windows = np.clip(cores - overlap, 0, length - window)
    return cores.astype(np.int32), windows.astype(np.int32), tile, window


def _owned_starts(cores: np.ndarray, core_len: int) -> np.ndarray:
    """Where each core's *owned* part starts: the shifted last core does not own its overlap."""
    owned = cores.copy()
    owned[1:] = np.maximum(cores[1:], cores[:-1] + core_len)
    return owned


def tiled_value_and_grad(objective, image: Array, variables: PyTree, tile: int, overlap: int):
    """(value, gradient) of `objective` on `image [H, W, 3]`, one window at a time (`lax.scan`).

    Only one window's activations are alive at a time, which bounds memory by the tile size. Each window
    contributes the gradient of its core and the objective over the activations it owns, so both equal
    the untiled ones when `overlap` covers twice the receptive-field radius and window starts are
    multiples of the tap's stride.
    """
    height, width = image.shape[:2]
    core_y, win_y, core_h, win_h = tile_windows(height, tile, overlap)
    core_x, win_x, core_w, win_w = tile_windows(width, tile, overlap)
    own_y, own_x = _owned_starts(core_y, core_h), _owned_starts(core_x, core_w)
    columns = [
        np.meshgrid(a, b, indexing="ij")
        for a, b in ((core_y, core_x), (win_y, win_x), (own_y, own_x))
    ]
    grid = np.stack([m.ravel() for pair in columns for m in pair], axis=1)  # [tiles, 6]

    def body(carry, starts):
        grad, value = carry
        cy, cx, wy, wx, oy, ox = (starts[i] for i in range(6))
        window = lax.dynamic_slice(image, (wy, wx, 0), (win_h, win_w, 3))
        owned = (oy - wy, cy - wy + core_h, ox - wx, cx - wx + core_w)  # in window coordinates
        (_, v), g = jax.value_and_grad(
            lambda w: objective.full_and_region(w, variables, owned), has_aux=True
        )(window)
        core_grad = lax.dynamic_slice(g, (cy - wy, cx - wx, 0), (core_h, core_w, 3))
        grad = lax.dynamic_update_slice(grad, core_grad, (cy, cx, 0))
        return (grad, value + v), None

    init = (jnp.zeros_like(image), jnp.zeros((), jnp.float32))
    (grad, value), _ = lax.scan(body, init, jnp.asarray(grid))
    return value, grad


def make_step(objective, options: DreamOptions, tiled: bool):
    """The `core.ChunkedLoop` step: carry = (image [H, W, 3], key), consts = variables."""

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
        rolled = jnp.roll(image, (shift[0], shift[1]), axis=(0, 1))
        value, grad = value_and_grad(rolled, variables)
        grad = jnp.roll(grad, (-shift[0], -shift[1]), axis=(0, 1))
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
    does not fit, `core.MemoryBudgetExceeded` says so.
    """
    specs = options.specs
    taps_fn = core.make_taps_fn(
        model, variables, [s.tap for s in specs], preprocessing=preprocessing
    )
    budget = memory_budget if memory_budget is not None else core.memory_budget_bytes()
    base = np.asarray(image, np.float32)
    loops: dict[bool, dict[tuple[int, int], core.ChunkedLoop]] = {False: {}, True: {}}
    key = jax.random.key(options.seed)
    detail = None
    reports: list[OctaveReport] = []
    histories = []
    for hw in octave_shapes(
        base.shape[:2], options.octaves, options.octave_scale, options.min_side
    ):
        octave_base = core.resize_image(base, hw)
        detail = np.zeros_like(octave_base) if detail is None else core.resize_image(detail, hw)
        current = np.clip(octave_base + detail, 0.0, 255.0)
        full_shapes = {
            t: s.shape
            for t, s in jax.eval_shape(
                taps_fn, jax.ShapeDtypeStruct((*hw, 3), jnp.float32), variables
            ).items()
        }
        objective = make_objective(taps_fn, specs, options.weights, options.reduction, full_shapes)

        order = {"never": (False,), "always": (True,), "auto": (False, True)}[options.tiling]
        for tiled in order:
            step, value_and_grad = make_step(objective, options, tiled)
            loop = core.ChunkedLoop(
                step,
                options.chunk_size,
                desc=f"dream {hw[1]}×{hw[0]}",
                memory_budget=budget,
                cpu_inner=options.cpu_loop,
            )
            carry = (jnp.asarray(current), key)
            try:
                loop.compile(carry, variables)
            except core.MemoryBudgetExceeded as err:
                if tiled or options.tiling == "never":
                    hint = (
                        "lower tile_size (tiles are differentiated one at a time)"
                        if tiled
                        else "use tiling='auto' or 'always', or a smaller image"
                    )
                    raise core.MemoryBudgetExceeded(
                        err.needed, err.budget, err.what, hint
                    ) from None
                log.info("dream: %s×%s does not fit untiled (%s); tiling", hw[1], hw[0], err)
                continue
            break
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

_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(DreamOptions))


def default_config(model: str = "efficientnet_lite0") -> Any:
    """A locked `ml_collections.ConfigDict`: I/O fields plus every `DreamOptions` field."""
    import ml_collections

    base = dataclasses.asdict(DreamOptions())
    base.update(dream_defaults(model))
    config = ml_collections.ConfigDict()
    config.model = model
    config.weights = (
        "default"  # registered name, file path, "default" (the model's own) or "random"
    )
    config.image = ""
    config.out = "dream.png"
    config.max_side = 0  # resize the input so its longer side is this (0: keep)
    config.dtype = "float32"
    for name in _OPTION_FIELDS:
        value = base[name]
        if name == "objective_weights":
            value = "" if value is None else ",".join(str(v) for v in value)
        elif isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        config[name] = value
    config.lock()
    return config


def options_from_config(config: Mapping[str, Any]) -> DreamOptions:
    values = {name: config[name] for name in _OPTION_FIELDS}
    if isinstance(values["objectives"], str):
        values["objectives"] = tuple(
            s.strip() for s in values["objectives"].split(",") if s.strip()
        )
    weights = values["objective_weights"]
    if isinstance(weights, str):
        weights = tuple(float(w) for w in weights.split(",") if w.strip())
    values["objective_weights"] = tuple(weights) or None
    return DreamOptions(**values)


def run_from_config(config: Mapping[str, Any], *, progress: bool = True) -> DreamResult:
    """Loads `config.image` and the backbone, dreams, writes `config.out`."""
    from pathlib import Path

    options = options_from_config(config)
    if not config["image"]:
        raise ValueError("an input image is needed (--image)")
    image = core.load_image(config["image"], max_side=config["max_side"] or None)
    model, variables, preprocessing = core.load_backbone(
        config["model"], config["weights"], dtype=config["dtype"]
    )
    result = dream(
        model, variables, image, preprocessing=preprocessing, options=options, progress=progress
    )
    out = core.save_image(config["out"], result.image)
    gains = ", ".join(f"{r.objective_before:.3g}→{r.objective_after:.3g}" for r in result.octaves)
    print(
        f"wrote {Path(out).resolve()}  ({result.image.shape[1]}×{result.image.shape[0]}; objective per octave {gains})"
    )
    return result
