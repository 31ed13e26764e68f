"""Multi-process start-up: `initialize()` joins the processes of one run, or does nothing on a laptop.

Every tljax main calls it (through `tljax.cli.run`) before any JAX computation. Three cases:
  * explicit: `--coordinator_address=host:port --num_processes=N --process_id=i` on every process;
  * detected: a SLURM step with several tasks (`srun`), or a multi-host TPU VM slice, where JAX's own
    cluster detection supplies the three values;
  * otherwise one plain process (nothing is initialised, so nothing can hang).
A partial SLURM environment (e.g. `SLURM_JOB_ID` inherited by a shell inside an allocation, without a
task layout) is a single process: JAX's detection would otherwise fail on it (jax issue 30073).

JAX aborts the whole process (no Python exception) when the coordinator cannot be reached, so a
non-coordinator process first waits for the coordinator's port itself and raises one clear
`UserError` naming the address when it does not open in time.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time

import jax
from absl import flags, logging

from tljax.errors import ConfigError, UserError

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for a multi-process run (with --num_processes and --process_id); "
    "unset: detected on SLURM / TPU VMs, else a single process.",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 … num_processes-1.")
_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "Seconds to wait for all processes to join before failing."
)
_HEARTBEAT = flags.DEFINE_integer(
    "distributed_heartbeat",
    100,
    "Seconds without a heartbeat after which the other processes of a run stop (one died).",
)


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands in the run: its index, the process count and how that was decided."""

    index: int
    count: int
    mode: str  # "single" | "explicit" | "slurm" | "tpu"

    @property
    def is_main(self) -> bool:
        return self.index == 0


def _slurm_multi_task(environ: dict[str, str]) -> bool:
    """A complete SLURM task layout with more than one task (what JAX's SLURM detection needs)."""
    needed = (
        "SLURM_JOB_ID",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "SLURM_STEP_NODELIST",
    )
    if not all(environ.get(key) for key in needed):
        return False
    try:
        return int(environ["SLURM_NTASKS"]) > 1
    except ValueError:
        return False


def _tpu_multi_host(environ: dict[str, str]) -> bool:
    return "," in environ.get("TPU_WORKER_HOSTNAMES", "")


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Returns once `address` (host:port) accepts TCP connections; `UserError` after `timeout_s`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--coordinator_address={address!r}: expected host:port, e.g. 10.0.0.1:1234"
        )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"the coordinator {address} could not be reached within {timeout_s:g} s ({error}): "
                    "start process 0 with the same --coordinator_address, check the host and port "
                    "(and firewalls), or raise --distributed_timeout"
                ) from None
            time.sleep(0.2)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
    heartbeat_s: int = 100,
    environ: dict[str, str] | None = None,
) -> ProcessInfo:
    """Joins the run's processes (explicit arguments, else SLURM/TPU detection) or stays single.

    Idempotent: a second call returns the current layout. Raises `ConfigError` for an incomplete or
    inconsistent explicit layout and `UserError` when the coordinator cannot be reached in time.
    """
    environ = dict(os.environ if environ is None else environ)
    if jax.distributed.is_initialized():
        return ProcessInfo(jax.process_index(), jax.process_count(), "explicit")
    explicit = (coordinator_address, num_processes, process_id)
    if any(value is not None for value in explicit):
        if coordinator_address is None or num_processes is None or process_id is None:
            raise ConfigError(
                "a multi-process run needs all of --coordinator_address, --num_processes and "
                f"--process_id (got {coordinator_address!r}, {num_processes!r}, {process_id!r})"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(
                f"--process_id={process_id} with --num_processes={num_processes}: the id must be in "
                f"0 … {num_processes - 1}"
            )
        if num_processes == 1:
            return ProcessInfo(0, 1, "single")
        if process_id != 0:
            wait_for_coordinator(coordinator_address, timeout_s)
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            cluster_detection_method="deactivate",  # the flags say it all; ignore stray SLURM vars
            initialization_timeout=timeout_s,
            heartbeat_timeout_seconds=heartbeat_s,
        )
        mode = "explicit"
    elif _slurm_multi_task(environ):
        jax.distributed.initialize(
            initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_s
        )
        mode = "slurm"
    elif _tpu_multi_host(environ):
        jax.distributed.initialize(
            initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_s
        )
        mode = "tpu"
    else:
        return ProcessInfo(0, 1, "single")
    info = ProcessInfo(jax.process_index(), jax.process_count(), mode)
    logging.info(
        "process %d of %d (%s): %d local / %d global devices",
        info.index,
        info.count,
        mode,
        jax.local_device_count(),
        jax.device_count(),
    )
    return info


def initialize_from_flags() -> ProcessInfo:
    """`initialize` with the values of the `--coordinator_address` … `--distributed_*` flags."""
    return initialize(
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        timeout_s=_TIMEOUT.value,
        heartbeat_s=_HEARTBEAT.value,
    )


def is_main_process() -> bool:
    """True on the process that writes logs, TensorBoard, plots and results (process 0)."""
    return jax.process_index() == 0
