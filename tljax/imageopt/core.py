"""The objective-over-taps core shared by every image-optimisation tool.

Style transfer, DeepDream and feature visualisation all hold a network fixed and take gradients with
respect to the *image*. They share four things, and this module holds exactly those:

* `make_taps_fn`: a jit-able `taps_fn(image) -> {tap name: activation}` built from a model, its variables
  and tap names. The image is in 0..255 RGB pixel units; the weights' `Preprocessing` is applied inside,
  so every tool optimises in the same space and learning rates / clipping mean the same thing.
* Image I/O with clear errors: `load_image` (gray, RGBA, palette, 16-bit and EXIF-rotated files become
  float RGB), `save_image`, `resize_image`, `fit_max_side`, `preprocess`/`deprocess`.
* `ChunkedLoop`: runs `step(carry, consts) -> (carry, metrics)` many times, a chunk of steps per
  compiled `lax.scan` (or, on XLA:CPU for networks whose loop bodies run slower, one compiled step
  called per step), with a tqdm bar between chunks. It compiles ahead of time
  once per input shape and raises if the step is ever traced again.
* Memory checks (`memory_budget_bytes`, `MemoryBudgetExceeded`) so a too-large image becomes automatic
  tiling (DeepDream) or a clear error (style transfer) instead of an allocator crash.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from jax import lax
from tqdm.auto import tqdm

from tljax.typing import PyTree

Array = jax.Array

__all__ = [
    "ChunkedLoop",
    "MemoryBudgetExceeded",
    "TapSpec",
    "TapsFn",
    "check_taps",
    "deprocess",
    "fit_max_side",
    "load_backbone",
    "load_image",
    "make_taps_fn",
    "memory_budget_bytes",
    "parse_tap_spec",
    "preprocess",
    "resize_image",
    "save_image",
]


# ----------------------------------------------------------------------------------------------------
# Preprocessing


class MeanStd(Protocol):
    """What the core needs from `tljax.weights.Preprocessing`: mean and std in 0..255 pixel units."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def preprocess(image: Array, preprocessing: MeanStd | None) -> Array:
    """0..255 RGB pixels → the network's input space (`tljax.data.preprocess.normalize`), `[..., 3]`."""
    from tljax.data.preprocess import normalize

    return image if preprocessing is None else normalize(image, preprocessing)


def deprocess(x: Array, preprocessing: MeanStd | None) -> Array:
    """Inverse of `preprocess` (`tljax.data.preprocess.denormalize`): → 0..255 pixels, not clipped."""
    from tljax.data.preprocess import denormalize

    return x if preprocessing is None else denormalize(x, preprocessing)


# ----------------------------------------------------------------------------------------------------
# Taps


@dataclasses.dataclass(frozen=True)
class TapSpec:
    """A tap, optionally narrowed to one channel: `"blocks.10"` or `"blocks.10:37"`."""

    tap: str
    channel: int | None = None

    def __str__(self) -> str:
        return self.tap if self.channel is None else f"{self.tap}:{self.channel}"


def parse_tap_spec(spec: str) -> TapSpec:
    """Parses `"tap"` or `"tap:channel"` (tap names contain dots, never colons)."""
    tap, sep, channel = spec.strip().partition(":")
    if not tap:
        raise ValueError(f"empty tap name in {spec!r}; expected 'tap' or 'tap:channel'")
    if not sep:
        return TapSpec(tap)
    try:
        index = int(channel)
    except ValueError:
        raise ValueError(f"bad channel in {spec!r}: expected 'tap:INTEGER'") from None
    if index < 0:
        raise ValueError(f"bad channel in {spec!r}: channels are counted from 0")
    return TapSpec(tap, index)


def check_taps(model: nn.Module, taps: Sequence[str]) -> None:
    """Raises the model's own `ValueError` (listing the valid names) for unknown taps, before any trace.

    Models following the tljax contract raise this themselves at trace time; checking eagerly means the
    error appears at set-up rather than deep inside a jit trace, where it is easy to misread.
    """
    if not hasattr(model, "tap_names"):
        return  # the model will raise when traced
    valid = tuple(model.tap_names())
    unknown = [t for t in taps if t not in valid]
    if unknown:
        raise ValueError(
            f"unknown tap name(s) {unknown} for {type(model).__name__}; valid taps are: "
            f"{', '.join(valid)} (list them with tljax.models.tap_names(model))"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class TapsFn:
    """`taps_fn(image) -> {tap: [B, h, w, C]}` for a fixed model, tap set and preprocessing.

    `image` is `[H, W, 3]` or `[B, H, W, 3]` in 0..255 RGB pixels. Call as `taps_fn(image)` to use the
    bound `variables`, or `taps_fn(image, variables)` inside jit so the weights are an argument rather
    than constants baked into the compiled program (VGG19's 80 MB would otherwise be copied into every
    executable and slow compilation down).
    """

    model: nn.Module
    variables: PyTree
    taps: tuple[str, ...]
    preprocessing: MeanStd | None = None

    def __call__(self, image: Array, variables: PyTree | None = None) -> dict[str, Array]:
        x = image if image.ndim == 4 else image[None]
        x = preprocess(x.astype(jnp.float32), self.preprocessing)
        variables = self.variables if variables is None else variables
        return self.model.apply(variables, x, train=False, taps=self.taps)


def make_taps_fn(
    model: nn.Module,
    variables: PyTree,
    taps: Sequence[str],
    *,
    preprocessing: MeanStd | None = None,
) -> TapsFn:
    """Builds the jit-able `taps_fn` of `model` for `taps`, validating the names first.

    `taps` may be plain names or `"tap:channel"` specs; the channel part is dropped here (the caller
    selects channels) and duplicates are merged, so one forward pass serves every objective term.
    """
    names = tuple(dict.fromkeys(parse_tap_spec(t).tap for t in taps))
    if not names:
        raise ValueError("no taps requested")
    check_taps(model, names)
    return TapsFn(model, variables, names, preprocessing)


# ----------------------------------------------------------------------------------------------------
# Image I/O


def load_image(path: str | os.PathLike, *, max_side: int | None = None) -> np.ndarray:
    """Reads an image file as float32 RGB `[H, W, 3]` in 0..255, optionally resized to `max_side`.

    Decoded by the one decoder, `tljax.data.images.load_image`, with the transparency policy
    `alpha="white"`: transparent areas are composited on white (they are almost always background, and
    black would paint hard edges the optimiser then amplifies). Everything else (gray, palette, CMYK,
    16-bit, EXIF orientation) gives exactly the pixels the training pipeline and `predict` see. A missing
    file raises `tljax.errors.ImageNotFoundError` (a `FileNotFoundError`), a file that cannot be decoded
    `tljax.errors.BadImageError` (a `ValueError`), both naming the path.
    """
    from tljax import errors
    from tljax.data import images

    path = Path(path)
    if not path.exists():
        raise errors.ImageNotFoundError(f"image file not found: {str(path)!r}")
    if path.is_dir():
        raise errors.BadImageError(f"expected an image file, got a directory: {str(path)!r}")
    try:
        rgb = images.load_image(str(path), alpha="white").astype(np.float32)
    except errors.BadImageError as err:
        cause = err.__cause__ or err  # the decoder's message starts with the path; say it once
        raise errors.BadImageError(
            f"cannot read {str(path)!r}: {type(cause).__name__}: {cause}"
        ) from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise errors.BadImageError(f"image {str(path)!r} is empty ({rgb.shape[1]}×{rgb.shape[0]})")
    if max_side is not None:
        rgb = fit_max_side(rgb, max_side)
    return rgb


def save_image(path: str | os.PathLike, image: Array | np.ndarray) -> Path:
    """Writes `[H, W, 3]` (or `[1, H, W, 3]`) 0..255 pixels as an 8-bit image (format from the suffix)."""
    from PIL import Image

    pixels = np.asarray(image, np.float32)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {pixels.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.nan_to_num(pixels), 0.0, 255.0).round().astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def resize_image(image: Array | np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resizes `[H, W, 3]` pixels to `hw` (bicubic, antialiased when shrinking), float32 numpy."""
    image = np.asarray(image, np.float32)
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    out = jax.image.resize(jnp.asarray(image), (*hw, image.shape[-1]), "cubic", antialias=True)
    return np.asarray(out)


def fit_max_side(image: Array | np.ndarray, max_side: int) -> np.ndarray:
    """Resizes so the longer side is `max_side`, keeping the aspect ratio (neural-style's -image_size)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    return resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))


# ----------------------------------------------------------------------------------------------------
# Memory


class MemoryBudgetExceeded(MemoryError):
    """A compiled step needs more device memory than the budget (raised before it runs)."""

    def __init__(self, needed: int, budget: int, what: str, hint: str = ""):
        self.needed, self.budget, self.what = needed, budget, what
        message = (
            f"{what} needs about {needed / 2**30:.2f} GiB of device memory but only "
            f"{budget / 2**30:.2f} GiB are available"
        )
        super().__init__(f"{message}; {hint}" if hint else message)


def memory_budget_bytes(device: jax.Device | None = None, fraction: float = 0.8) -> int:
    """Bytes a step may use on `device`: `fraction` of free accelerator memory, or of available RAM."""
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # CPU backends may not implement it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(fraction * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(fraction * int(line.split()[1]) * 1024)
    except OSError:
        pass
    return int(fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def compiled_bytes(compiled: Any) -> int | None:
    """Peak bytes of a compiled executable (arguments + outputs + temporaries), if XLA reports it."""
    try:
        stats = compiled.memory_analysis()
    except Exception:
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


# ----------------------------------------------------------------------------------------------------
# Chunked optimisation loop

StepFn = Callable[[PyTree, PyTree], tuple[PyTree, Mapping[str, Array]]]


def _unshare(tree: PyTree) -> PyTree:
    """Copies leaves that alias an earlier leaf: a donated argument may not appear twice (optax's Adam
    initialises both moments from one cached zeros buffer)."""
    seen: set[int] = set()

    def fresh(x):
        if isinstance(x, jax.Array) and id(x) in seen:
            return jnp.copy(x)
        seen.add(id(x))
        return x

    return jax.tree.map(fresh, tree)


def _signature(tree: PyTree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return (treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))


class ChunkedLoop:
    """Runs `step(carry, consts) -> (carry, metrics)` `num_steps` times, `chunk_size` steps per call.

    On accelerators (`inner="scan"`) each chunk is one `jax.jit`-compiled `lax.scan`, so the Python
    overhead is paid once per chunk while the progress bar still moves between chunks. The number of
    steps need not divide `chunk_size`: the scan always has `chunk_size` iterations and a boolean mask
    turns the surplus ones into no-ops, so the last, shorter chunk reuses the same executable.

    On XLA:CPU, whether a loop inside the executable helps depends on the network, measured on this
    2-core CPU: VGG19's style step at 128² takes 0.33 s as one jitted step but 1.45 s inside
    `lax.scan`/`fori_loop` (3-5×, also at 512²; ResNet-50 at 224²: 0.20 s vs 0.35 s), while EfficientNet-Lite0's DeepDream step at 256² takes
    0.45 s as one jitted step and 0.11 s inside `lax.scan` (its depthwise convolutions compile to a
    faster kernel in the loop body). So `inner="auto"` means `lax.scan` on accelerators and `cpu_inner`
    on the CPU, which callers choose per backbone (`MODEL_DEFAULTS` of the style and dream modules):
    `"python"` compiles *one step* and calls it `chunk_size` times per chunk (at ≥ 0.1 s per step the
    dispatch overhead is noise); `"unrolled"` is `lax.scan(unroll=True)` (fast, but compiles
    `chunk_size` copies of the network).

    Either way executables are compiled ahead of time once per input signature; `trace_count` counts
    traces, and tracing again after the first compilation raises `RuntimeError` (the usual cause is a
    Python scalar or a shape that changes between calls). `consts` (weights, targets) are arguments
    rather than closure constants so they are not baked into the executable; `carry` is donated, so the
    image and optimiser state are updated in place. `memory_budget` (bytes) makes `run` raise
    `MemoryBudgetExceeded` before running a step that XLA says would not fit.
    """

    def __init__(
        self,
        step: StepFn,
        chunk_size: int = 20,
        *,
        desc: str = "steps",
        memory_budget: int | None = None,
        inner: str = "auto",
        cpu_inner: str = "scan",
    ):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        for name, value in (("inner", inner), ("cpu_inner", cpu_inner)):
            if value not in ("auto", "scan", "unrolled", "python"):
                raise ValueError(
                    f"{name}={value!r}; expected 'auto', 'scan', 'unrolled' or 'python'"
                )
        if inner == "auto":
            inner = cpu_inner if jax.default_backend() == "cpu" else "scan"
        if inner == "auto":
            inner = "scan"
        self.step = step
        self.chunk_size = chunk_size
        self.desc = desc
        self.memory_budget = memory_budget
        self.inner = inner
        self.trace_count = 0
        self.last_compiled_bytes: int | None = None  # XLA's estimate for the most recent signature
        self._compiled: dict[tuple, Any] = {}
        target = self._single_step if inner == "python" else self._chunk
        self._jitted = jax.jit(target, donate_argnums=0)

    def _single_step(self, carry: PyTree, consts: PyTree):
        self.trace_count += 1  # runs only while tracing
        return self.step(carry, consts)

    def _chunk(self, carry: PyTree, consts: PyTree, active: Array):
        self.trace_count += 1  # runs only while tracing
        metric_shapes = jax.eval_shape(self.step, carry, consts)[1]

        def skip(c, _):
            blank = jax.tree.map(
                lambda s: jnp.full(
                    s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.inexact) else 0, s.dtype
                ),
                metric_shapes,
            )
            return c, blank

        def body(c, is_active):
            return lax.cond(is_active, self.step, skip, c, consts)

        return lax.scan(body, carry, active, unroll=self.inner == "unrolled")

    def compile(self, carry: PyTree, consts: PyTree) -> Any:
        """Compiles (once per signature) and returns the executable; checks the memory budget."""
        key = (_signature(carry), _signature(consts))
        if key not in self._compiled:
            if self.inner == "python":
                lowered = self._jitted.lower(carry, consts)
            else:
                lowered = self._jitted.lower(
                    carry, consts, jax.ShapeDtypeStruct((self.chunk_size,), jnp.bool_)
                )
            compiled = lowered.compile()
            needed = compiled_bytes(compiled)
            if (
                self.memory_budget is not None
                and needed is not None
                and needed > self.memory_budget
            ):
                raise MemoryBudgetExceeded(needed, self.memory_budget, f"one {self.desc} step")
            self._compiled[key] = (compiled, needed)
        compiled, self.last_compiled_bytes = self._compiled[key]
        return compiled

    def _run_chunk(self, compiled: Any, carry: PyTree, consts: PyTree, n: int):
        """`n` steps → (carry, metrics stacked over at least the first `n` steps)."""
        if self.inner == "python":
            per_step = []
            for _ in range(n):
                carry, metrics = compiled(carry, consts)
                per_step.append(metrics)
            return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)
        active = np.arange(self.chunk_size) < n
        return compiled(carry, consts, active)

    def run(
        self,
        carry: PyTree,
        consts: PyTree,
        num_steps: int,
        *,
        progress: bool = True,
        postfix: Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]] | None = None,
    ) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Runs `num_steps` steps; returns the final carry and each metric stacked over steps `[num_steps]`.

        `postfix(last_metrics)` chooses what the bar shows (default: every scalar metric of the last step).
        """
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        carry = _unshare(carry)
        compiled = self.compile(carry, consts)
        traces_after_compile = self.trace_count
        collected: list[Mapping[str, Array]] = []
        counts: list[int] = []
        bar = tqdm(total=num_steps, desc=self.desc, disable=not progress, leave=False)
        pending: tuple[Mapping[str, Array], int] | None = None
        done = 0
        while done < num_steps:
            n = min(self.chunk_size, num_steps - done)
            carry, metrics = self._run_chunk(compiled, carry, consts, n)
            done += n
            # Read the previous chunk's metrics only after dispatching this one: the host fetch then
            # overlaps with device work instead of stalling the pipeline.
            if pending is not None:
                self._report(bar, *pending, postfix)
            pending = (metrics, n)
            collected.append(metrics)
            counts.append(n)
            if self.trace_count != traces_after_compile:
                raise RuntimeError(
                    f"{self.desc}: the step was re-traced after its first compilation"
                )
        if pending is not None:
            self._report(bar, *pending, postfix)
        bar.close()
        history = {
            name: np.concatenate(
                [np.asarray(m[name])[:n] for m, n in zip(collected, counts, strict=True)]
            )
            for name in (collected[0] if collected else {})
        }
        return carry, history

    @staticmethod
    def _report(bar: Any, metrics: Mapping[str, Array], n: int, postfix: Callable | None) -> None:
        last = {k: np.asarray(v)[n - 1] for k, v in metrics.items()}
        shown = (
            postfix(last)
            if postfix
            else {k: f"{float(v):.4g}" for k, v in last.items() if np.ndim(v) == 0}
        )
        bar.set_postfix(shown, refresh=False)
        bar.update(n)


def num_positions(shape: Sequence[int]) -> int:
    """Spatial positions of an activation `[B, h, w, C]` (or `[B, C]` → 1), for mean normalisations."""
    return int(math.prod(shape[1:-1])) if len(shape) > 2 else 1


# ----------------------------------------------------------------------------------------------------
# Backbones for the CLIs

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def default_preprocessing(model_name: str) -> MeanStd:
    """The registered preprocessing of `model_name`'s own weights, else its family's (Lite: 127/128)."""
    from tljax import weights

    try:
        return weights.get_spec(model_name).preprocessing
    except (
        Exception
    ):  # no registered weights under this architecture name (e.g. efficientnet_lite4)
        spec_name = "efficientnet_lite0" if model_name.startswith("efficientnet_lite") else "vgg19"
        return weights.get_spec(spec_name).preprocessing


def load_backbone(
    model_name: str,
    weights_name: str = "default",
    *,
    dtype: str | Any = "float32",
    seed: int = 0,
) -> tuple[nn.Module, PyTree, MeanStd]:
    """A headless `tljax.models` backbone, its variables and its preprocessing, for image optimisation.

    `weights_name`: "default" (the weights registered under the model's own name, e.g. "vgg19",
    "efficientnet_lite0"), another registered name, a file/directory path (e.g. a downloaded
    `vgg19-dcbb9e9d.pth`), or "random" (a seeded init: for benchmarks and plumbing tests).
    The classifier is dropped: taps never reach it, and VGG's fc6 alone is 400 MB.
    """
    from tljax import models, weights

    compute_dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    headless = models.get(model_name, include_top=False, dtype=compute_dtype)
    preprocessing = default_preprocessing(model_name)
    if weights_name == "random":
        variables = jax.jit(headless.init)(
            jax.random.key(seed), jnp.zeros((1, 64, 64, 3), jnp.float32)
        )
        return headless, variables, preprocessing
    source = model_name if weights_name == "default" else weights_name
    if not Path(os.fspath(source)).expanduser().exists():
        preprocessing = weights.get_spec(
            source
        ).preprocessing  # unknown names raise, listing known ones
    # `include_top=False` drops the file's head (named in the port report) when loading.
    return headless, weights.load(source, headless), preprocessing


def config_from_flags(
    config: Any, default_config: Callable[[str], Any], flag_values: Any, direct: Sequence[str]
) -> Any:
    """A tool's run config: the `--config` file (or `default_config(--model)`), then every flag in
    `direct` that was given explicitly written over the config key of the same name.

    `--model` may only repeat the config file's model (a different one would leave its layer defaults
    behind): set `--config.model` instead.
    """
    if config is None:
        config = default_config(flag_values.model or "efficientnet_lite0")
    elif flag_values.model is not None and flag_values.model != config.model:
        raise app.UsageError(
            "--model conflicts with the config's model; set --config.model instead"
        )
    for name in direct:
        value = getattr(flag_values, name)
        if value is not None:
            config[name] = value
    return config
