"""The augmentation × robustness table: paired relative mCE, mean ± std over seeds, the score cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tljax import corruption_eval, robustness_table

NAMES = ("gaussian_noise", "contrast")


def _result(clean: float, corrupted: dict[str, list[float]]) -> dict:
    accuracies = {
        n: {str(s + 1): v for s, v in enumerate(values)} for n, values in corrupted.items()
    }
    mean = float(np.mean([v for values in corrupted.values() for v in values]))
    one = {"clean_accuracy": clean, "corruption_accuracy": mean, "accuracies": accuracies}
    return {"none": one, "adabn": {**one, "corruption_accuracy": mean + 0.01}}


def _row(augment: str, seed: int, clean: float, corrupted: dict[str, list[float]]) -> dict:
    return {
        "recipe": "scratch",
        "augment": augment,
        "seed": str(seed),
        "status": "done",
        "test_accuracy": clean,
        "robustness": _result(clean, corrupted),
    }


def test_relative_mce_is_paired_by_seed_and_averaged_over_seeds():
    base = {
        0: (0.8, {"gaussian_noise": [0.6, 0.4], "contrast": [0.7, 0.5]}),
        1: (0.7, {"gaussian_noise": [0.5, 0.3], "contrast": [0.6, 0.6]}),
    }
    model = {
        0: (0.82, {"gaussian_noise": [0.7, 0.6], "contrast": [0.7, 0.6]}),
        1: (0.75, {"gaussian_noise": [0.6, 0.5], "contrast": [0.7, 0.5]}),
    }
    rows = [_row("none", s, *base[s]) for s in base] + [_row("augmix", s, *model[s]) for s in model]
    summary = {g["augment"]: g for g in robustness_table.summarize(rows)}
    expected, mce = [], []
    for seed in (0, 1):
        (bc, bacc), (mc, macc) = base[seed], model[seed]
        # Hendrycks & Dietterich: per corruption, the model's summed error increase over its clean
        # error, divided by the baseline's; then the mean over corruptions.
        ratios = [
            sum((1 - a) - (1 - mc) for a in macc[n]) / sum((1 - a) - (1 - bc) for a in bacc[n])
            for n in NAMES
        ]
        expected.append(np.mean(ratios))
        mce.append(
            np.mean([sum(1 - a for a in macc[n]) / sum(1 - a for a in bacc[n]) for n in NAMES])
        )
    got = summary["augmix"]["relative_mce"]
    np.testing.assert_allclose(got["values"], expected, rtol=1e-12)
    assert got["mean"] == pytest.approx(np.mean(expected))
    assert got["std"] == pytest.approx(np.std(expected, ddof=1))
    np.testing.assert_allclose(summary["augmix"]["mce"]["values"], mce, rtol=1e-12)
    np.testing.assert_allclose(summary["none"]["relative_mce"]["values"], [1.0, 1.0])
    assert summary["augmix"]["n"] == 2
    assert summary["augmix"]["none_clean"]["values"] == [0.82, 0.75]
    table = robustness_table.markdown(list(summary.values()))
    assert "| scratch | augmix | 2 | 78.5 ± 4.9 |" in table
    assert table.count("—") == 4  # no TENT results: its two columns, in both rows


def test_score_is_cached_per_settings(tmp_path, monkeypatch):
    calls = []

    def fake_evaluate_run(workdir, **kwargs):
        calls.append(kwargs)
        return {"examples": 10, "none": {"clean_accuracy": 0.5}}

    monkeypatch.setattr(corruption_eval, "evaluate_run", fake_evaluate_run)
    settings = robustness_table.Settings(test_per_class=5, severities=(1, 3))
    first = robustness_table.score(tmp_path, settings)
    again = robustness_table.score(tmp_path, settings)
    assert len(calls) == 1 and first == again
    assert calls[0]["test_per_class"] == 5 and calls[0]["severities"] == (1, 3)
    cached = json.loads((tmp_path / robustness_table.RESULTS_FILE).read_text())
    assert cached["settings"]["severities"] == [1, 3]
    robustness_table.score(tmp_path, robustness_table.Settings(test_per_class=6))
    assert len(calls) == 2


def test_augment_table_sweep_points_build_valid_configs(tmp_path):
    from tljax.experiments import spec

    sweep_file = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "augment_table.py"
    policy = Path(__file__).resolve().parents[1] / "configs" / "policies"
    policy = next(policy.glob("*.json"))
    sweep, _ = spec.load(f"{sweep_file}:policy={policy}")
    points = spec.expand(sweep)
    assert len(points) == 2 * 7 * 3  # recipes × augmentations × seeds
    spec.validate(sweep, points, tmp_path)  # every point's config builds
    by_id = {p.id: p for p in points}
    searched = spec.point_config(
        sweep, by_id["table/recipe=scratch,augment=searched,seed=2"], points, tmp_path
    )
    assert searched.data.augment.example_ops == ("hflip", "searched_policy")
    assert searched.recipe == "scratch" and searched.weights.name is None and searched.seed == 2
    none = spec.point_config(
        sweep, by_id["table/recipe=finetune_top,augment=none,seed=0"], points, tmp_path
    )
    assert none.data.augment.enabled is False and none.optim.trainable_stages == 3
    without_policy, _ = spec.load(str(sweep_file))
    assert len(spec.expand(without_policy)) == 2 * 6 * 3
    with pytest.raises(ValueError, match="policy=FILE and/or quick"):
        spec.load(f"{sweep_file}:polcy=x.json")
