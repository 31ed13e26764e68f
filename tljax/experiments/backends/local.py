"""The local backend: every point in its own `python -m tljax.experiments.point` process, serially or
K at a time, each worker pinned to its own device subset.

A point process dies with the launcher (Linux `PR_SET_PDEATHSIG`), so `kill -9` of the sweep leaves no
orphan training into a workdir; the next launch skips finished points and resumes the killed one from
its newest checkpoint. SIGTERM/SIGINT to the launcher are passed to the running points, which save a
checkpoint and exit 75; the launcher then exits 75 too (relaunch to resume).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tljax import errors
from tljax.experiments import runner, spec, state
from tljax.train import workdir as run_workdir

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it when the launcher's thread dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def device_groups(devices: Sequence[str], workers: int) -> list[list[str]]:
    """Splits `devices` into `workers` contiguous, disjoint, equal groups (`0,1,2,3` / 2 → `0,1` `2,3`)."""
    if not devices:
        return [[] for _ in range(workers)]
    if len(devices) % workers:
        raise errors.UserError(
            f"--devices has {len(devices)} devices for --workers={workers}: give a multiple of "
            "the worker count so that every worker gets the same number"
        )
    size = len(devices) // workers
    return [list(devices[i * size : (i + 1) * size]) for i in range(workers)]


def worker_env(base: Mapping[str, str], devices: Sequence[str], device_env: str) -> dict[str, str]:
    """The environment of a point process on a worker that owns `devices` (unchanged when none)."""
    env = dict(base)
    if devices:
        env[device_env] = ",".join(devices)
    return env


class _Running:
    def __init__(self, point: spec.Point, process: subprocess.Popen, log, slot: int) -> None:
        self.point, self.process, self.log, self.slot = point, process, log, slot
        self.started = time.monotonic()


def run(
    plan: runner.Plan,
    *,
    workers: int = 1,
    devices: Sequence[str] = (),
    device_env: str = "CUDA_VISIBLE_DEVICES",
    stream=None,
    poll_seconds: float = 0.2,
) -> runner.Summary:
    """Runs the plan's unfinished points, phase by phase (a phase starts once all points of the phases
    it depends on are done; one whose dependency failed stays pending), `workers` at a time. A second
    launcher of the same sweep root is refused (`WorkdirError` naming the first one's PID and host)."""
    if workers < 1:
        raise errors.UserError(f"--workers={workers}: must be at least 1")
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    # One launcher per sweep root: a second one would start the same points and see them refused by
    # their workdir locks (and count them as failed).
    lock = run_workdir.WorkdirLock(plan.sweep_dir)
    try:
        lock.acquire()
    except errors.WorkdirError as error:
        raise errors.WorkdirError(
            f"sweep {plan.sweep.name!r} is already being run in {plan.sweep_dir}: {error}"
        ) from None
    try:
        return _run(plan, workers, devices, device_env, stream or sys.stdout, poll_seconds)
    finally:
        lock.release()


def _run(
    plan: runner.Plan,
    workers: int,
    devices: Sequence[str],
    device_env: str,
    stream,
    poll_seconds: float,
) -> runner.Summary:
    groups = device_groups(list(devices), workers)
    todo = runner.unfinished(plan.selected, plan)
    progress = runner.Progress(len(todo), plan.sweep.metric, workers, stream)
    print(
        f"sweep {plan.sweep.name}: {len(plan.selected)} point(s) selected, "
        f"{len(plan.selected) - len(todo)} already done, {len(todo)} to run on {workers} worker(s)",
        file=stream,
        flush=True,
    )
    blocked: set[str] = set()
    running: list[_Running] = []
    stop: list[int] = []

    def request_stop(signum, frame) -> None:
        del frame
        stop.append(signum)
        for job in running:
            job.process.send_signal(signal.SIGTERM)  # the point saves a checkpoint and exits 75

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        queue = list(todo)
        while queue or running:
            free = sorted(set(range(workers)) - {job.slot for job in running})
            for point in list(queue):
                if stop or not free:
                    break
                readiness = _ready(plan, point, blocked)
                if readiness == "blocked":
                    blocked.add(point.id)
                    queue.remove(point)
                    continue
                if readiness == "wait":
                    continue
                queue.remove(point)
                running.append(_start(plan, point, free.pop(0), groups, device_env))
            if stop and not running:
                break
            time.sleep(poll_seconds)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                job.log.close()
                code = job.process.returncode
                seconds = time.monotonic() - job.started
                workdir = plan.workdir(job.point)
                state.record_exit(workdir, code, seconds)
                outcome = state.status(workdir)
                extra = (
                    f"  exit {code}, log {workdir / state.LOG_NAME}"
                    if outcome != state.DONE
                    else ""
                )
                left = len(queue) + len(running)
                progress.line(job.point.id, outcome, seconds, state.results(workdir), left, extra)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary = runner.summarize(plan)
    if blocked:
        print(
            f"{len(blocked)} point(s) not started: a phase they depend on has failed points",
            file=stream,
        )
    print(summary.text(), file=stream, flush=True)
    if stop:
        raise SystemExit(errors.EXIT_PREEMPTED)
    return summary


def _ready(plan: runner.Plan, point: spec.Point, blocked: set[str]) -> str:
    """ "go" when every dependency is done, "blocked" when one failed (or is blocked), else "wait"."""
    outcome = "go"
    for dependency in plan.dependencies(point):
        status = state.status(plan.workdir(dependency))
        if status == state.FAILED or dependency.id in blocked:
            return "blocked"
        if status != state.DONE:
            outcome = "wait"
    return outcome


def _start(
    plan: runner.Plan, point: spec.Point, slot: int, groups: list[list[str]], device_env: str
) -> _Running:
    workdir = plan.workdir(point)
    workdir.mkdir(parents=True, exist_ok=True)
    env = worker_env(os.environ, groups[slot], device_env)
    log = open(workdir / state.LOG_NAME, "a")  # noqa: SIM115 - closed when the process ends
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {point.id} (worker {slot})\n")
    log.flush()
    process = subprocess.Popen(
        runner.point_command(plan, point),
        cwd=Path.cwd(),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    return _Running(point, process, log, slot)
