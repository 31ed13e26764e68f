"""Without training (milliseconds each): the checked plan's errors, the SLURM scripts and TPU-VM commands
of a dry run, device pinning, and the report on a partial sweep with known numbers."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, sweep_env

from tljax import errors
from tljax.experiments import report, runner
from tljax.experiments.backends import local, slurm, tpu_vm
from tljax.train import workdir as run_workdir

SWEEP_FILE = """
from tljax.experiments import spec
from tljax.train.defaults import default_config

PLOTTED = []


def plot(rows, out_dir):
    PLOTTED.append(len(rows))
    path = out_dir / "count.txt"
    path.write_text(str(len(rows)))
    return [path]


def get_sweep(arg=None):
    config = default_config()
    config.recipe = "scratch"
    config.lock()
    return spec.Sweep(
        name="grid",
        base=config,
        phases=[
            spec.Phase("base", spec.product(spec.axis("optim.lr", [0.1, 0.01], name="lr"), spec.seeds(2))),
            spec.Phase(
                "transfer",
                spec.seeds(2),
                depends_on=("base",),
                overrides={"weights.name": "run:{base/lr=0.1,seed=$seed}"},
            ),
        ],
        plot=plot,
    )
"""


@pytest.fixture()
def sweep_file(tmp_path) -> Path:
    path = tmp_path / "grid_sweep.py"
    path.write_text(textwrap.dedent(SWEEP_FILE))
    return path


def _finish(plan: runner.Plan, point_id: str, test_accuracy: float) -> Path:
    """Makes a point look finished exactly as train_and_evaluate leaves it (config record + results)."""
    point = next(p for p in plan.points if p.id == point_id)
    workdir = plan.workdir(point)
    workdir.mkdir(parents=True)
    config = runner.spec.point_config(plan.sweep, point, plan.points, plan.root)
    run_workdir.record_config(workdir, config)
    run_workdir.write_results(workdir, {"test_accuracy": test_accuracy, "steps": 10})
    return workdir


def test_only_without_the_unfinished_source_is_refused_before_anything_runs(sweep_file, tmp_path):
    with pytest.raises(errors.UserError, match=r"point transfer/seed=0 loads the run base/lr=0.1,seed=0, "
                       r"which has not finished and is not selected by --only='transfer'"):  # fmt: skip
        runner.plan(str(sweep_file), tmp_path / "root", only="transfer")
    # The report of those points is fine: it runs nothing.
    assert (
        len(runner.plan(str(sweep_file), tmp_path / "root", "transfer", for_launch=False).selected)
        == 2
    )
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    for point in plan.points[:4]:
        _finish(plan, point.id, 0.5)
    assert [p.id for p in runner.plan(str(sweep_file), tmp_path / "root", "transfer").selected] == [
        "transfer/seed=0",
        "transfer/seed=1",
    ]


def test_a_workdir_of_another_config_is_refused_by_point_name(sweep_file, tmp_path):
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    workdir = _finish(plan, "base/lr=0.01,seed=1", 0.5)  # finished, and then the sweep file changed
    config = run_workdir.read_config_record(workdir)
    config["optim"]["weight_decay"] = 0.5
    (workdir / "config.json").write_text(__import__("json").dumps(config))
    with pytest.raises(errors.WorkdirError, match=r"point base/lr=0.01,seed=1: its workdir .* "
                       r"different config \(differing keys: optim.weight_decay\)"):  # fmt: skip
        runner.plan(str(sweep_file), tmp_path / "root")


def test_cli_bad_input_is_one_line_and_exit_2(sweep_file, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tljax.sweep", f"--sweep={sweep_file}", f"--root={tmp_path}"]
        + ["--only=nothing-matches"],
        cwd=REPO,
        env=sweep_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == errors.EXIT_USER_ERROR
    assert done.stderr.strip().splitlines() == [
        "error: --only='nothing-matches' matches no point (ids look like 'base/lr=0.1,seed=0')"
    ]


def test_slurm_dry_run_prints_one_array_per_phase_chained_by_afterok(sweep_file, tmp_path):
    cache = tmp_path / "root" / ".jax_cache"
    plan = runner.plan(str(sweep_file), tmp_path / "root", compile_cache=str(cache))
    _finish(plan, "base/lr=0.1,seed=1", 0.5)  # finished points get no array task
    out = io.StringIO()
    code = slurm.launch(
        plan, workers=2, options=["partition=gpu", "gres=gpu:1"], dry_run=True, stream=out
    )
    text = out.getvalue()
    assert code == 0 and not (plan.sweep_dir / "slurm").exists()  # a dry run writes nothing
    scripts = re.findall(r"^# (\S+\.sbatch)\n(.*?)\n\n", text, re.S | re.M)
    assert [Path(p).name for p, _ in scripts] == ["base.sbatch", "transfer.sbatch"]
    base, transfer = (s for _, s in scripts)
    assert "#SBATCH --array=0-2%2" in base and "#SBATCH --array=0-1%2" in transfer
    assert "POINTS=(lr=0.1,seed=0 lr=0.01,seed=0 lr=0.01,seed=1)" in base
    for header in ("--requeue", "--partition=gpu", "--gres=gpu:1", "--signal=B:TERM@120"):
        assert f"#SBATCH {header}\n" in base
    # Every task's point process shares the sweep's compilation cache.
    assert base.count(f"--compile_cache={cache}") == 1
    assert "JOB_base=$(sbatch --parsable " in text
    assert "JOB_transfer=$(sbatch --parsable --dependency=afterok:${JOB_base} " in text
    for script in (base, transfer):
        syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr


def test_tpu_vm_commands_set_up_and_start_the_sweep_on_every_worker(
    sweep_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(sweep_file.parent)  # the sweep file must be inside the copied repository
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    argvs = tpu_vm.commands(plan, ["vm1"], "us-central2-b", project="proj", workers=2)
    assert argvs[0][:3] == ["tar", "-czf", "/tmp/tljax-src.tar.gz"]
    scp, setup, start = argvs[1:]
    base = ["gcloud", "compute", "tpus", "tpu-vm"]
    assert scp == [*base, "scp", "/tmp/tljax-src.tar.gz", "vm1:tljax-src.tar.gz"] + [
        "--zone=us-central2-b",
        "--project=proj",
        "--worker=all",
    ]
    assert setup[:6] == [*base, "ssh", "vm1"] and "--worker=all" in setup
    assert "pip install -q -e . 'jax[tpu]'" in setup[-1]
    assert start[-1].startswith("--command=cd ~/tljax && ")
    assert f"--sweep=grid_sweep.py --root={plan.root} --backend=local --workers=2" in start[-1]
    with pytest.raises(errors.UserError, match="depends on other points' workdirs"):
        tpu_vm.commands(plan, ["vm1", "vm2"], "z")
    # Independent points split across VMs: every point on exactly one VM.
    independent = runner.plan(str(sweep_file), tmp_path / "root", only="base/")
    starts = tpu_vm.commands(independent, ["vm1", "vm2"], "z")[3::3]
    patterns = [re.search(r"'--only=(.*?)'", s[-1]).group(1) for s in starts]
    for point in independent.selected:
        assert sum(bool(re.search(p, point.id)) for p in patterns) == 1


def test_the_compile_cache_is_the_flag_else_the_environment_else_beside_the_sweeps(
    sweep_file, tmp_path, monkeypatch
):
    from tljax.sweep import compile_cache_dir

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert compile_cache_dir(None, str(tmp_path)) == str(tmp_path / ".jax_cache")
    assert compile_cache_dir("/elsewhere", str(tmp_path)) == "/elsewhere"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/from/env")
    assert compile_cache_dir(None, str(tmp_path)) == "/from/env"
    assert compile_cache_dir("", str(tmp_path)) == ""  # off
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    assert not any("--compile_cache" in a for a in runner.point_command(plan, plan.points[0]))
    cached = runner.plan(str(sweep_file), tmp_path / "root", compile_cache="/c")
    assert runner.point_command(cached, cached.points[0])[-2:] == [
        "--compile_cache=/c",
        "--point=base/lr=0.1,seed=0",
    ]


def test_device_groups_are_disjoint_and_equal():
    assert local.device_groups(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
    assert local.device_groups([], 3) == [[], [], []]
    with pytest.raises(errors.UserError, match="multiple of the worker count"):
        local.device_groups(["0", "1", "2"], 2)
    env = local.worker_env({"PATH": "/bin"}, ["2", "3"], "CUDA_VISIBLE_DEVICES")
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert local.worker_env({"PATH": "/bin"}, [], "CUDA_VISIBLE_DEVICES") == {"PATH": "/bin"}


def test_report_on_a_partial_sweep_gives_mean_and_std_over_seeds(sweep_file, tmp_path):
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    values = {"base/lr=0.1,seed=0": 0.61, "base/lr=0.1,seed=1": 0.67, "base/lr=0.01,seed=0": 0.5}
    for point_id, value in values.items():
        _finish(plan, point_id, value)
    paths = report.write(plan)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [(r["point"], r["status"], r["test_accuracy"]) for r in rows] == [
        ("lr=0.1,seed=0", "done", "0.61"),
        ("lr=0.1,seed=1", "done", "0.67"),
        ("lr=0.01,seed=0", "done", "0.5"),
        ("lr=0.01,seed=1", "pending", ""),
        ("seed=0", "pending", ""),
        ("seed=1", "pending", ""),
    ]
    assert rows[4]["config.weights.name"] == f"run:{plan.sweep_dir / 'base' / 'lr=0.1,seed=0'}"
    markdown = paths["markdown"].read_text()
    mean, std = np.mean([0.61, 0.67]), np.std([0.61, 0.67], ddof=1)
    assert f"| 0.1 | 2 | {100 * mean:.2f} ± {100 * std:.2f} |" in markdown
    assert "| 0.01 | 1 | 50.00 ± 0.00 |" in markdown
    assert "3 done, 0 failed, 3 pending" in markdown
    assert paths["figure0"].read_text() == "6"  # the sweep's plot hook got every row
    assert runner.summarize(plan).line() == "3 done, 0 failed, 3 pending"


def test_an_axis_named_n_keeps_its_groups_apart_from_the_seed_count():
    # Fig. 2's layer axis is `n`: it once collided with the count of seeds and merged every n.
    table = [
        {"status": "done", "n": n, "mode": "AnB", "seed": s, "acc": 0.1 * n + 0.01 * s}
        for n in (1, 7)
        for s in range(3)
    ]
    groups = report.aggregate(table, ["n", "mode"], "acc")
    assert [(g["labels"], g["count"]) for g in groups] == [
        ({"n": 1, "mode": "AnB"}, 3),
        ({"n": 7, "mode": "AnB"}, 3),
    ]
    assert [g["mean"] for g in groups] == pytest.approx([0.11, 0.71])


def test_a_second_launcher_of_the_same_sweep_is_refused_before_any_point(sweep_file, tmp_path):
    plan = runner.plan(str(sweep_file), tmp_path / "root")
    plan.sweep_dir.mkdir(parents=True)
    with run_workdir.WorkdirLock(plan.sweep_dir):  # the first launcher
        with pytest.raises(errors.WorkdirError, match=rf"sweep 'grid' is already being run in "
                           rf"{plan.sweep_dir}: .* in use by process {os.getpid()}"):  # fmt: skip
            local.run(plan, stream=io.StringIO())
    assert [p.name for p in plan.sweep_dir.iterdir()] == [".tljax.lock"]  # no point started
