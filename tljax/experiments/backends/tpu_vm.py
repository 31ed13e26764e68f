r"""The TPU VM backend: the `gcloud compute tpus tpu-vm` commands that copy this repository to the VMs,
set it up (a venv with tljax and `jax[tpu]`) and start the sweep there with the local backend.

    python -m tljax.sweep --sweep=configs/sweeps/x.py --root=/home/me/sweeps --backend=tpu_vm \
        --tpu_names=my-v5e --tpu_zone=us-west4-a [--tpu_run]

Printed by default (and with --dry_run); `--tpu_run` runs them in order. One VM runs the whole sweep
(`--tpu_names=one`); several VMs split the selected points between them (one `--only` list each), which
needs points that do not depend on each other's workdirs (VM disks are not shared). `--worker=all` runs
the command on every host of the slice; a point on a multi-host slice needs multi-host training in
`train_and_evaluate` (single-host VMs have one worker). The sweep on the VM is nohup'ed, so the ssh returns;
running the same commands again resumes it (finished points are skipped there).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tljax import errors
from tljax.experiments import runner

REMOTE_DIR = "tljax"  # relative to the VM user's home
ARCHIVE = "tljax-src.tar.gz"


def _repo_relative(path_text: str) -> str:
    path, _, arg = path_text.partition(":")
    try:
        relative = Path(path).relative_to(Path.cwd())
    except ValueError:
        raise errors.UserError(
            f"--backend=tpu_vm: the sweep file {path} is outside the repository {Path.cwd()}, which "
            "is what gets copied to the VMs: put it under configs/sweeps/"
        ) from None
    return str(relative) + (f":{arg}" if arg else "")


def commands(
    plan: runner.Plan,
    names: Sequence[str],
    zone: str,
    project: str | None = None,
    workers: int = 1,
) -> list[list[str]]:
    """The local packing command, then per VM: scp, set-up ssh, start ssh (each an argv list)."""
    if not names or not zone:
        raise errors.UserError(
            "--backend=tpu_vm needs --tpu_names=NAME[,NAME...] and --tpu_zone=ZONE"
        )
    todo = runner.unfinished(plan.selected, plan)
    if len(names) > 1:
        for point in todo:
            if plan.dependencies(point):
                raise errors.UserError(
                    f"point {point.id} depends on other points' workdirs, which another VM's disk "
                    "would hold: run this sweep on one VM (--tpu_names=NAME), or phase by phase "
                    "with --only on a root all VMs mount"
                )
    sweep = _repo_relative(plan.spec_text)
    archive = f"/tmp/{ARCHIVE}"
    pack = [
        "tar", "-czf", archive, "--exclude=.git", "--exclude=.venv", "--exclude=__pycache__", ".",
    ]  # fmt: skip
    gcloud_flags = [f"--zone={zone}"] + ([f"--project={project}"] if project else [])
    setup = (
        f"set -e; mkdir -p ~/{REMOTE_DIR}; tar -xzf ~/{ARCHIVE} -C ~/{REMOTE_DIR}; "
        f"cd ~/{REMOTE_DIR}; [ -x .venv/bin/python ] || python3 -m venv .venv; "
        ".venv/bin/pip install -q -U pip; .venv/bin/pip install -q -e . 'jax[tpu]'"
    )
    out = [pack]
    shares = [todo[i :: len(names)] for i in range(len(names))]
    for name, share in zip(names, shares):
        if len(names) > 1 and not share:
            continue
        sweep_args = [
            f"--sweep={sweep}",
            f"--root={plan.root}",
            "--backend=local",
            f"--workers={workers}",
        ]
        if len(names) > 1:
            sweep_args.append("--only=^(" + "|".join(_escape(p.id) for p in share) + ")$")
        log = f"{plan.root}/{plan.sweep.name}/tpu_vm-{name}.log"
        start = (
            f"cd ~/{REMOTE_DIR} && mkdir -p {shlex.quote(str(Path(log).parent))} && nohup "
            ".venv/bin/python -m tljax.sweep "
            + " ".join(shlex.quote(a) for a in sweep_args)
            + f" >> {shlex.quote(log)} 2>&1 < /dev/null &"
        )
        base = ["gcloud", "compute", "tpus", "tpu-vm"]
        out.append([*base, "scp", archive, f"{name}:{ARCHIVE}", *gcloud_flags, "--worker=all"])
        out.append([*base, "ssh", name, *gcloud_flags, "--worker=all", f"--command={setup}"])
        out.append([*base, "ssh", name, *gcloud_flags, "--worker=all", f"--command={start}"])
    return out


def _escape(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)


def launch(
    plan: runner.Plan,
    *,
    names: Sequence[str],
    zone: str,
    project: str | None = None,
    workers: int = 1,
    run: bool = False,
    stream=None,
) -> int:
    """Prints the commands (a shell script); with `run`, also runs them in order, stopping at the first
    that fails."""
    stream = stream or sys.stdout
    argvs = commands(plan, names, zone, project, workers)
    for argv in argvs:
        print(shlex.join(argv), file=stream, flush=True)
        if run:
            try:
                done = subprocess.run(argv, check=False)
            except FileNotFoundError:
                raise errors.UserError(
                    f"{argv[0]} not found: install the Google Cloud SDK"
                ) from None
            if done.returncode != 0:
                raise errors.UserError(f"{shlex.join(argv[:6])} ... exited {done.returncode}")
    return errors.EXIT_OK
