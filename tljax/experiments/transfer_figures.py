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
