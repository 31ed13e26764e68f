"""`Placement`: what the trainer needs to know about the mesh and the processes, in one object.

Built once per run from `config.parallel`; the trainer asks it for the state's shardings, the batch
sharding, this process's share of a batch, a device feeder, and the per-process data-iterator states that
a checkpoint stores (each process has its own position in its own shard of the data).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from tljax.errors import ConfigError
from tljax.parallel import mesh as mesh_lib
from tljax.parallel.data import DeviceFeeder
from tljax.typing import Config, PyTree


def _allgather_json(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order (a collective: all processes must call it)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.int32(len(data)))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: len(data)] = data
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(gathered, lengths, strict=True)]


@dataclasses.dataclass
class Placement:
    """The mesh of a run plus its sharding rules and prefetch depth (see `tljax.parallel.mesh`)."""

    mesh: Mesh
    rules: tuple[tuple[str, str], ...] = ()
    prefetch: int = 2

    @classmethod
    def from_config(cls, config: Config) -> Placement:
        """From `config.parallel` (`mesh`, `rules`, `prefetch`); defaults when the config has none."""
        section = config.get("parallel") if hasattr(config, "get") else None
        axes = tuple(section.mesh) if section is not None else mesh_lib.DEFAULT_MESH
        rules = tuple(tuple(r) for r in (section.rules or ())) if section is not None else ()
        prefetch = int(section.prefetch) if section is not None else 2
        mesh = mesh_lib.make_mesh(axes)
        mesh_lib.parse_sharding_rules(rules, mesh)  # a bad rule fails here, before any work
        return cls(mesh, rules, prefetch)

    @property
    def batch(self) -> NamedSharding:
        return mesh_lib.batch_sharding(self.mesh)

    @property
    def replicated(self) -> NamedSharding:
        return mesh_lib.replicated(self.mesh)

    @property
    def process_index(self) -> int:
        return jax.process_index()

    @property
    def process_count(self) -> int:
        return jax.process_count()

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    def local_batch(self, batch_size: int, what: str = "train.batch_size") -> int:
        """This process's rows of a global batch of `batch_size` (ConfigError if it does not split)."""
        mesh_lib.check_batch_size(batch_size, self.mesh, what)
        return batch_size // self.process_count

    def eval_batch(self, requested: int) -> int:
        """`requested` rounded up to a multiple of the devices and processes (the padding is masked)."""
        unit = math.lcm(mesh_lib.data_size(self.mesh), self.process_count)
        return -(-max(1, requested) // unit) * unit

    def create_state(
        self, create: Callable[..., PyTree], params: PyTree, *args: Any
    ) -> tuple[PyTree, PyTree]:
        """`(state, shardings)`: `create(*args)` run as one jitted program whose outputs land directly
        in their shardings (`params` is a tree with the parameters' shapes, for the sharding rules)."""
        abstract = jax.eval_shape(create, *args)
        shardings = mesh_lib.state_shardings(abstract, params, self.rules, self.mesh)
        return jax.jit(create, out_shardings=shardings)(*args), shardings

    def put(self, tree: PyTree, shardings: PyTree | None = None) -> PyTree:
        """Host or single-device arrays → global arrays (replicated unless `shardings` say otherwise)."""
        host = jax.device_get(tree)
        return jax.device_put(host, self.replicated if shardings is None else shardings)

    def feeder(self, iterator: Any) -> DeviceFeeder:
        return DeviceFeeder(iterator, self.batch, self.prefetch)

    def saved_iterator_state(self, local_state: Any) -> Any:
        """What a checkpoint stores for the data: the state itself on one process; on several, every
        process's state (gathered: a collective, all processes call it at the same step)."""
        if self.process_count == 1:
            return local_state
        from tljax.train.checkpoints import encode_iterator_state

        states = _allgather_json(encode_iterator_state(local_state))
        return {"process_count": self.process_count, "processes": states}

    def own_iterator_state(self, saved: Any) -> Any:
        """This process's state from `saved_iterator_state`'s output (ConfigError on a process-count change)."""
        from tljax.train.checkpoints import decode_iterator_state

        per_process = isinstance(saved, dict) and set(saved) == {"process_count", "processes"}
        saved_count = int(saved["process_count"]) if per_process else 1
        if saved_count != self.process_count:
            raise ConfigError(
                f"the checkpoint was written by {saved_count} process(es) but this run has "
                f"{self.process_count}: each process's data position is stored separately, so resume "
                f"with {saved_count} process(es) (any number of devices per process works)"
            )
        return (
            decode_iterator_state(saved["processes"][self.process_index]) if per_process else saved
        )
