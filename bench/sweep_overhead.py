r"""Sweep overhead per point with and without the compilation cache, and K local workers against serial.

    PYTHONPATH=$PWD .venv/bin/python bench/sweep_overhead.py [--points=4] [--steps=40] [--workers=2]

Runs the tests' tiny two-phase sweep (`tests/experiments/tiny_sweep.py`, tiny CNN, batch 8, 16 px) with
`--points` base points (lr 0.03 × seeds, one program set; the dependent phase is left out with --only)
three times into fresh roots: serially without XLA's persistent compilation cache (`--compile_cache=`,
every point compiles), serially with a fresh cache (`tljax.sweep`'s default: the first point compiles,
the others load), and with `--workers` processes and a fresh cache. Per point it splits the wall time
the launcher recorded (`sweep_exit.json`) into
  * process start: interpreter, imports, sweep file and config expansion (wall − train_and_evaluate);
  * in-run fixed cost: data, init, compilation, evaluations, checkpoints, plots (train_and_evaluate's
    `seconds` − training);
  * training: steps × batch / the run's median images per second (steady-state steps only).
Numbers (medians over the points) go to stdout as one table.
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


def _run(data: Path, root: Path, points: int, steps: int, workers: int, cache: str) -> float:
    command = [
        sys.executable,
        "-m",
        "tljax.sweep",
        f"--sweep={SWEEP}:data={data},seeds={points},steps={steps},single,name=bench",
        f"--root={root}",
        "--only=^base/",
        f"--workers={workers}",
        f"--compile_cache={cache}",
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
    runs = {
        "serial, no cache": (1, False),
        "serial, cache": (1, True),
        f"{args.workers} workers, cache": (args.workers, True),
    }
    table = {}
    with tempfile.TemporaryDirectory(prefix="tljax-bench-sweep-") as tmp:
        data = _make_data(Path(tmp) / "data")
        for index, (label, (workers, cached)) in enumerate(runs.items()):
            root = Path(tmp) / f"run{index}"
            cache = str(root / ".jax_cache") if cached else ""
            wall = _run(data, root, args.points, args.steps, workers, cache)
            rows = _breakdown(root, batch=8)
            table[label] = {
                "sweep": wall,
                **{k: statistics.median(r[k] for r in rows) for k in rows[0]},
            }
    print(
        f"{args.points} points x {args.steps} steps of the tiny CNN (batch 8, 16 px), "
        f"{os.cpu_count()} CPU cores; per point: medians over the points"
    )
    keys = ("sweep", "wall", "process_start", "fixed_in_run", "training")
    print("| run | " + " | ".join(f"{k} (s)" for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for label, values in table.items():
        print(f"| {label} | " + " | ".join(f"{values[k]:.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
