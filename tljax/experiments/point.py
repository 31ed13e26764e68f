r"""Run one point of a sweep in this process: what every backend's worker process executes.

    python -m tljax.experiments.point --sweep=configs/sweeps/x.py[:arg] --root=DIR --point=phase/name \
        [--compile_cache=DIR]

The point's config is rebuilt from the sweep file (the same expansion the launcher did), checked against
its workdir, and handed to the ordinary `train_and_evaluate`; a finished point exits 0 at once, an
unfinished one resumes from its newest checkpoint. Exit codes are `tljax.errors`': 0 finished, 1 the run
failed (NaN), 2 bad input, 75 preempted (relaunch to resume). With `--compile_cache` the point's
programs go through XLA's persistent compilation cache: the points of a sweep share a few distinct
programs (one per model × trainable set × batch shape), so all but the first of each load it instead of
compiling it; a cached program is the same executable, so the results are identical.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax
from absl import flags, logging

from tljax import cli, errors
from tljax.experiments import spec, state

# Cache every program that takes longer than this to compile (JAX's default, 1 s, leaves out the eval
# step, the initialiser and the metric reductions of a small model: most of a CPU point's compile time).
CACHE_MIN_COMPILE_SECONDS = 0.1


def enable_compile_cache(directory: str | Path) -> None:
    """Points this process's compilations at XLA's persistent cache in `directory` (created if
    missing; shared by concurrent processes, which JAX supports): programs compiled for at least
    `CACHE_MIN_COMPILE_SECONDS` are written there and loaded from there by later processes."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def check_startable(
    sweep: spec.Sweep, point: spec.Point, points: Sequence[spec.Point], root: str | Path
) -> None:
    """Raises a `UserError` if `point` cannot start now: a `{phase/labels}` source that has not finished,
    or a workdir that holds a run of a different config (listing the differing keys)."""
    for source in spec.references(point, points):
        if state.results(source.workdir(root, sweep.name)) is None:
            raise errors.UserError(
                f"point {point.id} loads the run {source.id}, which has not finished "
                f"({source.workdir(root, sweep.name)} has no results.json): run phase "
                f"{source.phase!r} first (the sweep does this unless --only leaves it out)"
            )
    check_config(sweep, point, points, root)


def check_config(
    sweep: spec.Sweep, point: spec.Point, points: Sequence[spec.Point], root: str | Path
) -> None:
    """Raises `WorkdirError` if `point`'s workdir holds a run of a different config (even a finished
    one), listing the differing keys."""
    config = spec.point_config(sweep, point, points, root)
    workdir = point.workdir(root, sweep.name)
    differences = state.config_differences(config, workdir)
    if differences:
        shown = ", ".join(differences[:6]) + (" ..." if len(differences) > 6 else "")
        raise errors.WorkdirError(
            f"point {point.id}: its workdir {workdir} holds a run with a different config "
            f"(differing keys: {shown}). Use a new --root, or delete that workdir to rerun the point."
        )


def run_point(sweep: spec.Sweep, point_id: str, root: str | Path) -> int:
    """Trains (or resumes, or skips as finished) the point `phase/name`; returns the exit code."""
    from tljax.train import NonFiniteLossError, train_and_evaluate

    points = spec.expand(sweep)
    by_id = {p.id: p for p in points}
    if point_id not in by_id:
        raise errors.UserError(
            f"sweep {sweep.name!r} has no point {point_id!r} (e.g. {points[0].id!r})"
        )
    point = by_id[point_id]
    workdir = point.workdir(root, sweep.name)
    check_config(sweep, point, points, root)
    if state.results(workdir) is not None:
        logging.info("point %s already finished in %s", point.id, workdir)
        return errors.EXIT_OK
    check_startable(sweep, point, points, root)
    config = spec.point_config(sweep, point, points, root)
    logging.info("point %s in %s; config:\n%s", point.id, workdir, config)
    try:
        results = train_and_evaluate(config, workdir)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        return errors.EXIT_FAILED
    if results.get("preempted"):
        # SIGINT and SIGTERM both leave a resumable checkpoint; the codes tell them apart.
        if results.get("signal") == "SIGINT":
            return errors.EXIT_INTERRUPTED
        return errors.EXIT_PREEMPTED
    summary = {k: v for k, v in results.items() if k != "confusion_matrix"}
    print(json.dumps(summary, indent=2))
    return errors.EXIT_OK


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise errors.UserError(f"unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    for name in ("sweep", "root", "point"):
        if not values[name].value:
            raise errors.UserError(f"--{name} is required")
    logging.set_verbosity(logging.INFO)
    if values.compile_cache:
        enable_compile_cache(values.compile_cache)
    sweep, _ = spec.load(values.sweep)
    return run_point(sweep, values.point, values.root)


if __name__ == "__main__":
    # Defined here, not at import: the launcher imports this module and has flags of the same names.
    flags.DEFINE_string("sweep", None, "Sweep file, `path.py[:arg]`.")
    flags.DEFINE_string("root", None, "Root directory of the sweep's workdirs.")
    flags.DEFINE_string("point", None, "The point to run, `phase/name`.")
    flags.DEFINE_string("compile_cache", "", "XLA's persistent compilation cache directory.")
    cli.run(main)
