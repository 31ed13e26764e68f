"""Yosinski et al. 2014's Fig. 2 from a layer-transfer sweep's results: top-1 on B vs the layer n.

Rows are plain dicts (the sweep report's rows, or anything with the same keys): `mode` (one of
`baseB`, `BnB`, `BnB+`, `AnB`, `AnB+`), `n` (the number of copied layers; ignored for `baseB`) and the
metric (`test_accuracy` by default). Rows whose metric is missing (a failed or pending point) are left
out, so a partial sweep plots what it has.

* `fig2_summary(rows)`: per mode and n the values, mean and sample std, and the mean's difference from
  the baseB mean (the paper's second panel);
* `plot_fig2(rows, path)`: the figure — every run a dot (jittered sideways per mode), each mode's means
  joined by a line, baseB as a dot column at n = 0 and a horizontal reference line, and a second
  panel with the differences from baseB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("BnB", "BnB+", "AnB", "AnB+")
BASE = "baseB"
# The paper's colours: BnB white, BnB+ blue, AnB red, AnB+ pink; baseB black.
STYLE = {
    BASE: dict(color="black", marker="o", facecolor="black", ls="--"),
    "BnB": dict(color="#3060c0", marker="o", facecolor="white", ls=":"),
    "BnB+": dict(color="#3060c0", marker="o", facecolor="#3060c0", ls="-"),
    "AnB": dict(color="#c03030", marker="D", facecolor="#c03030", ls=":"),
    "AnB+": dict(color="#e070b0", marker="D", facecolor="#e070b0", ls="-"),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """The runs of one mode at one n."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Fig2Summary:
    """`base`: the baseB runs; `cells[mode][n]`: the runs of a transfer mode at n copied layers."""

    base: Cell
    cells: dict[str, dict[int, Cell]]

    def difference(self, mode: str, n: int) -> float:
        """Mean of `mode` at `n` minus the baseB mean (positive: better than training B from scratch)."""
        return self.cells[mode][n].mean - self.base.mean

    def markdown(self, digits: int = 1) -> str:
        """A table: one row per n, one column per mode, mean ± std in percent, baseB in the caption row."""
        ns = sorted({n for cells in self.cells.values() for n in cells})
        modes = [m for m in MODES if m in self.cells]

        def fmt(cell: Cell | None) -> str:
            if cell is None:
                return "–"
            return f"{100 * cell.mean:.{digits}f} ± {100 * cell.std:.{digits}f}"

        lines = [
            f"baseB: {fmt(self.base)} % ({len(self.base.values)} runs)",
            "",
            "| n | " + " | ".join(modes) + " |",
            "|---|" + "---|" * len(modes),
        ]
        for n in ns:
            lines.append(f"| {n} | " + " | ".join(fmt(self.cells[m].get(n)) for m in modes) + " |")
        return "\n".join(lines)


def fig2_summary(rows: Iterable[Mapping[str, Any]], metric: str = "test_accuracy") -> Fig2Summary:
    """Groups `rows` by mode and n (see the module docstring); raises ValueError naming what is missing
    when there is no finished baseB run or no transfer run."""
    base: list[float] = []
    cells: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        value = row.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        mode = row.get("mode")
        if mode == BASE:
            base.append(float(value))
        elif mode in MODES:
            cells.setdefault(str(mode), {}).setdefault(int(row["n"]), []).append(float(value))
    if not base:
        raise ValueError(f"no finished {BASE} run with a {metric!r} value: nothing to compare with")
    if not cells:
        raise ValueError(f"no finished transfer run ({', '.join(MODES)}) with a {metric!r} value")
    return Fig2Summary(
        Cell(tuple(base)),
        {
            mode: {n: Cell(tuple(v)) for n, v in sorted(by_n.items())}
            for mode, by_n in cells.items()
        },
    )


def plot_fig2(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    metric: str = "test_accuracy",
    title: str = "Layer transfer (Yosinski et al. 2014, Fig. 2)",
) -> Path:
    """Draws the two-panel Fig. 2 of `rows` into `path` (PNG) and returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = fig2_summary(rows, metric)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    jitter = {mode: 0.09 * (i - 1.5) for i, mode in enumerate(MODES)}
    base_style = STYLE[BASE]
    top.scatter(
        np.zeros(len(summary.base.values)),
        [100 * v for v in summary.base.values],
        s=22,
        c=base_style["facecolor"],
        marker=base_style["marker"],
        label=BASE,
        zorder=3,
    )
    top.axhline(100 * summary.base.mean, color="black", lw=1, ls="--", zorder=1)
    bottom.axhline(0.0, color="black", lw=1, ls="--")
    for mode in MODES:
        if mode not in summary.cells:
            continue
        style = STYLE[mode]
        ns = list(summary.cells[mode])
        for n in ns:
            values = summary.cells[mode][n].values
            top.scatter(
                np.full(len(values), n + jitter[mode]),
                [100 * v for v in values],
                s=22,
                marker=style["marker"],
                facecolors=style["facecolor"],
                edgecolors=style["color"],
                zorder=3,
            )
        means = [100 * summary.cells[mode][n].mean for n in ns]
        top.plot(
            [n + jitter[mode] for n in ns],
            means,
            color=style["color"],
            ls=style["ls"],
            lw=1.5,
            label=mode,
        )
        bottom.plot(
            ns,
            [100 * summary.difference(mode, n) for n in ns],
            color=style["color"],
            marker=style["marker"],
            markerfacecolor=style["facecolor"],
            ls=style["ls"],
            lw=1.5,
            label=mode,
        )
    top.set_ylabel(f"top-1 on B ({metric}, %)")
    top.set_title(title)
    top.legend(loc="lower left", fontsize=8, ncol=5)
    top.grid(alpha=0.3)
    bottom.set_ylabel("mean − baseB mean (points)")
    bottom.set_xlabel("layer n at which the network is chopped and retrained")
    bottom.grid(alpha=0.3)
    all_ns = sorted({n for cells in summary.cells.values() for n in cells})
    bottom.set_xticks([0, *all_ns])
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


# ---------------------------------------------------------------------------------------------------
# Issue 9 §4b: "very similar / very different source × very little / quite a lot of data".

RECIPE_ORDER = ("scratch", "linear_probe", "feature_extractor", "finetune_top", "finetune_all")


def data_size_series(
    rows: Iterable[Mapping[str, Any]], metric: str = "test_accuracy"
) -> dict[str, dict[str, dict[int, Cell]]]:
    """`{source: {recipe: {images per class: Cell}}}` from rows with `source`, `recipe`, `shots` (an
    int, or `all` with the per-class count in `train_per_class_all`) and the metric; unfinished rows
    are left out."""
    grouped: dict[str, dict[str, dict[int, list[float]]]] = {}
    for row in rows:
        value = row.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        shots = row["shots"]
        per_class = int(row["train_per_class_all"]) if shots == "all" else int(shots)
        by_recipe = grouped.setdefault(str(row["source"]), {})
        by_recipe.setdefault(str(row["recipe"]), {}).setdefault(per_class, []).append(float(value))
    return {
        source: {
            recipe: {k: Cell(tuple(v)) for k, v in sorted(by_shots.items())}
            for recipe, by_shots in by_recipe.items()
        }
        for source, by_recipe in grouped.items()
    }


def best_recipe_table(
    series: Mapping[str, Mapping[str, Mapping[int, Cell]]], *, little: int, a_lot: int
) -> str:
    """The seeds' 2×2 table as markdown: per source (rows) and data size (columns: `little` and `a_lot`
    images per class), the recipe with the best mean and its accuracy, then the runner-up."""
    lines = [
        f"| source | very little data ({little}/class) | quite a lot of data ({a_lot}/class) |",
        "|---|---|---|",
    ]
    for source, by_recipe in series.items():
        cells = []
        for size in (little, a_lot):
            ranked = sorted(
                (
                    (cells_[size].mean, recipe)
                    for recipe, cells_ in by_recipe.items()
                    if size in cells_
                ),
                reverse=True,
            )
            if not ranked:
                cells.append("–")
                continue
            text = f"**{ranked[0][1]}** {100 * ranked[0][0]:.1f}%"
            if len(ranked) > 1:
                text += f" (then {ranked[1][1]} {100 * ranked[1][0]:.1f}%)"
            cells.append(text)
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_data_size(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    metric: str = "test_accuracy",
    title: str = "Which recipe for how much data",
) -> Path:
    """Accuracy vs labelled images per class (log axis), one line per recipe, one panel per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = data_size_series(rows, metric)
    if not series:
        raise ValueError(f"no finished run with a {metric!r} value to plot")
    figure, axes = plt.subplots(
        1, len(series), figsize=(5.5 * len(series), 4.2), sharey=True, squeeze=False
    )
    for axis, (source, by_recipe) in zip(axes[0], series.items(), strict=True):
        recipes = [r for r in RECIPE_ORDER if r in by_recipe] + sorted(
            r for r in by_recipe if r not in RECIPE_ORDER
        )
        for recipe in recipes:
            shots = list(by_recipe[recipe])
            means = [100 * by_recipe[recipe][k].mean for k in shots]
            axis.plot(shots, means, marker="o", lw=1.5, label=recipe)
            for k in shots:
                values = by_recipe[recipe][k].values
                axis.scatter([k] * len(values), [100 * v for v in values], s=8, alpha=0.4)
        axis.set_xscale("log")
        axis.set_title(f"source: {source}")
        axis.set_xlabel("labelled training images per class")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (%)")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
