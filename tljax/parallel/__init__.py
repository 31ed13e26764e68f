"""Scale-out: the device mesh, shardings, multi-process start-up and feeding a mesh with data.

    info = parallel.initialize()                      # every main, before any JAX computation
    mesh = parallel.make_mesh(config.parallel.mesh)   # default: all devices on "data"
    parallel.check_batch_size(config.train.batch_size, mesh)
    shardings = parallel.state_shardings(abstract_state, params, config.parallel.rules, mesh)
    feeder = parallel.DeviceFeeder(iterator, parallel.batch_sharding(mesh))

The batch is split over `data`; parameters, BN statistics and optimizer state are replicated unless a
`(regex, axis)` rule splits a parameter (and its optimizer slots) over a second axis. BatchNorm
statistics are computed over the whole global batch (one jitted program over global arrays).
"""

from tljax.parallel.data import DeviceFeeder, fetch, global_batch, shard_for_process
from tljax.parallel.distributed import (
    ProcessInfo,
    initialize,
    initialize_from_flags,
    is_main_process,
    wait_for_coordinator,
)
from tljax.parallel.mesh import (
    DATA_AXIS,
    DEFAULT_MESH,
    batch_sharding,
    check_batch_size,
    data_size,
    make_mesh,
    param_specs,
    replicated,
    resolve_axes,
    state_shardings,
)
from tljax.parallel.placement import Placement

__all__ = [
    "DATA_AXIS",
    "DEFAULT_MESH",
    "DeviceFeeder",
    "Placement",
    "ProcessInfo",
    "batch_sharding",
    "check_batch_size",
    "data_size",
    "fetch",
    "global_batch",
    "initialize",
    "initialize_from_flags",
    "is_main_process",
    "make_mesh",
    "param_specs",
    "replicated",
    "resolve_axes",
    "shard_for_process",
    "state_shardings",
    "wait_for_coordinator",
]
