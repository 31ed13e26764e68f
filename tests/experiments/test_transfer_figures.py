"""The Fig.-2 summary and plot on synthetic sweep rows with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tljax.experiments.transfer_figures import (
    best_recipe_table,
    data_size_series,
    fig2_summary,
    plot_data_size,
    plot_fig2,
)


def synthetic_rows(seeds: int = 3) -> list[dict]:
    """baseB ≈ 0.80; BnB dips at n=3, AnB falls with n, the '+' modes sit at or above baseB."""
    rng = np.random.default_rng(0)
    rows = [
        {"mode": "baseB", "n": 0, "test_accuracy": 0.80 + 0.01 * rng.standard_normal()}
        for _ in range(seeds)
    ]
    shape = {
        "BnB": lambda n: 0.80 - (0.05 if n == 3 else 0.0),
        "BnB+": lambda n: 0.80,
        "AnB": lambda n: 0.80 - 0.02 * n,
        "AnB+": lambda n: 0.82,
    }
    for mode, mean in shape.items():
        for n in range(1, 8):
            for seed in range(seeds):
                rows.append(
                    {
                        "mode": mode,
                        "n": n,
                        "seed": seed,
                        "test_accuracy": mean(n) + 0.01 * rng.standard_normal(),
                    }
                )
    return rows


def test_summary_matches_numpy_and_skips_unfinished_rows():
    rows = synthetic_rows()
    rows.append({"mode": "AnB", "n": 7, "test_accuracy": None})  # a failed point
    rows.append({"mode": "baseA", "n": 0, "test_accuracy": 0.99})  # not on B: not plotted
    summary = fig2_summary(rows)
    base = [r["test_accuracy"] for r in rows if r["mode"] == "baseB"]
    assert summary.base.mean == pytest.approx(np.mean(base))
    anb7 = [r["test_accuracy"] for r in rows[:-2] if r["mode"] == "AnB" and r["n"] == 7]
    assert len(summary.cells["AnB"][7].values) == 3
    assert summary.cells["AnB"][7].std == pytest.approx(np.std(anb7, ddof=1))
    assert summary.difference("AnB", 7) == pytest.approx(np.mean(anb7) - np.mean(base))
    assert summary.difference("AnB", 7) < -0.1 < summary.difference("AnB", 1)
    table = summary.markdown()
    assert table.splitlines()[2] == "| n | BnB | BnB+ | AnB | AnB+ |"
    assert "| 7 | " in table and "±" in table


def test_plot_writes_a_two_panel_png(tmp_path):
    path = plot_fig2(synthetic_rows(), tmp_path / "figures" / "fig2.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 960)
        pixels = np.asarray(image.convert("RGB"))
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 100  # the AnB series was drawn


def test_nothing_to_compare_with_is_a_clear_error():
    rows = [r for r in synthetic_rows() if r["mode"] != "baseB"]
    with pytest.raises(ValueError, match="no finished baseB run"):
        fig2_summary(rows)
    with pytest.raises(ValueError, match="no finished transfer run"):
        fig2_summary([{"mode": "baseB", "test_accuracy": 0.8}])


def _data_size_rows() -> list[dict]:
    """Known answer: similar source → feature_extractor wins with little data; finetune_all with a lot."""
    accuracy = {
        ("similar", "feature_extractor"): {10: 0.80, "all": 0.88},
        ("similar", "finetune_all"): {10: 0.70, "all": 0.93},
        ("different", "linear_probe"): {10: 0.65, "all": 0.85},
        ("different", "scratch"): {10: 0.40, "all": 0.90},
    }
    rows = []
    for (source, recipe), by_shots in accuracy.items():
        for shots, value in by_shots.items():
            for seed in range(2):
                rows.append(
                    {
                        "source": source,
                        "recipe": recipe,
                        "shots": str(shots),
                        "train_per_class_all": 6000,
                        "test_accuracy": value + 0.01 * seed,
                    }
                )
    rows.append(
        {
            "source": "similar",
            "recipe": "scratch",
            "shots": "10",
            "train_per_class_all": 6000,
            "test_accuracy": None,
        }
    )
    return rows


def test_data_size_series_and_the_two_by_two_table(tmp_path):
    series = data_size_series(_data_size_rows())
    cell = series["similar"]["finetune_all"][6000]
    assert cell.values == pytest.approx((0.93, 0.94)) and cell.mean == pytest.approx(0.935)
    assert "scratch" not in series["similar"]  # the unfinished run is left out
    table = best_recipe_table(series, little=10, a_lot=6000).splitlines()
    assert table[2].startswith("| similar | **feature_extractor** 80.5% (then finetune_all 70.5%)")
    assert "**finetune_all** 93.5%" in table[2]
    assert table[3].startswith("| different | **linear_probe** 65.5%")
    assert "**scratch** 90.5%" in table[3]
    path = plot_data_size(_data_size_rows(), tmp_path / "data_size.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1320, 504)
