r"""Sweep overhead per point, and K local workers against serial, measured on real sweeps.

    PYTHONPATH=$PWD .venv/bin/python bench/sweep_overhead.py [--points=4] [--steps=40] [--workers=2]

Runs the tests' tiny two-phase sweep (`tests/experiments/tiny_sweep.py`, tiny CNN, batch 8, 16 px) with
`--points` base points (lr 0.03 × seeds; the dependent phase is left out with --only) twice into fresh
roots: serially, then with `--workers` processes. Per point it splits the wall time the launcher
recorded (`sweep_exit.json`) into
  * process start: interpreter, imports, sweep file and config expansion (wall − train_and_evaluate);
  * in-run fixed cost: data, init, compilation, evaluations, checkpoints, plots (train_and_evaluate's
    `seconds` − training);
  * training: steps × batch / the run's median images per second (steady-state steps only).
XLA's persistent compilation cache is off (a fresh sweep on a new machine); numbers go to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "tests" / "experiments" / "tiny_sweep.py"


def _make_data(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests" / "train"))
    import fixtures

    return fixtures.make_image_folder(root)


def _run(data: Path, root: Path, points: int, steps: int, workers: int) -> float:
    command = [
        sys.executable,
        "-m",
        "tljax.sweep",
        f"--sweep={SWEEP}:data={data},seeds={points},steps={steps},single,name=bench",
        f"--root={root}",
        "--only=^base/",
        f"--workers={workers}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _breakdown(root: Path, batch: int) -> list[dict[str, float]]:
    out = []
    for workdir in sorted((root / "bench" / "base").iterdir()):
        wall = json.loads((workdir / "sweep_exit.json").read_text())["seconds"]
        results = json.loads((workdir / "results.json").read_text())
        training = results["steps"] * batch / results["images_per_second"]
        out.append(
            {
                "wall": wall,
                "process_start": wall - results["seconds"],
                "fixed_in_run": results["seconds"] - training,
                "training": training,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tljax-bench-sweep-") as tmp:
        data = _make_data(Path(tmp) / "data")
        serial = _run(data, Path(tmp) / "serial", args.points, args.steps, 1)
        parallel = _run(data, Path(tmp) / "parallel", args.points, args.steps, args.workers)
        rows = _breakdown(Path(tmp) / "serial", batch=8)
    print(
        f"{args.points} points x {args.steps} steps of the tiny CNN (batch 8, 16 px), no XLA cache"
    )
    print("per point (serial run), median over points:")
    for key in ("wall", "process_start", "fixed_in_run", "training"):
        values = [r[key] for r in rows]
        share = statistics.median(values) / statistics.median([r["wall"] for r in rows])
        print(f"  {key:<14} {statistics.median(values):7.2f} s  ({100 * share:5.1f}% of wall)")
    print(f"sweep wall: serial {serial:.1f} s, {args.workers} workers {parallel:.1f} s")
    print(f"speed-up {serial / parallel:.2f}x on {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
