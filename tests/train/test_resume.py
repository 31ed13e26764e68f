"""Preemption and crashes: SIGTERM saves and exits cleanly; `kill -9` at an arbitrary moment resumes from
the last complete checkpoint and finishes with exactly the metrics (and parameters) of an uninterrupted
run with the same seed. Uses real subprocesses running `python -m tljax.main`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fixtures
import pytest
import tiny_model

from tljax import errors
from tljax.train import train_and_evaluate

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("tiny_run_config.py")
COMPARED = (
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "val_loss",
    "best_val_accuracy",
    "best_step",
    "final_train_loss",
    "final_train_accuracy",
    "params_digest",
    "confusion_matrix",
    "steps",
)


def _start(data_root: Path, workdir: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tljax.main",
        f"--config={CONFIG}:{data_root},slow",
        f"--workdir={workdir}",
    ]
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_checkpoint(
    workdir: Path, at_least: int, process: subprocess.Popen, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
        if steps and max(steps) >= at_least:
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early:\n{process.stdout.read()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no checkpoint appeared in time")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    """The uninterrupted 24-step run every interrupted one must reproduce: (results, workdir)."""
    tiny_model.register()
    workdir = tmp_path_factory.mktemp("reference")
    results = train_and_evaluate(fixtures.tiny_config(data_root, steps=24), workdir)
    assert results["train_trace_count"] == 1
    return results, workdir


def _records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _no_half_written_checkpoints(workdir: Path) -> bool:
    return not [p for p in workdir.rglob("*") if "orbax-checkpoint-tmp" in p.name]


def test_sigterm_then_kill9_then_resume_matches_uninterrupted(data_root, reference, tmp_path):
    reference, reference_dir = reference

    workdir = tmp_path / "interrupted"
    # 1) SIGTERM: the run saves after the current step and exits 75 (preempted), without final results.
    process = _start(data_root, workdir)
    _wait_for_checkpoint(workdir, 3, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == errors.EXIT_PREEMPTED, output
    assert "preempted" in output and not (workdir / "results.json").exists()
    preempted_step = max(
        int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()
    )
    assert 3 <= preempted_step < 24

    # 2) Resume in a new process, then SIGKILL it at an arbitrary moment after a later checkpoint.
    process = _start(data_root, workdir)
    _wait_for_checkpoint(workdir, preempted_step + 6, process)
    time.sleep(0.2)  # somewhere mid-step / mid-save: the point is that we do not choose
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists()

    # 3) Resume to the end (in this process) and compare with the uninterrupted run.
    resumed = train_and_evaluate(fixtures.tiny_config(data_root, steps=24), workdir)
    for key in COMPARED:
        assert resumed[key] == reference[key], key
    # metrics.jsonl of the resumed run has each train step of the schedule exactly once.
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 24
    # Evaluations (val every 4 steps, final test) are identical, record for record.
    reference_records = _records(reference_dir)

    def evaluations(rs):
        return [
            (r["step"], r["split"], r["loss"], r["accuracy"]) for r in rs if r["split"] != "train"
        ]

    assert evaluations(records) == evaluations(reference_records)


def test_sigint_saves_cleanly_exits_130_and_resumes_to_the_same_digest(
    data_root, reference, tmp_path
):
    reference, _ = reference
    workdir = tmp_path / "interrupted"
    process = _start(data_root, workdir)
    _wait_for_checkpoint(workdir, 3, process)
    # Aim Ctrl-C at a save in progress (orbax writes `<step>.orbax-checkpoint-tmp`, then renames it).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _no_half_written_checkpoints(workdir):
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == errors.EXIT_INTERRUPTED, output
    assert "SIGINT" in output
    assert "Traceback" not in output and "Exception in thread" not in output, output
    assert _no_half_written_checkpoints(workdir)
    assert not (workdir / "results.json").exists()
    resumed = train_and_evaluate(fixtures.tiny_config(data_root, steps=24), workdir)
    for key in COMPARED:
        assert resumed[key] == reference[key], key


def test_two_runs_on_one_workdir_the_second_is_refused_at_once(data_root, reference, tmp_path):
    reference, _ = reference
    workdir = tmp_path / "shared"
    first = _start(data_root, workdir)
    _wait_for_checkpoint(workdir, 3, first)
    second = _start(data_root, workdir)
    output, _ = second.communicate(timeout=120)
    assert first.poll() is None  # refused while the first was still training
    assert second.returncode == errors.EXIT_USER_ERROR, output
    assert (
        output.strip()
        .splitlines()[-1]
        .startswith(
            f"error: workdir {workdir} is in use by process {first.pid} on host {socket.gethostname()}"
        )
    )
    output, _ = first.communicate(timeout=120)
    assert first.returncode == errors.EXIT_OK, output
    results = json.loads((workdir / "results.json").read_text())
    for key in COMPARED:
        assert results[key] == reference[key], key
    train_steps = [r["step"] for r in _records(workdir) if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # one writer: no duplicated or shuffled records


def test_sigterm_after_the_last_save_stops_before_the_final_evaluation(
    data_root, reference, tmp_path, monkeypatch
):
    reference, _ = reference
    import tljax.train.loop as loop

    original = loop.recompute_bn_statistics

    def preempted_during_precise_bn(*args, **kwargs):
        os.kill(
            os.getpid(), signal.SIGTERM
        )  # the scheduler's notice, between the last save and the end
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "recompute_bn_statistics", preempted_during_precise_bn)
    workdir = tmp_path / "run"
    stopped = train_and_evaluate(fixtures.tiny_config(data_root, steps=24), workdir)
    assert stopped == {"preempted": True, "signal": "SIGTERM", "step": 24}
    assert not (workdir / "results.json").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is uninstalled

    monkeypatch.setattr(loop, "recompute_bn_statistics", original)
    resumed = train_and_evaluate(fixtures.tiny_config(data_root, steps=24), workdir)
    for key in COMPARED:
        assert resumed[key] == reference[key], key
