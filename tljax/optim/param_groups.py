"""Regex parameter groups: which parameters train, with which learning-rate multiplier and weight decay.

A rule list is an ordered sequence of `(regex, group)` pairs over "/"-joined parameter paths such as
`layer4_1/conv2/kernel` or `classifier/bias`. The first rule whose regex *full-matches* a path decides its
group, and every parameter must match some rule (an unmatched parameter is an error that names it, so a
typo in a regex never silently trains — or silently freezes — part of the network). Groups:

* `"frozen"`: the parameter never changes. It gets no optimizer state, no weight decay, and no gradient is
  computed for it (the train step differentiates only the trainable subtree, see `split_params`).
* `{"lr_mult": x}`: trains with `x ×` the base learning rate (discriminative fine-tuning).
* `{"weight_decay": w}`: overrides the optimizer's default weight decay for these parameters.
* both keys at once, `{}` (plain defaults), or the string form `"lr_mult=0.1,weight_decay=0"`, which is
  handy on the command line.

Example (fine-tune with a 10× smaller backbone learning rate, no decay on biases):

    [(".*/bias", {"weight_decay": 0.0, "lr_mult": 0.1}),
     ("classifier/.*", {}),
     (".*", {"lr_mult": 0.1})]
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from tljax.typing import PyTree

FROZEN = "frozen"


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """How one group of parameters is optimised. `weight_decay=None` means "the optimizer's default"."""

    frozen: bool = False
    lr_mult: float = 1.0
    weight_decay: float | None = None

    @property
    def label(self) -> str:
        """A stable, readable name used as the optax `multi_transform` label."""
        if self.frozen:
            return FROZEN
        parts = [f"lr_mult={self.lr_mult:g}"]
        if self.weight_decay is not None:
            parts.append(f"weight_decay={self.weight_decay:g}")
        return ",".join(parts)


def parse_group(spec: Any) -> ParamGroup:
    """Reads a group given as `"frozen"`, a mapping, or a `"key=value,key=value"` string."""
    if isinstance(spec, ParamGroup):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text == FROZEN:
            return ParamGroup(frozen=True)
        mapping: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            if "=" not in item:
                raise ValueError(f"parameter group {spec!r}: expected 'frozen' or 'key=value,...'")
            key, value = (s.strip() for s in item.split("=", 1))
            mapping[key] = float(value)
        spec = mapping
    if isinstance(spec, Mapping) or hasattr(spec, "to_dict"):
        mapping = dict(spec.to_dict() if hasattr(spec, "to_dict") else spec)
        unknown = set(mapping) - {"lr_mult", "weight_decay"}
        if unknown:
            raise ValueError(
                f"parameter group {spec!r}: unknown key(s) {sorted(unknown)}; "
                "valid keys are 'lr_mult' and 'weight_decay' (or the string 'frozen')"
            )
        wd = mapping.get("weight_decay")
        return ParamGroup(
            lr_mult=float(mapping.get("lr_mult", 1.0)),
            weight_decay=None if wd is None else float(wd),
        )
    raise TypeError(f"cannot read parameter group {spec!r}: use 'frozen', a dict, or 'lr_mult=...'")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One compiled `(regex, group)` rule."""

    pattern: str
    group: ParamGroup

    @property
    def regex(self) -> re.Pattern:
        return re.compile(self.pattern)


def parse_rules(rules: Iterable[Sequence[Any]]) -> tuple[Rule, ...]:
    """Validates and compiles a rule list; a bad regex is reported with its position in the list."""
    compiled = []
    for index, item in enumerate(rules):
        if len(item) != 2:
            raise ValueError(f"rule #{index} {item!r}: expected a (regex, group) pair")
        pattern, group = item
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"rule #{index}: invalid regex {pattern!r}: {err}") from err
        compiled.append(Rule(str(pattern), parse_group(group)))
    if not compiled:
        raise ValueError(
            "empty parameter rule list: every parameter must match some rule (add ('.*', {}))"
        )
    return tuple(compiled)


def flat_paths(tree: PyTree) -> dict[str, Any]:
    """`{"a/b/kernel": leaf}` for a nested dict of parameters, in the tree's own order."""
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


@dataclasses.dataclass(frozen=True)
class Assignment:
    """The result of matching rules against a parameter tree.

    `groups` maps every parameter path to its `ParamGroup`; `rule_of` to the index of the rule that
    matched; `sizes` to its number of scalars.
    """

    rules: tuple[Rule, ...]
    groups: dict[str, ParamGroup]
    rule_of: dict[str, int]
    sizes: dict[str, int]

    def trainable_paths(self) -> list[str]:
        return [p for p, g in self.groups.items() if not g.frozen]

    def frozen_paths(self) -> list[str]:
        return [p for p, g in self.groups.items() if g.frozen]

    def num_trainable(self) -> int:
        return sum(self.sizes[p] for p in self.trainable_paths())

    def num_frozen(self) -> int:
        return sum(self.sizes[p] for p in self.frozen_paths())

    def labels(self, params: PyTree) -> PyTree:
        """A tree like `params` holding each leaf's group label (for `optax.multi_transform`)."""
        flat = {tuple(p.split("/")): self.groups[p].label for p in self.groups}
        del params  # the structure is taken from the paths, which came from these params
        return traverse_util.unflatten_dict(flat)

    def table(self) -> str:
        """Rule → tensors and parameters matched, then the trainable/frozen totals (for the log)."""
        rows = [("#", "rule (regex)", "group", "tensors", "params")]
        for index, rule in enumerate(self.rules):
            paths = [p for p, r in self.rule_of.items() if r == index]
            rows.append(
                (
                    str(index),
                    rule.pattern,
                    rule.group.label,
                    str(len(paths)),
                    f"{sum(self.sizes[p] for p in paths):,}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 3 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        total = self.num_trainable() + self.num_frozen()
        lines.append(
            f"trainable {self.num_trainable():,} / frozen {self.num_frozen():,} / total {total:,} parameters"
        )
        return "\n".join(lines)


def first_match(paths: Iterable[str], patterns: Sequence[str]) -> dict[str, int | None]:
    """`{path: index of the first pattern that full-matches it, or None}`: the matching rule of every
    rule list in tljax (parameter groups here, sharding rules in `tljax.parallel`)."""
    compiled = [re.compile(pattern) for pattern in patterns]
    return {
        path: next((i for i, regex in enumerate(compiled) if regex.fullmatch(path)), None)
        for path in paths
    }


def assign_groups(params: PyTree, rules: Iterable[Sequence[Any]] | Sequence[Rule]) -> Assignment:
    """Matches every parameter path against `rules` (first full match wins).

    Raises ValueError naming every unmatched path, so a rule list that forgets part of the model fails
    before training rather than silently doing something else. `params` may hold arrays or
    `jax.ShapeDtypeStruct`s (from `jax.eval_shape`).
    """
    given: tuple[Any, ...] = tuple(rules)  # parsed `Rule`s, or (regex, group) pairs to parse
    parsed = given if given and all(isinstance(r, Rule) for r in given) else parse_rules(given)
    flat = flat_paths(params)
    matched = first_match(flat, [rule.pattern for rule in parsed])
    groups: dict[str, ParamGroup] = {}
    rule_of: dict[str, int] = {}
    sizes: dict[str, int] = {}
    unmatched: list[str] = []
    for path, leaf in flat.items():
        sizes[path] = int(np.prod(leaf.shape))
        index = matched[path]
        if index is None:
            unmatched.append(path)
        else:
            groups[path], rule_of[path] = parsed[index].group, index
    if unmatched:
        shown = ", ".join(unmatched[:20]) + (
            f", … ({len(unmatched)} in all)" if len(unmatched) > 20 else ""
        )
        raise ValueError(
            f"{len(unmatched)} parameter(s) match no rule: {shown}. Every parameter must match a rule; "
            "add a catch-all such as ('.*', 'frozen') or ('.*', {}) at the end of the list."
        )
    return Assignment(parsed, groups, rule_of, sizes)


def split_params(params: PyTree, trainable: Iterable[str]) -> tuple[PyTree, PyTree]:
    """Splits a nested parameter dict into (trainable, frozen) nested dicts by path.

    The train step differentiates with respect to the first tree only, so JAX never builds the backward
    pass of a frozen backbone; `merge_params` puts the two back together for the forward pass.
    """
    trainable = set(trainable)
    flat = traverse_util.flatten_dict(dict(params))
    train_flat = {k: v for k, v in flat.items() if "/".join(k) in trainable}
    frozen_flat = {k: v for k, v in flat.items() if "/".join(k) not in trainable}
    return traverse_util.unflatten_dict(train_flat), traverse_util.unflatten_dict(frozen_flat)


def merge_params(*trees: PyTree) -> PyTree:
    """Inverse of `split_params`: the union of disjoint nested dicts."""
    flat: dict = {}
    for tree in trees:
        for key, value in traverse_util.flatten_dict(dict(tree)).items():
            if key in flat:
                raise ValueError(f"parameter {'/'.join(key)} present in two trees being merged")
            flat[key] = value
    return traverse_util.unflatten_dict(flat)
