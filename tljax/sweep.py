r"""Launch, resume and report a sweep of ordinary training runs.

    python -m tljax.sweep --sweep=configs/sweeps/<name>.py[:arg] --root=DIR \
        [--backend=local|slurm|tpu_vm] [--dry_run] [--only=REGEX] [--workers=K] [--devices=0,1,2,3] \
        [--compile_cache=DIR]
    python -m tljax.sweep --sweep=... --root=DIR report      # results.csv, results.md, figures/

Every point runs `train_and_evaluate` in its own process and its own workdir
`DIR/<sweep>/<phase>/<labels>/`. The same command again skips finished points and resumes unfinished
ones; a point that fails is reported with its log and does not stop the others. Exit code: 0 all
selected points done, 1 some failed, 75 some still pending (interrupted or blocked), 2 bad input (before
any point starts). The point processes share XLA's persistent compilation cache (`--compile_cache`,
by default `$JAX_COMPILATION_CACHE_DIR` if set, else `DIR/.jax_cache`; `--compile_cache=` turns it
off), so a program that many points run is compiled once per sweep. See `tljax.experiments` for the
sweep file format and the backends.
"""

from __future__ import annotations

import os
from pathlib import Path

from absl import flags

from tljax import cli, errors
from tljax.experiments import report, runner
from tljax.experiments.backends import local, slurm, tpu_vm

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, `path.py[:arg]` (defines get_sweep).")
_ROOT = flags.DEFINE_string(
    "root", None, "Root directory: points go to ROOT/<sweep>/<phase>/<name>."
)
_BACKEND = flags.DEFINE_enum("backend", "local", ["local", "slurm", "tpu_vm"], "Where points run.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run",
    False,
    "Print the plan (local), the sbatch scripts or the gcloud commands; run nothing.",
)
_ONLY = flags.DEFINE_string("only", None, "Regex on `phase/name`: run only the matching points.")
_WORKERS = flags.DEFINE_integer(
    "workers", 1, "Points run at once (local: processes; slurm: the array's %K cap)."
)
_DEVICES = flags.DEFINE_list(
    "devices", [], "local: device ids split evenly among the workers (e.g. 0,1,2,3 for 2 workers)."
)
_DEVICE_ENV = flags.DEFINE_string(
    "device_env",
    "CUDA_VISIBLE_DEVICES",
    "local: the variable that pins a worker to its devices (TPU_VISIBLE_CHIPS on a TPU host).",
)
_SLURM_OPTIONS = flags.DEFINE_list(
    "slurm_options",
    [],
    "slurm: extra sbatch long options, e.g. partition=gpu,gres=gpu:1,time=4:00:00.",
)
_WAIT = flags.DEFINE_bool("wait", False, "slurm: wait until the jobs are done, then summarize.")
_TPU_NAMES = flags.DEFINE_list("tpu_names", [], "tpu_vm: the TPU VM name(s).")
_TPU_ZONE = flags.DEFINE_string("tpu_zone", None, "tpu_vm: the VMs' zone.")
_TPU_PROJECT = flags.DEFINE_string("tpu_project", None, "tpu_vm: the Google Cloud project.")
_TPU_RUN = flags.DEFINE_bool("tpu_run", False, "tpu_vm: run the printed gcloud commands.")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache",
    None,
    "XLA's persistent compilation cache of the point processes (default: $JAX_COMPILATION_CACHE_DIR "
    "if set, else ROOT/.jax_cache; empty: off).",
)
_METRICS = flags.DEFINE_list("metrics", [], "report: metrics in results.md (default: the sweep's).")


def compile_cache_dir(flag: str | None, root: str) -> str:
    """The point processes' compilation cache: `flag` if given (`""` = off), else the environment's
    `JAX_COMPILATION_CACHE_DIR`, else `ROOT/.jax_cache` (beside the sweeps, shared by all of them)."""
    if flag is not None:
        return flag
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(Path(root).absolute() / ".jax_cache")


def main(argv: list[str]) -> int:
    command = argv[1:]
    if command not in ([], ["report"]):
        raise errors.UserError(f"unexpected arguments {command}: the only subcommand is `report`")
    if not _SWEEP.value or not _ROOT.value:
        raise errors.UserError("--sweep and --root are required")
    plan = runner.plan(
        _SWEEP.value,
        _ROOT.value,
        _ONLY.value,
        for_launch=command != ["report"],
        compile_cache=compile_cache_dir(_COMPILE_CACHE.value, _ROOT.value),
    )
    if command == ["report"]:
        paths = report.write(plan, _METRICS.value or None)
        print(runner.summarize(plan).text())
        for kind, path in paths.items():
            print(f"{kind}: {path}")
        return errors.EXIT_OK
    if _BACKEND.value == "local":
        if _DRY_RUN.value:
            runner.print_plan(plan)
            return errors.EXIT_OK
        summary = local.run(
            plan, workers=_WORKERS.value, devices=_DEVICES.value, device_env=_DEVICE_ENV.value
        )
        report.write(plan, _METRICS.value or None)
        return summary.exit_code
    if _BACKEND.value == "slurm":
        return slurm.launch(
            plan,
            workers=_WORKERS.value,
            options=_SLURM_OPTIONS.value,
            dry_run=_DRY_RUN.value,
            wait=_WAIT.value,
        )
    return tpu_vm.launch(
        plan,
        names=_TPU_NAMES.value,
        zone=_TPU_ZONE.value or "",
        project=_TPU_PROJECT.value,
        workers=_WORKERS.value,
        run=_TPU_RUN.value and not _DRY_RUN.value,
    )


if __name__ == "__main__":
    cli.run(main)
