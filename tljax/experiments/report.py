"""The sweep report, from whatever the workdirs hold (so it works on a partial sweep):

    ROOT/<sweep>/results.csv   one row per point: phase, point, status, its axis labels, the config
                               keys it overrides, and every scalar in its results.json
    ROOT/<sweep>/results.md    per phase, mean ± std (sample std, n−1) over the seed axis of the metrics
    ROOT/<sweep>/figures/      whatever the sweep's `plot(rows, out_dir)` hook draws

`rows()` and `aggregate()` are the building blocks for plot hooks (e.g. Yosinski's Fig. 2: the metric vs
n, one dot per run, a line through the means).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tljax import fileio
from tljax.experiments import runner, spec, state

_FIXED = ("phase", "point", "status")


def rows(plan: runner.Plan) -> list[dict[str, Any]]:
    """One dict per point of the sweep (all points, phase order): phase, point, status, labels
    (strings), overridden config values, and the scalar results of finished points."""
    out = []
    for point in plan.points:
        workdir = plan.workdir(point)
        row: dict[str, Any] = {
            "phase": point.phase,
            "point": point.name,
            "status": state.status(workdir),
        }
        row.update(dict(point.labels))
        for key, value in point.overrides:
            resolved = spec.resolve_value(point, value, plan.points, plan.root, plan.sweep.name)
            row[f"config.{key}"] = resolved if _is_scalar(resolved) else repr(resolved)
        results = state.results(workdir) or {}
        row.update({k: v for k, v in results.items() if _is_scalar(v)})
        row["workdir"] = str(workdir)
        out.append(row)
    return out


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def aggregate(
    table: Sequence[Mapping[str, Any]], by: Sequence[str], metric: str
) -> list[dict[str, Any]]:
    """Groups finished rows by the columns `by` (in first-seen order) and gives each group's
    `labels` (column → value), `count`, `mean` and `std` (sample std, 0 for a single run) of `metric`
    and its `values`. The labels are kept apart so that no axis name (e.g. Fig. 2's `n`) can collide
    with a statistic."""
    groups: dict[tuple, list[float]] = {}
    for row in table:
        value = row.get(metric)
        if row.get("status") != state.DONE or not isinstance(value, (int, float)):
            continue
        groups.setdefault(tuple(row.get(k) for k in by), []).append(float(value))
    out = []
    for key, values in groups.items():
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.append(
            {
                "labels": dict(zip(by, key)),
                "count": len(values),
                "mean": float(np.mean(values)),
                "std": std,
                "values": values,
            }
        )
    return out


def write_csv(table: Sequence[Mapping[str, Any]], path: Path) -> None:
    """results.csv with the union of all rows' columns (fixed ones first, workdir last)."""
    columns = list(_FIXED)
    for row in table:
        columns += [k for k in row if k not in columns and k != "workdir"]
    columns.append("workdir")
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(table)


def markdown(plan: runner.Plan, table: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Per phase, a table of mean ± std (n) over the seed axis for each metric, plus the counts."""
    lines = [f"# Sweep `{plan.sweep.name}`", ""]
    counts = {
        s: sum(r["status"] == s for r in table) for s in (state.DONE, state.FAILED, state.PENDING)
    }
    lines += [
        f"{counts[state.DONE]} done, {counts[state.FAILED]} failed, {counts[state.PENDING]} pending "
        "(mean ± sample std over seeds; `seeds` = how many finished)",
        "",
    ]
    for phase in plan.sweep.phases:
        phase_rows = [r for r in table if r["phase"] == phase.name]
        if not phase_rows:
            continue
        seed_axes = phase.points.seed_axes
        axes = [name for name, _ in phase.points.combos[0].labels if name not in seed_axes]
        lines += [f"## {phase.name}", ""]
        header = [*axes, "seeds", *metrics]  # not "n": Fig. 2's layer axis is called n
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        cells: dict[tuple, dict[str, dict[str, Any]]] = {}
        order: list[tuple] = []
        for metric in metrics:
            for group in aggregate(phase_rows, axes, metric):
                key = tuple(group["labels"][a] for a in axes)
                if key not in cells:
                    cells[key] = {}
                    order.append(key)
                cells[key][metric] = group
        for key in dict.fromkeys(tuple(r.get(a) for a in axes) for r in phase_rows):
            if key not in cells:
                cells[key] = {}
                order.append(key)
        for key in order:
            groups = cells[key]
            n = max((g["count"] for g in groups.values()), default=0)
            values = [_mean_std(groups[m]) if m in groups else "—" for m in metrics]
            lines.append("| " + " | ".join([*map(str, key), str(n), *values]) + " |")
        lines.append("")
    return "\n".join(lines)


def _mean_std(group: Mapping[str, Any]) -> str:
    mean, std = group["mean"], group["std"]
    if all(0 <= v <= 1 for v in group["values"]):  # accuracies: as percentages
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.4g} ± {std:.2g}" if math.isfinite(std) else f"{mean:.4g}"


def write(plan: runner.Plan, metrics: Sequence[str] | None = None) -> dict[str, Path]:
    """Writes results.csv, results.md and the plot hook's figures; returns their paths by kind."""
    table = rows(plan)
    metrics = list(metrics or [plan.sweep.metric])
    out_dir = plan.sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "markdown": out_dir / "results.md"}
    write_csv(table, paths["csv"])
    fileio.atomic_write_text(paths["markdown"], markdown(plan, table, metrics))
    if plan.sweep.plot is not None:
        figures = out_dir / "figures"
        figures.mkdir(exist_ok=True)
        for index, path in enumerate(plan.sweep.plot(table, figures) or ()):
            paths[f"figure{index}"] = Path(path)
    return paths
