"""The seed lectures' transfer recipes as parameter-rule lists.

* `feature_extractor`: the pretrained backbone is frozen, only the new head trains.
* `finetune_top`: the last `trainable_stages` stages of `model.stages()` train (the head counts as one),
  everything below is frozen.
* `finetune_all`: everything trains; the backbone with `backbone_lr_mult` × the learning rate, or — with
  `layer_decay` in (0, 1) — layer-wise decay: stage at distance d below the head gets `layer_decay**d`.
* `scratch`: everything trains at the base learning rate (random init is the weights' business).
* `transfer` (Yosinski et al. 2014): the first `transfer_layers` layers of `model.layers()` were copied
  from a source network; they are frozen (`transfer_mode="frozen"`, AnB/BnB) or fine-tuned at
  `transfer_lr_mult` × the learning rate (`"finetune"`, AnB+/BnB+); the layers above train normally.

An explicit `optim.param_rules` in the config replaces the recipe's rules entirely.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tljax.errors import ConfigError

RECIPES = ("feature_extractor", "finetune_top", "finetune_all", "scratch", "transfer")
TRANSFER_MODES = ("frozen", "finetune")


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
    layers: Sequence[Sequence[str]] = (),
    transfer_layers: int = 0,
    transfer_mode: str = "frozen",
    transfer_lr_mult: float = 1.0,
) -> list[tuple[str, Any]]:
    """The `(regex, group)` rules of a recipe for a model with the given `stages()` (input → output);
    the transfer recipe reads `layers` (the model's `layers()`) instead."""
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
    if recipe == "transfer":
        copied = transfer_split(layers, transfer_layers)[0]
        if transfer_mode not in TRANSFER_MODES:
            raise ConfigError(
                f"transfer.mode={transfer_mode!r}: use 'frozen' (AnB/BnB) or 'finetune' (AnB+/BnB+)"
            )
        if transfer_mode == "finetune" and not transfer_lr_mult > 0:
            raise ConfigError(
                f"transfer.lr_mult={transfer_lr_mult}: fine-tuning needs a positive multiplier "
                "(transfer.mode='frozen' freezes the copied layers)"
            )
        group: Any = "frozen" if transfer_mode == "frozen" else {"lr_mult": float(transfer_lr_mult)}
        return [*((_stage_regex(layer), group) for layer in copied), (".*", {})]
    raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES} (or 'linear_probe')")


def transfer_split(
    layers: Sequence[Sequence[str]], n: int
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(layers 1..n, layers n+1..L) of a model's `layers()`; n must lie in 1..L."""
    units = [tuple(layer) for layer in layers]
    if not units:
        raise ConfigError("the transfer recipe needs the model's layers() (none given)")
    if not 1 <= int(n) <= len(units):
        raise ConfigError(
            f"transfer.layers={n}: the model has {len(units)} layers, so n must lie in "
            f"1..{len(units)} (n=0 is the scratch recipe); its layers are "
            + ", ".join("+".join(layer) for layer in units)
        )
    return units[: int(n)], units[int(n) :]


def transfer_skip(layers: Sequence[Sequence[str]], n: int) -> tuple[str, ...]:
    """Regexes (as `weights.load(skip=...)` takes them) of every variable above layer n: what a
    transfer re-initialises instead of copying."""
    return tuple(_stage_regex(layer) for layer in transfer_split(layers, n)[1])
