r"""The SLURM backend: one array job per phase, one point per array task.

    python -m tljax.sweep --sweep=... --root=/shared/sweeps --backend=slurm --workers=8 \
        --slurm_options=partition=gpu,gres=gpu:1,time=04:00:00 [--dry_run] [--wait]

Each phase with unfinished points becomes `ROOT/<sweep>/slurm/<phase>.sbatch` with
`--array=0-N%K` over those points (K = `--workers`), `--requeue`, and `--dependency=afterok:<job>` on the
array jobs of the phases it depends on. A task runs `python -m tljax.experiments.point` for its point,
appending to the point's `sweep.log` and writing `sweep_exit.json`, as the local backend does; on
SIGTERM (`--signal=B:TERM@120`: before the time limit, or a preemption) the point saves and exits 75 and
the task requeues itself, resuming from the checkpoint. ROOT and the repository must be on a file
system every node sees. Set `DependencyParameters=kill_invalid_depend` in slurm.conf, or the dependent
phase of a failed one pends forever instead of being cancelled.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tljax import errors
from tljax.experiments import runner, spec


def parse_options(options: Sequence[str]) -> dict[str, str]:
    """`["partition=gpu", "gres=gpu:1", "exclusive"]` → `{"partition": "gpu", ...}` (sbatch long options)."""
    parsed = {}
    for option in options:
        key, _, value = option.partition("=")
        key = key.strip().lstrip("-")
        if not key or any(c.isspace() for c in option):
            raise errors.UserError(
                f"--slurm_options item {option!r}: expected an sbatch long option like partition=gpu"
            )
        parsed[key] = value
    return parsed


def script(
    plan: runner.Plan,
    phase: spec.Phase,
    points: Sequence[spec.Point],
    workers: int,
    options: Mapping[str, str],
) -> str:
    """The sbatch script of one phase's array job over `points`."""
    sweep_dir = plan.sweep_dir
    cap = f"%{workers}" if workers > 0 else ""
    header = [
        f"--job-name={plan.sweep.name}.{phase.name}",
        f"--array=0-{len(points) - 1}{cap}",
        "--requeue",
        "--open-mode=append",
        f"--output={sweep_dir / 'slurm' / phase.name}-%A_%a.out",
        "--signal=B:TERM@120",
    ] + [f"--{k}={v}" if v else f"--{k}" for k, v in options.items()]
    python = shlex.quote(sys.executable)
    names = " ".join(shlex.quote(p.name) for p in points)
    point_args = " ".join(shlex.quote(a) for a in runner.point_args(plan))
    phase_dir = shlex.quote(str(sweep_dir / phase.name))
    lines = [
        "#!/bin/bash",
        f"# tljax sweep {plan.sweep.name}, phase {phase.name}: {len(points)} point(s), one per task.",
        *(f"#SBATCH {h}" for h in header),
        "set -u",
        f"POINTS=({names})",
        'NAME="${POINTS[$SLURM_ARRAY_TASK_ID]}"',
        f'WORKDIR={phase_dir}/"$NAME"',
        'mkdir -p "$WORKDIR"',
        f"cd {shlex.quote(str(Path.cwd()))}",
        'TASK="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        'echo "=== $(date "+%F %T") start '
        + phase.name
        + '/$NAME (slurm task $TASK on $(hostname))"'
        ' >> "$WORKDIR/sweep.log"',
        "START=$(date +%s)",
        f'{python} {point_args} --point={shlex.quote(phase.name)}/"$NAME" >> "$WORKDIR/sweep.log" 2>&1 &',
        "CHILD=$!",
        "# Pass SLURM's warning signal to the point (it saves and exits 75), then wait for its code.",
        "trap 'kill -TERM \"$CHILD\" 2>/dev/null' TERM",
        'wait "$CHILD"; RC=$?',
        'while kill -0 "$CHILD" 2>/dev/null; do wait "$CHILD"; RC=$?; done',
        'printf \'{"exit_code": %d, "seconds": %d, "log": "%s", "slurm_task": "%s"}\\n\' '
        '"$RC" "$(( $(date +%s) - START ))" "$WORKDIR/sweep.log" "$TASK" > "$WORKDIR/.sweep_exit.tmp"',
        'mv -f "$WORKDIR/.sweep_exit.tmp" "$WORKDIR/sweep_exit.json"',
        f'if [ "$RC" -eq {errors.EXIT_PREEMPTED} ]; then scontrol requeue "$TASK"; fi',
        'exit "$RC"',
        "",
    ]
    return "\n".join(lines)


def launch(
    plan: runner.Plan,
    *,
    workers: int = 0,
    options: Sequence[str] = (),
    dry_run: bool = False,
    wait: bool = False,
    stream=None,
    poll_seconds: float = 2.0,
) -> int:
    """Writes and submits one array job per phase with unfinished points, chained by `afterok`
    (`dry_run`: prints the scripts and the sbatch commands instead). With `wait`, blocks until the jobs
    have left the queue and returns the summary's exit code."""
    stream = stream or sys.stdout
    parsed = parse_options(options)
    slurm_dir = plan.sweep_dir / "slurm"
    job_ids: dict[str, str] = {}
    for phase, points in plan.phases():
        todo = runner.unfinished(points, plan)
        if not todo:
            why = "all selected points are done" if points else "no point selected by --only"
            print(f"phase {phase.name}: nothing to submit ({why})", file=stream)
            continue
        text = script(plan, phase, todo, workers, parsed)
        path = slurm_dir / f"{phase.name}.sbatch"
        after = [job_ids[d] for d in phase.depends_on if d in job_ids]
        command = ["sbatch", "--parsable"]
        if after:
            command.append("--dependency=afterok:" + ":".join(after))
        command.append(str(path))
        if dry_run:
            job_ids[phase.name] = f"${{JOB_{phase.name}}}"
            shown = " ".join(
                shlex.quote(c) if not c.startswith("--dependency") else c for c in command
            )
            print(f"# {path}\n{text}", file=stream)
            print(f"JOB_{phase.name}=$({shown})\n", file=stream)
            continue
        slurm_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise errors.UserError(
                "sbatch not found: run on a SLURM login node (or start a local cluster with "
                "launch/slurm_local.sh start)"
            ) from None
        if done.returncode != 0:
            raise errors.UserError(f"sbatch refused {path}: {done.stderr.strip()}")
        job_ids[phase.name] = done.stdout.strip().split(";")[0]
        print(
            f"phase {phase.name}: submitted array job {job_ids[phase.name]} "
            f"({len(todo)} task(s)" + (f", after {':'.join(after)})" if after else ")"),
            file=stream,
            flush=True,
        )
    if dry_run or not wait or not job_ids:
        if not dry_run:
            print(
                f"report: python -m tljax.sweep --sweep={plan.spec_text} --root={plan.root} report",
                file=stream,
            )
        return errors.EXIT_OK
    _wait_for(list(job_ids.values()), poll_seconds)
    summary = runner.summarize(plan)
    print(summary.text(), file=stream, flush=True)
    return summary.exit_code


def _wait_for(job_ids: Sequence[str], poll_seconds: float) -> None:
    # squeue lists the job (any array task of it) while it is pending, running or requeued.
    env = dict(os.environ)
    while True:
        listed = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        if listed.returncode != 0 and "Invalid job id" in listed.stderr:
            return  # purged from the controller: long finished
        time.sleep(poll_seconds)
