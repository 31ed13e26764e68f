"""A point's state, read from its workdir only (so every backend and the report agree, and a relaunch
after `kill -9` needs no sweep-level bookkeeping).

    done     results.json holds a finished run (train_and_evaluate writes it last, atomically)
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

DONE, FAILED, PENDING = "done", "failed", "pending"
LOG_NAME = "sweep.log"
EXIT_NAME = "sweep_exit.json"
# Exit codes after which the point resumes on the next launch instead of counting as failed.
RESUMABLE = (errors.EXIT_PREEMPTED, errors.EXIT_INTERRUPTED, -9, -15, 137, 143)


def results(workdir: Path) -> dict[str, Any] | None:
    """The finished run's results.json, or None if the run has not finished."""
    try:
        data = json.loads((Path(workdir) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("preempted"):
        return None
    return data


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


def config_differences(config_json: str, workdir: Path) -> list[str] | None:
    """The keys whose values differ between `config_json` and the config.json the run in `workdir`
    was started with; None if the workdir holds no config yet."""
    try:
        recorded = json.loads((Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    wanted = _flatten(json.loads(config_json))
    have = _flatten(recorded)
    return sorted(k for k in wanted.keys() | have.keys() if wanted.get(k) != have.get(k))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}
