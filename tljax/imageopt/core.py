"""The optimisation loop every image-optimisation tool runs, and its memory checks.

Style transfer, DeepDream and feature visualisation all hold a network fixed and take many gradient
steps on an *image*. This module holds the machinery that runs those steps:

* `ChunkedLoop`: runs `step(carry, consts) -> (carry, metrics)` many times, a chunk of steps per
  compiled `lax.scan` (or, on XLA:CPU for networks whose loop bodies run slower, one compiled step
  called per step), with a tqdm bar between chunks. It compiles ahead of time
  once per input shape and raises if the step is ever traced again.
* Memory checks (`memory_budget_bytes`, `MemoryBudgetExceeded`, `compiled_bytes`) so a too-large image
  becomes automatic tiling (DeepDream) or a clear error (style transfer) before anything is allocated.

The objective over taps is `tljax.imageopt.objective`, image files `tljax.imageopt.images`, backbones
`tljax.imageopt.backbone`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from tljax.errors import UserError
from tljax.typing import PyTree

Array = jax.Array

__all__ = [
    "ChunkedLoop",
    "MemoryBudgetExceeded",
    "compiled_bytes",
    "memory_budget_bytes",
]


# ----------------------------------------------------------------------------------------------------
# Memory


class MemoryBudgetExceeded(UserError, MemoryError):
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


def _default_platform() -> str:
    """The platform uncommitted computations run on: `jax.default_device`'s, else the default backend."""
    device = cast(
        Any, jax.config
    ).jax_default_device  # `jax.default_device`'s; not in jax's type stubs
    if device is None:
        return jax.default_backend()
    return device if isinstance(device, str) else device.platform


class ChunkedLoop:
    """Runs `step(carry, consts) -> (carry, metrics)` `num_steps` times, `chunk_size` steps per call.

    On accelerators (`inner="scan"`) each chunk is one `jax.jit`-compiled `lax.scan`, so the Python
    overhead is paid once per chunk while the progress bar still moves between chunks. The number of
    steps need not divide `chunk_size`: the scan always has `chunk_size` iterations and a boolean mask
    turns the surplus ones into no-ops, so the last, shorter chunk reuses the same executable.

    On XLA:CPU, whether a loop inside the executable helps depends on the network: VGG's and ResNet's
    steps run several times slower inside `lax.scan`/`fori_loop` than as one jitted step, while
    EfficientNet-Lite's run faster in the loop body (its depthwise convolutions compile to a faster
    kernel there; the README's benchmarks give the numbers). So `inner="auto"` means `lax.scan` on
    accelerators and `cpu_inner` on the CPU, which callers choose per backbone (the `cpu_loop` option,
    set in `configs/style_*.py` and `configs/dream_*.py`):
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
            # A host-side choice (a Python loop over one compiled step, or one scan), so unlike the
            # conv kernels it cannot be a `lax.platform_dependent` branch; it follows the platform the
            # steps will run on (`jax.default_device` if set), not the process's default backend.
            inner = cpu_inner if _default_platform() == "cpu" else "scan"
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
