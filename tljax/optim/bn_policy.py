"""BatchNorm policy: which BN layers update their running statistics while training.

This is deliberately a separate switch from the parameter groups. Whether a BN layer's `scale`/`bias`
train (an optimizer question) and whether its running `mean`/`var` move (a forward-pass question) are
independent; conflating them is the classic Keras fine-tuning bug: a "frozen" backbone whose BN layers
still normalise with the statistics of small target batches drifts away from the features it was
pretrained to produce.

Rules are an ordered list of `(regex over "/"-joined BN module paths, "frozen" | "update")`, first full
match wins, every BN layer must match (e.g. `[("layer4_.*", "update"), (".*", "frozen")]`). Paths are
the BN modules' positions in the variable tree: `bn1`, `layer1_0/bn2`, `blocks_3/project_bn`.

**Default (`rules=None`): BN statistics follow the parameters.** A BN layer whose scale and bias are both
frozen keeps its statistics frozen (inference-mode BN, Keras `training=False`); a BN layer whose affine
parameters train also updates its statistics. So the feature-extractor recipe (frozen backbone) runs the
backbone exactly as it was pretrained, and fine-tuning updates the statistics of the layers it trains.

The result is the model field `frozen_bn`: a tuple of regexes (here: exact, escaped paths) that
`tljax.models` turns into per-layer `use_running_average=True`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from flax import traverse_util

from tljax.optim.param_groups import Assignment

FROZEN_STATS = "frozen"
UPDATE_STATS = "update"


def bn_module_paths(batch_stats: Any) -> list[str]:
    """Module paths of every BN layer (each owns `mean` and `var` in `batch_stats`), in tree order."""
    seen: dict[str, None] = {}
    for key in traverse_util.flatten_dict(dict(batch_stats or {})):
        seen["/".join(key[:-1])] = None
    return list(seen)


def resolve_bn_policy(
    bn_paths: Sequence[str],
    rules: Iterable[Sequence[str]] | None,
    assignment: Assignment | None = None,
) -> dict[str, str]:
    """Decides `"frozen"` or `"update"` for each BN path.

    With explicit `rules`, the first full match wins and an unmatched path is an error naming it. With
    `rules=None`, a layer's statistics are frozen exactly when all of its affine parameters are frozen in
    `assignment` (layers with no affine parameters update).
    """
    decisions: dict[str, str] = {}
    if rules is None:
        frozen_params = set(assignment.frozen_paths()) if assignment else set()
        all_params = set(assignment.groups) if assignment else set()
        for path in bn_paths:
            affine = [
                f"{path}/{leaf}" for leaf in ("scale", "bias") if f"{path}/{leaf}" in all_params
            ]
            frozen = bool(affine) and all(p in frozen_params for p in affine)
            decisions[path] = FROZEN_STATS if frozen else UPDATE_STATS
        return decisions
    compiled = []
    for index, item in enumerate(rules):
        if len(item) != 2 or item[1] not in (FROZEN_STATS, UPDATE_STATS):
            raise ValueError(f"BN rule #{index} {item!r}: expected (regex, 'frozen' | 'update')")
        compiled.append((re.compile(item[0]), item[1]))
    unmatched = []
    for path in bn_paths:
        for regex, decision in compiled:
            if regex.fullmatch(path):
                decisions[path] = decision
                break
        else:
            unmatched.append(path)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} BatchNorm layer(s) match no BN rule: {', '.join(unmatched[:20])}; "
            "add a catch-all such as ('.*', 'frozen') or ('.*', 'update')."
        )
    return decisions


def frozen_bn_field(decisions: dict[str, str]) -> tuple[str, ...]:
    """The model's `frozen_bn` regexes for a policy: `(".*",)` if every layer is frozen, else exact paths."""
    frozen = [p for p, d in decisions.items() if d == FROZEN_STATS]
    if frozen and len(frozen) == len(decisions):
        return (".*",)
    return tuple(re.escape(p) for p in frozen)


def bn_table(decisions: dict[str, str]) -> str:
    """One log line: how many BN layers keep frozen statistics and how many update them."""
    frozen = sum(d == FROZEN_STATS for d in decisions.values())
    return f"BatchNorm statistics: {frozen} layer(s) frozen, {len(decisions) - frozen} updating"
