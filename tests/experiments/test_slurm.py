"""The SLURM backend against a real single-node SLURM (launch/slurm_local.sh): a two-phase sweep is
submitted with the real sbatch as two array jobs chained by afterok, completes, and its report holds
every point."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

from conftest import REPO, TINY_SWEEP


def test_real_slurm_sweep_runs_phases_as_dependent_arrays(slurm_cluster, data_root, tmp_path):
    root = tmp_path / "root"
    sweep = f"--sweep={TINY_SWEEP}:data={data_root},name=slurm"
    launched = subprocess.run(
        [sys.executable, "-m", "tljax.sweep", sweep, f"--root={root}", "--backend=slurm"]
        + ["--workers=2", "--wait"],
        cwd=REPO,
        env=slurm_cluster,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    base_job = re.search(r"phase base: submitted array job (\d+) \(2 task\(s\)\)", launched.stdout)
    second_job = re.search(
        r"phase second: submitted array job (\d+) \(1 task\(s\), after (\d+)\)", launched.stdout
    )
    assert base_job and second_job, launched.stdout
    assert second_job.group(2) == base_job.group(1)  # --dependency=afterok on the base array
    assert "sweep summary: 3 done, 0 failed, 0 pending" in launched.stdout

    sweep_dir = root / "slurm"
    script = (sweep_dir / "slurm" / "base.sbatch").read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --requeue" in script
    for task, workdir in enumerate(("lr=0.03,seed=0", "lr=0.01,seed=0")):
        log = (sweep_dir / "base" / workdir / "sweep.log").read_text()
        assert f"(slurm task {base_job.group(1)}_{task} on " in log  # one array task per point
        exit_record = json.loads((sweep_dir / "base" / workdir / "sweep_exit.json").read_text())
        assert exit_record["exit_code"] == 0
    second_dir = sweep_dir / "second" / "seed=0"
    started_at = (second_dir / "history.jsonl").stat().st_mtime
    for base in (sweep_dir / "base").iterdir():
        assert (base / "results.json").stat().st_mtime <= started_at

    reported = subprocess.run(
        [sys.executable, "-m", "tljax.sweep", sweep, f"--root={root}", "report"],
        cwd=REPO,
        env=slurm_cluster,
        capture_output=True,
        text=True,
    )
    assert reported.returncode == 0, reported.stderr
    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert [(r["point"], r["status"]) for r in rows] == [
        ("lr=0.03,seed=0", "done"),
        ("lr=0.01,seed=0", "done"),
        ("seed=0", "done"),
    ]
    for row in rows:
        results = json.loads((sweep_dir / row["phase"] / row["point"] / "results.json").read_text())
        assert float(row["test_accuracy"]) == results["test_accuracy"]
    assert rows[2]["config.weights.name"] == f"run:{sweep_dir / 'base' / 'lr=0.03,seed=0'}"
    assert "| 0.03 | 1 |" in (sweep_dir / "results.md").read_text()
