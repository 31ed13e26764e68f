"""What every backend shares: the plan (the points to run, checked before any starts), the command
that runs one point in its own process, the summary and the progress lines.

`plan()` raises one `UserError` for bad input before anything runs: a malformed sweep, an unknown
override key (naming the point and key), a dependency on a missing phase, duplicate points, a
dependency that is neither finished nor selected by `--only` (e.g. a `run:` source), and a workdir that
holds a different config.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tljax import errors
from tljax.experiments import spec, state
from tljax.experiments.point import check_config, check_startable


@dataclasses.dataclass(frozen=True)
class Plan:
    """A checked sweep launch: `points` (all, phase order) and `selected` (what this launch runs)."""

    sweep: spec.Sweep
    spec_text: str  # the sweep file as point processes get it (absolute path[:arg])
    root: Path
    points: tuple[spec.Point, ...]
    selected: tuple[spec.Point, ...]
    compile_cache: str = ""  # XLA's persistent compilation cache of the point processes ("" = off)

    def workdir(self, point: spec.Point) -> Path:
        return point.workdir(self.root, self.sweep.name)

    @property
    def sweep_dir(self) -> Path:
        """`ROOT/<sweep>`: the report and the backends' scripts go here."""
        return self.root / self.sweep.name

    def dependencies(self, point: spec.Point) -> list[spec.Point]:
        """Every point of the phases `point`'s phase depends on (a phase waits for all of them)."""
        phase = next(p for p in self.sweep.phases if p.name == point.phase)
        return [p for p in self.points if p.phase in phase.depends_on]

    def phases(self) -> list[tuple[spec.Phase, list[spec.Point]]]:
        """The sweep's phases in order, each with its selected points (possibly none)."""
        return [(ph, [p for p in self.selected if p.phase == ph.name]) for ph in self.sweep.phases]


def plan(
    spec_text: str,
    root: str | Path,
    only: str | None = None,
    *,
    for_launch: bool = True,
    compile_cache: str = "",
) -> Plan:
    """Loads, expands and checks a sweep (see the module docstring); nothing is written.

    `for_launch=False` (the report) checks only the sweep file itself: the workdirs may hold anything.
    `compile_cache` is the directory of XLA's persistent compilation cache that every point process
    uses ("" = none; see `tljax.experiments.point.enable_compile_cache`).
    """
    sweep, spec_text = spec.load(spec_text)
    root = Path(root).absolute()
    points = spec.expand(sweep)
    spec.validate(sweep, points, root)
    selected = spec.select(points, only)
    result = Plan(sweep, spec_text, root, tuple(points), tuple(selected), compile_cache)
    if not for_launch:
        return result
    chosen = {p.id for p in selected}
    for point in selected:
        # A finished point of another config is refused too.
        check_config(sweep, point, points, root)
        if state.status(result.workdir(point)) == state.DONE:
            continue
        referenced = {p.id for p in spec.references(point, points)}
        for dependency in result.dependencies(point):
            if dependency.id in chosen or state.status(result.workdir(dependency)) == state.DONE:
                continue
            role = "loads the run" if dependency.id in referenced else "depends on"
            raise errors.UserError(
                f"point {point.id} {role} {dependency.id}, which has not finished and is not "
                f"selected by --only={only!r}: include phase {dependency.phase!r} or run it first"
            )
        if not any(d.id in chosen for d in result.dependencies(point)):
            check_startable(sweep, point, points, root)  # sources finished: the full check now
    return result


def point_args(plan: Plan) -> list[str]:
    """The arguments of `python` that run a point of `plan`, less `--point` (every backend's)."""
    args = ["-m", "tljax.experiments.point", f"--sweep={plan.spec_text}", f"--root={plan.root}"]
    return args + [f"--compile_cache={plan.compile_cache}"] if plan.compile_cache else args


def point_command(plan: Plan, point: spec.Point, python: str | None = None) -> list[str]:
    """The command that runs `point` in its own process (any backend, any host with the repo)."""
    return [python or sys.executable, *point_args(plan), f"--point={point.id}"]


@dataclasses.dataclass
class Summary:
    """Counts of done / failed / pending points of a launch, and the failed points' log paths."""

    done: list[str]
    failed: list[tuple[str, str]]  # (point id, log path)
    pending: list[str]

    def line(self) -> str:
        return f"{len(self.done)} done, {len(self.failed)} failed, {len(self.pending)} pending"

    def text(self) -> str:
        lines = [f"sweep summary: {self.line()}"]
        lines += [f"  failed: {point}  (log: {log})" for point, log in self.failed]
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return errors.EXIT_FAILED
        return errors.EXIT_OK if not self.pending else errors.EXIT_PREEMPTED


def summarize(plan: Plan) -> Summary:
    """The state of every selected point, read from the workdirs."""
    done, failed, pending = [], [], []
    for point in plan.selected:
        workdir = plan.workdir(point)
        status = state.status(workdir)
        if status == state.DONE:
            done.append(point.id)
        elif status == state.FAILED:
            failed.append((point.id, str(workdir / state.LOG_NAME)))
        else:
            pending.append(point.id)
    return Summary(done, failed, pending)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """One line per finished point: its metric, the counts, and the sweep's ETA (mean point time of
    this launch × points left / workers)."""

    def __init__(self, total: int, metric: str, workers: int = 1, stream=None) -> None:
        self.total, self.metric, self.workers = total, metric, max(1, workers)
        self.durations: list[float] = []
        self.finished = 0
        self.stream = stream or sys.stdout

    def line(
        self,
        point_id: str,
        outcome: str,
        seconds: float,
        results: Mapping[str, object] | None,
        remaining: int,
        extra: str = "",
    ) -> str:
        self.finished += 1
        if outcome == state.DONE:
            self.durations.append(seconds)
        value = (results or {}).get(self.metric)
        metric = (
            f"{self.metric}={value:.4f}"
            if isinstance(value, (int, float))
            else f"{self.metric}=n/a"
        )
        if self.durations and remaining:
            per_point = sum(self.durations) / len(self.durations)
            eta = format_duration(per_point * remaining / min(self.workers, remaining))
        else:
            eta = "0s" if not remaining else "?"
        text = (
            f"[{self.finished}/{self.total}] {outcome:<7} {point_id}  {metric}  "
            f"({format_duration(seconds)})  ETA {eta}{extra}"
        )
        print(text, file=self.stream, flush=True)
        return text


def seconds_since(start: float) -> float:
    return time.monotonic() - start


def print_plan(plan: Plan, stream=None) -> None:
    """The dry-run listing: every selected point with its state and workdir."""
    stream = stream or sys.stdout
    for phase, points in plan.phases():
        deps = f" (after {', '.join(phase.depends_on)})" if phase.depends_on else ""
        print(f"phase {phase.name}{deps}: {len(points)} point(s)", file=stream)
        for point in points:
            print(f"  {state.status(plan.workdir(point)):<7} {point.id}", file=stream)


def unfinished(points: Sequence[spec.Point], plan: Plan) -> list[spec.Point]:
    """The points among `points` that are not done."""
    return [p for p in points if state.status(plan.workdir(p)) != state.DONE]
