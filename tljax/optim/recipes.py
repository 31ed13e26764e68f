"""The seed lectures' transfer recipes as parameter-rule lists.

* `feature_extractor`: the pretrained backbone is frozen, only the new head trains.
* `finetune_top`: the last `trainable_stages` stages of `model.stages()` train (the head counts as one),
  everything below is frozen.
* `finetune_all`: everything trains; the backbone with `backbone_lr_mult` × the learning rate, or — with
  `layer_decay` in (0, 1) — layer-wise decay: stage at distance d below the head gets `layer_decay**d`.
* `scratch`: everything trains at the base learning rate (random init is the weights' business).

An explicit `optim.param_rules` in the config replaces the recipe's rules entirely.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

RECIPES = ("feature_extractor", "finetune_top", "finetune_all", "scratch")


def _stage_regex(stage: Sequence[str]) -> str:
    """Every parameter under any of the stage's top-level modules."""
    return "(" + "|".join(re.escape(name) for name in stage) + ")/.*"


def recipe_rules(
    recipe: str,
    stages: Sequence[Sequence[str]],
    *,
    trainable_stages: int = 1,
    backbone_lr_mult: float = 0.1,
    layer_decay: float = 0.0,
) -> list[tuple[str, Any]]:
    """The `(regex, group)` rules of a recipe for a model with the given `stages()` (input → output)."""
    stages = [tuple(s) for s in stages]
    head = stages[-1]
    if recipe == "feature_extractor":
        return [(_stage_regex(head), {}), (".*", "frozen")]
    if recipe == "finetune_top":
        if not 1 <= trainable_stages <= len(stages):
            raise ValueError(
                f"trainable_stages={trainable_stages}: the model has {len(stages)} stages {stages}"
            )
        rules: list[tuple[str, Any]] = [(_stage_regex(s), {}) for s in stages[-trainable_stages:]]
        return [*rules, (".*", "frozen")]
    if recipe == "finetune_all":
        if layer_decay:
            if not 0.0 < layer_decay <= 1.0:
                raise ValueError(f"layer_decay={layer_decay} must lie in (0, 1]")
            n = len(stages)
            return [
                (_stage_regex(s), {"lr_mult": layer_decay ** (n - 1 - i)})
                for i, s in enumerate(stages)
            ]
        return [(_stage_regex(head), {}), (".*", {"lr_mult": backbone_lr_mult})]
    if recipe == "scratch":
        return [(".*", {})]
    raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES} (or 'linear_probe')")
