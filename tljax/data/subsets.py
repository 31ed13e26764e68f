"""Seeded, class-stratified subsets: few-shot training sets and validation/test carved from train.

Every function orders each class's members by a permutation that depends only on (seed, purpose, class),
then takes a prefix. Hence the same seed gives the same subset, and a larger N gives a superset of a
smaller one (10-shot ⊂ 100-shot), which makes few-shot results comparable across N.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Distinct streams for distinct purposes, so carving validation does not correlate with few-shot picks.
SALT_TEST = 1
SALT_VAL = 2
SALT_FEW_SHOT = 3
SALT_SUBSAMPLE = 4


def _class_orders(
    labels: np.ndarray, indices: np.ndarray, seed: int, salt: int
) -> dict[int, np.ndarray]:
    """Per class: its members among `indices`, in a seeded order that ignores how many will be taken."""
    orders = {}
    member_labels = labels[indices]
    for label in np.unique(member_labels):
        members = np.sort(indices[member_labels == label])
        rng = np.random.default_rng([seed, salt, int(label)])
        orders[int(label)] = members[rng.permutation(len(members))]
    return orders


def take_per_class(
    labels: np.ndarray,
    indices: np.ndarray,
    per_class: int,
    seed: int,
    salt: int,
    *,
    class_names: Sequence[str] | None = None,
    what: str = "subset",
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (taken: exactly `per_class` of every class, rest), both sorted.

    Raises ValueError naming the class when one has fewer than `per_class` members: a silently
    unbalanced few-shot set would make results incomparable.
    """
    if per_class < 1:
        raise ValueError(f"{what}: per-class count must be >= 1, got {per_class}")
    taken, rest = [], []
    for label, order in _class_orders(labels, indices, seed, salt).items():
        if len(order) < per_class:
            name = class_names[label] if class_names is not None else str(label)
            raise ValueError(
                f"{what}: class {name!r} has {len(order)} examples, fewer than the {per_class} asked for"
            )
        taken.append(order[:per_class])
        rest.append(order[per_class:])
    return _sorted_concat(taken), _sorted_concat(rest)


def take_fraction(
    labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int, salt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (taken ≈ `fraction` of every class, rest), stratified and seeded.

    Each class gives round(fraction · n) but at least one example (when fraction > 0 and the class has
    two or more) and never its last one, so no class vanishes from either side.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    taken, rest = [], []
    for order in _class_orders(labels, indices, seed, salt).values():
        count = int(round(fraction * len(order)))
        if fraction > 0 and len(order) >= 2:
            count = max(count, 1)
        count = min(count, len(order) - 1)
        taken.append(order[:count])
        rest.append(order[count:])
    return _sorted_concat(taken), _sorted_concat(rest)


def _sorted_concat(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0,), dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)
