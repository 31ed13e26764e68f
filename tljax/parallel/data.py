"""Feeding a mesh: which examples each process reads, global arrays from them, prefetch to devices.

One global example stream (shuffle → repeat → decode/augment, seeded by the global index) is cut into
global batches of B; process p of P reads only rows `[p·B/P, (p+1)·B/P)` of each, so the global batch
— and every per-example random draw — is the same whatever the number of processes, and no process
decodes another's images. `global_batch` then assembles the per-process rows into one `jax.Array`
sharded over `data` (`jax.make_array_from_process_local_data`). A finite stream (evaluation) is
padded to whole global batches with masked examples, so all processes run the same number of steps
and the padding is dropped from every metric by its zero mask.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from tljax.typing import PyTree


def shard_for_process(
    elements: grain.MapDataset,
    local_batch: int,
    process_index: int,
    process_count: int,
    *,
    pad: Callable[[], dict[str, Any]] | None = None,  # an element: arrays and numpy scalars
) -> grain.MapDataset:
    """The elements of `elements` (the global stream) that process `process_index` reads, in order.

    Local element j is global element `(j // b)·B + p·b + j % b` with `b = local_batch`,
    `B = b·process_count`. With `pad` (finite streams), the last global batch is completed with `pad()`
    elements and every element gets a `mask` (1 real, 0 padding); a real element whose decode failed
    (None) becomes padding too, so every process yields the same number of batches.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process {process_index} of {process_count}")
    b, big_b = int(local_batch), int(local_batch) * int(process_count)
    total = len(elements)
    infinite = total >= sys.maxsize // 2
    if infinite:
        local_length = sys.maxsize // big_b * b
    elif pad is not None:
        local_length = -(-total // big_b) * b
    else:
        local_length = total // big_b * b + max(0, min(b, total % big_b - process_index * b))

    def element(j: int) -> Any:
        g = (j // b) * big_b + process_index * b + j % b
        if pad is None:
            return elements[g]
        value = elements[g] if g < total else None
        if value is None:
            return {**pad(), "mask": np.float32(0)}
        return {**value, "mask": np.float32(1)}

    return grain.MapDataset.range(local_length).map(element)


def global_batch(local: PyTree, sharding: NamedSharding) -> PyTree:
    """Per-process rows `[b, ...]` → global `jax.Array`s `[b·P, ...]` sharded by `sharding`."""
    count = jax.process_count()

    def one(x: np.ndarray) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(
            sharding, x, (x.shape[0] * count, *x.shape[1:])
        )

    return jax.tree.map(one, local)


class DeviceFeeder:
    """Iterates global device batches from a grain iterator, `size` batches ahead of the step.

    `next(feeder)` returns `(batch, data_state)`: `data_state` is the grain iterator state right after
    that batch was read, i.e. what a checkpoint taken after training on it must store (the iterator
    itself is already `size` batches further). Transfers are asynchronous, so while the step on batch k
    runs, batches k+1 … k+size are decoded and copied to the devices.
    """

    def __init__(self, iterator: Any, sharding: NamedSharding, size: int = 2):
        self.iterator, self.sharding, self.size = iterator, sharding, max(0, int(size))
        self._queue: collections.deque = collections.deque()

    def _pull(self) -> None:
        local = next(self.iterator)
        self._queue.append((global_batch(local, self.sharding), self.iterator.get_state()))

    def __iter__(self) -> Iterator[tuple[PyTree, Any]]:
        return self

    def __next__(self) -> tuple[PyTree, Any]:
        while len(self._queue) <= self.size:
            self._pull()
        return self._queue.popleft()


def fetch(tree: PyTree) -> PyTree:
    """A tree of global arrays as host NumPy arrays on every process (gathered across processes)."""
    from jax.experimental import multihost_utils

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
