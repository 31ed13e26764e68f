"""A point's state, read from its workdir only (so every backend and the report agree, and a relaunch
after `kill -9` needs no sweep-level bookkeeping).

    done     results.json holds a finished run of the recorded config (`tljax.train.workdir.is_finished`:
             train_and_evaluate writes it last, atomically, stamped with the config record's digest)
    failed   the last attempt exited with a non-resumable code (recorded in sweep_exit.json)
    pending  anything else: never started, preempted, killed mid-run (resumes from its checkpoint)

`sweep.log` in the workdir is the point's combined stdout/stderr over all attempts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tljax import errors, fileio
from tljax.train import workdir as run_workdir
from tljax.typing import Config

DONE, FAILED, PENDING = "done", "failed", "pending"
LOG_NAME = "sweep.log"
EXIT_NAME = "sweep_exit.json"
# Exit codes after which the point resumes on the next launch instead of counting as failed.
RESUMABLE = (errors.EXIT_PREEMPTED, errors.EXIT_INTERRUPTED, -9, -15, 137, 143)


def results(workdir: Path) -> dict[str, Any] | None:
    """The finished run's results.json, or None if the run has not finished."""
    try:
        if not run_workdir.is_finished(workdir):
            return None
    except errors.WorkdirError:  # an unreadable config record: not a finished run
        return None
    return run_workdir.read_results(workdir)


def last_exit(workdir: Path) -> dict[str, Any] | None:
    """What the sweep recorded about the point's last attempt: exit code, seconds, log path."""
    try:
        return json.loads((Path(workdir) / EXIT_NAME).read_text())
    except (OSError, ValueError):
        return None


def status(workdir: Path) -> str:
    """DONE, FAILED or PENDING (see the module docstring)."""
    if results(workdir) is not None:
        return DONE
    record = last_exit(workdir)
    if record is not None and record.get("exit_code") not in (0, *RESUMABLE):
        return FAILED
    return PENDING


def record_exit(workdir: Path, exit_code: int, seconds: float) -> None:
    """Writes sweep_exit.json (atomically) after an attempt."""
    fileio.atomic_write_json(
        Path(workdir) / EXIT_NAME,
        {
            "exit_code": exit_code,
            "seconds": seconds,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "log": str(Path(workdir) / LOG_NAME),
        },
    )


def config_differences(config: Config, workdir: Path) -> list[str]:
    """The keys whose values differ between `config` and the config record of the run in `workdir`
    (`tljax.train.workdir`); empty for a new workdir."""
    recorded = run_workdir.read_config_record(workdir)
    if recorded is None:
        return []
    return sorted(run_workdir.config_differences(recorded, run_workdir.config_record(config)))
