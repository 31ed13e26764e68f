"""The benchmarks' CPU modes, so they never rot: `bench/gpu.py --cpu` on 2 forced devices (the scaling
table then has a 2-device row) and `bench/input_pipeline.py --smoke`. Numbers are not checked beyond
being real measurements (positive and finite): CPU timings here say nothing about a GPU."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], devices: int = 1) -> str:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"\| ([0-9.]+)×? (?=\|)", line + " ")]


def test_gpu_benchmark_cpu_mode_writes_one_table(tmp_path):
    out = tmp_path / "table.md"
    _run(["bench/gpu.py", "--cpu", f"--out={out}"], devices=2)
    lines = out.read_text().splitlines()
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    for name in (
        "efficientnet_lite0 forward",
        "resnet18 train step, frozen",
        "Gatys VGG19 step 32²",
    ):
        values = _numbers(rows[name])
        assert len(values) == 3 and all(v > 0 and math.isfinite(v) for v in values), rows[name]
    assert [rows[n].split(" | ")[0] for n in ("1", "2")] == ["| 1", "| 2"]  # both device counts ran
    assert "Skipped" not in out.read_text()


def test_input_pipeline_smoke(tmp_path):
    result = tmp_path / "pipeline.json"
    _run(
        ["bench/input_pipeline.py", "--smoke", f"--folder={tmp_path / 'jpegs'}", f"--json={result}"]
    )
    best = json.loads(result.read_text())["best"]
    assert set(best) == {"tljax", "torch", "torch_draft"}
    assert all(v > 0 and math.isfinite(v) for v in best.values()), best
    assert len(list((tmp_path / "jpegs").glob("*/*.jpg"))) == 16
