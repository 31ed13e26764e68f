"""The device mesh and the shardings of a run: batch over `data`, state replicated unless a rule says.

A mesh is configured as axis names and sizes, `(("data", -1),)` by default: `-1` takes the devices the
other axes leave, so the same config runs on 1 CPU, 8 GPUs or a 256-chip pod. The batch dimension is
split over the `data` axis (data parallelism). Parameters, BatchNorm statistics and optimizer state are
replicated, except parameters that match a sharding rule `(regex, axis)`: those are split along their
largest dimension that the axis divides (FSDP-style, for models that do not fit one device), and the
optimizer slots of a parameter (Adam's `mu`, `nu`, ...) follow their parameter. Rules use the same
first-full-match regex matching as the parameter groups (`tljax.optim`).

Because the step is one `jax.jit` program over global arrays, every reduction over the batch — the loss
mean, the gradient and the BatchNorm batch statistics — is global: 8 devices × 4 images compute exactly
the statistics of one 32-image batch (up to floating-point summation order), not 8 per-device ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tljax.errors import ConfigError
from tljax.optim.param_groups import first_match, flat_paths
from tljax.typing import PyTree

DATA_AXIS = "data"
DEFAULT_MESH: tuple[tuple[str, int], ...] = ((DATA_AXIS, -1),)


def resolve_axes(
    axes: Sequence[Sequence[Any]], device_count: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(names, sizes) of a mesh spec such as `(("data", -1), ("model", 2))` on `device_count` devices.

    Raises `ConfigError` for an empty spec, a repeated or non-string name, a missing `data` axis, a size
    that is not a positive integer (or a single `-1`), or sizes whose product is not the device count.
    """
    axes = [tuple(axis) for axis in (axes or ())]
    if not axes or any(len(axis) != 2 for axis in axes):
        raise ConfigError(
            f"parallel.mesh {axes!r}: expected (name, size) pairs such as (('data', -1),)"
        )
    names = tuple(str(name) for name, _ in axes)
    if len(set(names)) != len(names) or DATA_AXIS not in names:
        raise ConfigError(
            f"parallel.mesh axes {names}: names must be unique and include {DATA_AXIS!r} (the batch axis)"
        )
    sizes = []
    for name, size in axes:
        if (
            isinstance(size, bool)
            or not isinstance(size, int | np.integer)
            or size == 0
            or size < -1
        ):
            raise ConfigError(
                f"parallel.mesh axis {name!r} has size {size!r}: use a positive integer or -1 (the rest)"
            )
        sizes.append(int(size))
    if sizes.count(-1) > 1:
        raise ConfigError(f"parallel.mesh {axes!r}: at most one axis may have size -1")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if device_count % fixed:
            raise ConfigError(
                f"parallel.mesh {axes!r}: the fixed axes use {fixed} devices, which does not divide the "
                f"{device_count} devices present; change the sizes so they divide {device_count}"
            )
        sizes[sizes.index(-1)] = device_count // fixed
    elif fixed != device_count:
        raise ConfigError(
            f"parallel.mesh {axes!r} multiplies to {fixed} devices but {device_count} are present; "
            f"make the sizes multiply to {device_count}, or give one axis size -1 (the rest)"
        )
    return names, tuple(sizes)


def make_mesh(
    axes: Sequence[Sequence[Any]] = DEFAULT_MESH, devices: Sequence[Any] | None = None
) -> Mesh:
    """The `jax.sharding.Mesh` of a mesh spec over all (global) devices, or over `devices`.

    Axes are `Auto` (the compiler propagates shardings from the step's inputs and outputs), and
    `jax.make_mesh` orders devices so that each process's devices are contiguous along `data`: process p
    holds rows `[p·B/P, (p+1)·B/P)` of a global batch, which is what `global_batch` feeds it.
    """
    devices = list(jax.devices() if devices is None else devices)
    names, sizes = resolve_axes(axes, len(devices))
    return jax.make_mesh(
        sizes, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names), devices=devices
    )


def data_size(mesh: Mesh) -> int:
    """How many ways the batch is split: the size of the mesh's `data` axis."""
    return int(mesh.shape[DATA_AXIS])


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
    """Raises `ConfigError` unless `batch_size` splits evenly over the data axis and the processes."""
    shards, processes = data_size(mesh), jax.process_count()
    for count, kind in ((shards, "devices on the 'data' mesh axis"), (processes, "processes")):
        if batch_size % count:
            nearest = sorted({(batch_size // count) * count, -(-batch_size // count) * count} - {0})
            raise ConfigError(
                f"{what}={batch_size} does not split over the {count} {kind}: use a multiple of "
                f"{count}, e.g. {' or '.join(map(str, nearest))} (the batch size is global, for all "
                "devices)"
            )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def parse_sharding_rules(
    rules: Sequence[Sequence[Any]] | None, mesh: Mesh
) -> list[tuple[str, str]]:
    """Validates `(regex, axis)` sharding rules against the mesh (bad regex or unknown axis → ConfigError)."""
    parsed = []
    for index, rule in enumerate(rules or ()):
        if len(rule) != 2:
            raise ConfigError(
                f"parallel.rules #{index} {rule!r}: expected a (regex, mesh axis) pair, e.g. "
                "('.*/kernel', 'model')"
            )
        pattern, axis = str(rule[0]), str(rule[1])
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(
                f"parallel.rules #{index}: invalid regex {pattern!r}: {error}"
            ) from error
        if axis not in mesh.shape:
            raise ConfigError(
                f"parallel.rules #{index} shards over axis {axis!r}, which the mesh {dict(mesh.shape)} "
                "lacks: add it to parallel.mesh"
            )
        parsed.append((pattern, axis))
    return parsed


def _split_spec(shape: tuple[int, ...], axis: str, mesh: Mesh) -> PartitionSpec | None:
    """Splits the largest dimension of `shape` that `axis` divides; None if none does."""
    size = int(mesh.shape[axis])
    candidates = [d for d in range(len(shape)) if shape[d] % size == 0 and shape[d] >= size]
    if size == 1 or not candidates:
        return None
    dim = max(candidates, key=lambda d: (shape[d], -d))
    return PartitionSpec(*([None] * dim + [axis]))


def param_specs(
    params: PyTree, rules: Sequence[Sequence[Any]] | None, mesh: Mesh
) -> dict[str, PartitionSpec]:
    """`{"layer/kernel": PartitionSpec}` for every parameter (replicated unless a rule splits it)."""
    parsed = parse_sharding_rules(rules, mesh)
    flat = flat_paths(params)
    matched = first_match(flat, [pattern for pattern, _ in parsed])
    specs = {}
    for path, leaf in flat.items():
        index = matched[path]
        spec = None if index is None else _split_spec(tuple(leaf.shape), parsed[index][1], mesh)
        if index is not None and spec is None:
            logging.info(
                "parallel.rules #%d matches %s %s but the axis divides none of its dimensions: "
                "replicated",
                index,
                path,
                tuple(leaf.shape),
            )
        specs[path] = spec or PartitionSpec()
    return specs


def _dict_keys(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(
    abstract_state: PyTree, params: PyTree, rules: Sequence[Sequence[Any]] | None, mesh: Mesh
) -> PyTree:
    """A `NamedSharding` for every leaf of `abstract_state` (a TrainState, or variables).

    A leaf whose dict-key path ends with a parameter's path and has that parameter's shape (the
    parameter itself, or an optimizer slot such as Adam's `mu/<path>`) gets the parameter's sharding;
    everything else (BN statistics, step, RNG key, scalar optimizer counters) is replicated.
    """
    specs = param_specs(params, rules, mesh)
    shapes = {path: tuple(leaf.shape) for path, leaf in flat_paths(params).items()}
    longest = max((len(p.split("/")) for p in specs), default=0)

    def sharding_of(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        keys = _dict_keys(path)
        for length in range(min(longest, len(keys)), 0, -1):
            candidate = "/".join(keys[-length:])
            if candidate in specs and shapes[candidate] == tuple(getattr(leaf, "shape", ())):
                return NamedSharding(mesh, specs[candidate])
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(sharding_of, abstract_state)
