"""The issue-9 reproduction sweeps: every point of the CPU and GPU versions builds a valid config, and
the quick Fig.-2 sweep runs end to end on real Fashion-MNIST (six CaffeNet points) with AnB's frozen
layers bitwise those of its baseA, and its figure and table drawn."""

from __future__ import annotations

import csv
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, sweep_env

from tljax import errors, models, weights
from tljax.experiments import spec

FIG2 = REPO / "configs" / "sweeps" / "yosinski_fig2.py"
DATA_SIZE = REPO / "configs" / "sweeps" / "similar_different.py"


def test_fig2_sweep_points_and_configs(tmp_path):
    sweep, _ = spec.load(str(FIG2))
    points = spec.expand(sweep)
    assert len(points) == 3 * (2 + 7 * 4) * 3  # splits × (bases + n·modes) × seeds
    assert [p.phase for p in points][:6] == ["base-r0"] * 6
    by_id = {p.id: p for p in points}
    anb = by_id["transfer-dissimilar/n=5,mode=AnB+,seed=2"]
    spec.validate(sweep, points, tmp_path)  # every point's config builds; references are in order
    config = spec.point_config(sweep, anb, points, tmp_path)
    assert config.weights.name == f"run:{tmp_path / 'yosinski_fig2/base-dissimilar/half=A,seed=2'}"
    assert (config.recipe, config.transfer.layers, config.transfer.mode) == (
        "transfer",
        5,
        "finetune",
    )
    assert config.data.classes == "Trouser,Sandal,Sneaker,Bag,Ankle boot" and config.seed == 1002
    small_b, _ = spec.load(f"{FIG2}:splits=r1,seeds=1,n=2,b_shots=20")
    small_points = {p.id: p for p in spec.expand(small_b)}
    assert small_b.name == "yosinski_fig2_b20" and len(small_points) == 2 + 4
    configs = {
        name: spec.point_config(small_b, small_points[name], list(small_points.values()), tmp_path)
        for name in (
            "base-r1/half=A,seed=0",
            "base-r1/half=B,seed=0",
            "transfer-r1/n=2,mode=AnB,seed=0",
        )
    }
    assert [c.data.train_per_class for c in configs.values()] == [200, 20, 20]
    gpu, _ = spec.load(f"{FIG2}:gpu")
    gpu_points = spec.expand(gpu)
    spec.validate(gpu, gpu_points, tmp_path)
    assert gpu.base.model.name == "caffenet_wide" and len(gpu_points) == len(points)


def test_data_size_sweep_points_and_configs(tmp_path):
    sweep, _ = spec.load(str(DATA_SIZE))
    points = spec.expand(sweep)
    assert len(points) == 1 + 2 * 5 * 4  # the baseA source, 2 sources × 5 recipes × 4 sizes
    spec.validate(sweep, points, tmp_path)
    similar = {p.id: p for p in points}["similar/recipe=finetune_top,shots=all"]
    config = spec.point_config(sweep, similar, points, tmp_path)
    assert config.model.name == "caffenet" and config.data.train_per_class is None
    assert config.weights.name == f"run:{tmp_path / 'similar_different/source/default'}"


def test_quick_fig2_sweep_runs_and_reports(tmp_path):
    root = tmp_path / "root"
    done = subprocess.run(
        [sys.executable, "-m", "tljax.sweep", f"--sweep={FIG2}:quick", f"--root={root}"],
        cwd=REPO,
        env=sweep_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = root / "yosinski_fig2_quick"
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    model = models.get("caffenet", num_classes=5)
    base_a = weights.load(f"run:{out / 'base-r0/half=A,seed=0'}", model)
    a3b = weights.load(f"run:{out / 'transfer-r0/n=3,mode=AnB,seed=0'}", model)
    for name in ("conv1", "conv2", "conv3"):
        for x, y in zip(
            jax.tree.leaves(base_a["params"][name]), jax.tree.leaves(a3b["params"][name])
        ):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(base_a["params"]["conv4"]["kernel"], a3b["params"]["conv4"]["kernel"])
    assert (out / "figures" / "fig2_r0.png").stat().st_size > 10_000
    table = (out / "figures" / "fig2_r0.md").read_text()
    assert table.startswith("baseB: ") and "| 3 | " in table


def test_a_bad_class_name_stops_the_sweep_before_any_point(tmp_path):
    sweep, _ = spec.load(f"{FIG2}:quick")
    bad = spec.Sweep(
        name="bad_classes",
        base=sweep.base,
        phases=[spec.Phase("base", spec.axis("task", {"typo": {"data.classes": "Bag,Sneakers"}}))],
    )
    with pytest.raises(
        errors.ConfigError, match=r"point base/task=typo: .*unknown class 'Sneakers'"
    ):
        spec.validate(bad, spec.expand(bad), tmp_path)
