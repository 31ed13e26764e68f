"""The augmentation × robustness table of a sweep: every finished run scored on the corruption suite,
then mean ± std over seeds per (recipe, augmentation).

A sweep's report hook (`configs/sweeps/augment_table.py`) calls `score_rows` on the report's rows (see
`tljax.experiments.report.rows`): each finished run is scored by `tljax.corruption_eval.evaluate_run`
once and the result cached in `RUN/robustness.json` beside the settings it was scored with (a later
report with other settings scores again). `summarize` then groups the runs and computes, per run, the
mCE and relative mCE (Hendrycks & Dietterich) against the baseline augmentation's run *of the same recipe and
seed* (the same training subset and initialisation), and `markdown` writes the table.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tljax import fileio
from tljax.data import corruptions

RESULTS_FILE = "robustness.json"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How each run is scored: test images per class (a seeded subset of the test split), severities,
    the corruptions' seed, the AdaBN/TENT batch, and which BN layers adapt (`trained` or `all`)."""

    test_per_class: int = 20
    severities: tuple[int, ...] = corruptions.SEVERITIES
    seed: int = 0
    batch_size: int = 100
    adapt_layers: str = "trained"

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "severities": list(self.severities)}


def score(workdir: str | Path, settings: Settings) -> dict[str, Any]:
    """The run's corruption-suite results (`evaluate_run`'s dict), from its cache when it was scored with
    the same settings, else computed and cached atomically."""
    from tljax.corruption_eval import evaluate_run

    path = Path(workdir) / RESULTS_FILE
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings.record():
            return cached
    results = evaluate_run(
        workdir,
        test_per_class=settings.test_per_class,
        severities=settings.severities,
        seed=settings.seed,
        batch_size=settings.batch_size,
        adapt_layers=settings.adapt_layers,
    )
    record = {"workdir": str(workdir), "settings": settings.record(), **results}
    fileio.atomic_write_json(path, record)
    return record


def score_rows(rows: Sequence[Mapping[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """The finished rows (status "done"), each with its `robustness` results added."""
    return [
        {**row, "robustness": score(row["workdir"], settings)}
        for row in rows
        if row.get("status") == "done"
    ]


def _accuracies(result: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    return {n: {int(s): float(v) for s, v in a.items()} for n, a in result["accuracies"].items()}


def summarize(
    scored: Sequence[Mapping[str, Any]],
    *,
    by: Sequence[str] = ("recipe", "augment"),
    baseline: tuple[str, str] = ("augment", "none"),
    seed_column: str = "seed",
) -> list[dict[str, Any]]:
    """Per group of `by` (first-seen order): `n` and, for each metric, its per-run `values`, `mean` and
    sample `std`. Metrics: `test_accuracy` (the run's own test score), `clean`, `corrupted`, `mce` and
    `relative_mce` without adaptation, and `clean`/`corrupted` after AdaBN and TENT. A run's (relative)
    mCE is against the run with `baseline` (column, value) and the same other `by` columns and seed;
    it is missing when that run is not scored."""
    column, value = baseline
    baselines = {
        (tuple(r[k] for k in by if k != column), r[seed_column]): r["robustness"]["none"]
        for r in scored
        if r[column] == value
    }
    groups: dict[tuple, dict[str, list[float]]] = {}
    for row in scored:
        metrics = groups.setdefault(tuple(row[k] for k in by), {})
        robustness = row["robustness"]

        def add(name: str, number: float | None, metrics: dict = metrics) -> None:
            if number is not None and np.isfinite(number):
                metrics.setdefault(name, []).append(float(number))

        add("test_accuracy", row.get("test_accuracy"))
        for adaptation in ("none", "adabn", "tent"):
            if adaptation in robustness:
                add(f"{adaptation}_clean", robustness[adaptation]["clean_accuracy"])
                add(f"{adaptation}_corrupted", robustness[adaptation]["corruption_accuracy"])
        base = baselines.get((tuple(row[k] for k in by if k != column), row[seed_column]))
        if base is not None:
            report = corruptions.corruption_report(
                robustness["none"]["clean_accuracy"],
                _accuracies(robustness["none"]),
                baseline_clean_accuracy=base["clean_accuracy"],
                baseline=_accuracies(base),
            )
            add("mce", report["mce"])
            add("relative_mce", report["relative_mce"])
    out = []
    for key, metrics in groups.items():
        summary: dict[str, Any] = dict(zip(by, key))
        summary["n"] = max((len(v) for v in metrics.values()), default=0)
        for name, values in metrics.items():
            summary[name] = {
                "values": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
        out.append(summary)
    return out


COLUMNS = (
    ("test_accuracy", "test acc (run)"),
    ("none_clean", "clean"),
    ("none_corrupted", "corrupted"),
    ("mce", "mCE"),
    ("relative_mce", "rel. mCE"),
    ("adabn_clean", "AdaBN clean"),
    ("adabn_corrupted", "AdaBN corrupted"),
    ("tent_clean", "TENT clean"),
    ("tent_corrupted", "TENT corrupted"),
)


def markdown(
    summary: Sequence[Mapping[str, Any]], by: Sequence[str] = ("recipe", "augment")
) -> str:
    """The table: one row per group, `mean ± std` in percent for every metric of `COLUMNS` (— when
    missing)."""
    header = [*by, "n", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in summary:
        cells = [str(group[k]) for k in by] + [str(group["n"])]
        for name, _ in COLUMNS:
            metric = group.get(name)
            cells.append(
                "—" if metric is None else f"{100 * metric['mean']:.1f} ± {100 * metric['std']:.1f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
