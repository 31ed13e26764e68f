"""The local backend end to end, with real point processes: `kill -9` of the sweep mid-point and a
relaunch give the uninterrupted sweep's results (finished points not re-run, the killed one resumed,
phase order kept); a failing point is reported with its log and does not stop the others."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, TINY_SWEEP, sweep_env

from tljax import errors
from tljax.experiments import spec
from tljax.train import train_and_evaluate

COMPARED = ("test_accuracy", "test_loss", "final_train_loss", "params_digest", "confusion_matrix")


def _sweep_command(arg: str, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tljax.sweep",
        f"--sweep={TINY_SWEEP}:{arg}",
        f"--root={root}",
        *extra,
    ]


def _starts(workdir: Path) -> int:
    return (workdir / "sweep.log").read_text().count("=== ")


def _checkpoint_steps(workdir: Path) -> list[int]:
    return [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]


def test_kill9_mid_point_then_relaunch_matches_uninterrupted_sweep(data_root, tmp_path):
    arg = f"data={data_root},steps=6,single"
    root = tmp_path / "root"
    first = subprocess.Popen(
        _sweep_command(arg + ",slow=0.2", root),
        cwd=REPO,
        env=sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = root / "tiny" / "second" / "seed=0"  # fine-tunes the finished base point
    deadline = time.monotonic() + 240
    while not (killed.exists() and _checkpoint_steps(killed)):
        assert first.poll() is None, f"sweep ended early:\n{first.stdout.read()}"
        assert time.monotonic() < deadline, "the dependent point wrote no checkpoint in time"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # the launcher only: its point process dies with it
    first.wait()
    assert not (killed / "results.json").exists(), "the point finished before the kill"
    assert (root / "tiny" / "base" / "lr=0.03,seed=0" / "results.json").exists()

    second = subprocess.run(
        _sweep_command(arg, root), cwd=REPO, env=sweep_env(), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 point(s) selected, 1 already done, 1 to run" in second.stdout
    assert "sweep summary: 2 done, 0 failed, 0 pending" in second.stdout

    base_dir = root / "tiny" / "base"
    assert _starts(base_dir / "lr=0.03,seed=0") == 1  # finished: not re-run
    assert _starts(killed) == 2
    assert "resumed from" in (killed / "sweep.log").read_text()
    # Phase order: the dependent point started only after the base point had finished (the first
    # line of history.jsonl is its start, recorded with its config).
    history = [json.loads(line) for line in (killed / "history.jsonl").read_text().splitlines()]
    assert [event["event"] for event in history] == ["start", "resume"]
    started = time.mktime(time.strptime(history[0]["time"], "%Y-%m-%dT%H:%M:%S%z"))
    assert (base_dir / "lr=0.03,seed=0" / "results.json").stat().st_mtime <= started + 1

    # The uninterrupted sweep, in this process: the same point configs, run in phase order.
    reference_root = tmp_path / "reference"
    sweep, _ = spec.load(f"{TINY_SWEEP}:{arg}")
    points = spec.expand(sweep)
    for point in points:
        config = spec.point_config(sweep, point, points, reference_root)
        expected = train_and_evaluate(config, point.workdir(reference_root, sweep.name))
        got = json.loads((point.workdir(root, sweep.name) / "results.json").read_text())
        assert {k: got[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}, point.id

    rows = list(csv.DictReader(open(root / "tiny" / "results.csv")))
    assert [(r["phase"], r["point"], r["status"]) for r in rows] == [
        ("base", "lr=0.03,seed=0", "done"),
        ("second", "seed=0", "done"),
    ]


def test_failing_point_is_reported_and_isolated(data_root, tmp_path):
    root = tmp_path / "root"
    done = subprocess.run(
        _sweep_command(f"data={data_root},fail", root, "--workers=2"),
        cwd=REPO,
        env=sweep_env(),
        capture_output=True,
        text=True,
    )
    failed_log = root / "tiny" / "base" / "lr=1e+30,seed=0" / "sweep.log"
    assert done.returncode == errors.EXIT_FAILED, done.stdout + done.stderr
    assert f"failed: base/lr=1e+30,seed=0  (log: {failed_log})" in done.stdout
    assert "sweep summary: 1 done, 1 failed, 1 pending" in done.stdout
    assert "not started: a phase they depend on has failed points" in done.stdout
    assert "loss is" in failed_log.read_text()  # the NaN stop, named in the point's own log
    good = json.loads((root / "tiny" / "base" / "lr=0.03,seed=0" / "results.json").read_text())
    assert good["test_accuracy"] > 0.5
    assert not (root / "tiny" / "second").exists()
    rows = {r["point"]: r for r in csv.DictReader(open(root / "tiny" / "results.csv"))}
    assert rows["lr=1e+30,seed=0"]["status"] == "failed"
    assert rows["seed=0"]["status"] == "pending"


def test_a_second_point_loads_its_programs_from_the_compile_cache(data_root, tmp_path):
    """Two sweeps of the same point (fresh roots) sharing `--compile_cache`: the second compiles fewer
    programs, exactly those the first wrote to the cache are loaded from it, and the results are equal."""
    cache = tmp_path / "cache"
    env = {**sweep_env(), "JAX_LOG_COMPILES": "1"}  # logs every compilation and every cache hit
    runs = []
    for name in ("first", "second"):
        root = tmp_path / name
        done = subprocess.run(
            _sweep_command(
                f"data={data_root},single", root, "--only=^base/", f"--compile_cache={cache}"
            ),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        workdir = root / "tiny" / "base" / "lr=0.03,seed=0"
        log = (workdir / "sweep.log").read_text()
        runs.append(
            {
                "compiled": len(re.findall(r"Finished XLA compilation of ", log)),
                "hits": re.findall(r"Persistent compilation cache hit for '([^']+)'", log),
                "entries": sorted(p.name for p in cache.iterdir()),
                "results": json.loads((workdir / "results.json").read_text()),
            }
        )
    first, second = runs
    assert first["hits"] == [] and first["entries"], "the first point wrote nothing to the cache"
    # Every program the first point cached (entry `<module>-<key>-cache`) is loaded by the second;
    # which small programs pass the minimum compile time varies with the machine's load.
    written = {name.rsplit("-", 2)[0] for name in first["entries"]}
    assert "jit_counted" in written  # the train step, the longest compilation
    assert written <= set(second["hits"])
    assert second["compiled"] == first["compiled"]  # the same programs ...
    assert second["compiled"] - len(second["hits"]) < first["compiled"]  # ... fewer compiled
    assert {k: second["results"][k] for k in COMPARED} == {k: first["results"][k] for k in COMPARED}
