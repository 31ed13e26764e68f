"""Class subsets: `data.classes` keeps some classes of a dataset and relabels them 0..k-1.

Forms of `data.classes` (None or empty keeps every class):
  * a list of names or indices, `("Trouser", "Bag")` or `(1, 8)`, or the same as one comma-separated
    string, `"Trouser,Bag"`; the new label of a class is its position in the list;
  * `"half:A"` / `"half:B"`: a random half of the classes drawn with `data.class_seed` (A gets the
    extra class when the count is odd); both halves keep the dataset's class order. The same seed gives
    the same halves on every machine (NumPy's PCG64 stream), and A and B never overlap.

Train, val and test all follow: every split keeps only the chosen classes, and its labels become the new
ones, so few-shot picks, carved validation sets, results and plots all see a k-class dataset whose
`class_names` are the chosen names in label order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from tljax.errors import ConfigError

HALF_PREFIX = "half:"


def half_split(num_classes: int, seed: int) -> tuple[list[int], list[int]]:
    """(A, B): a seeded random split of class indices 0..num_classes-1 into halves, each sorted."""
    if num_classes < 2:
        raise ConfigError(
            f"data.classes='half:…' needs at least 2 classes, the data has {num_classes}"
        )
    order = np.random.default_rng([int(seed), 0x48414C46]).permutation(num_classes)  # "HALF"
    size_a = (num_classes + 1) // 2
    return sorted(int(i) for i in order[:size_a]), sorted(int(i) for i in order[size_a:])


def _parse_item(item: Any, class_names: Sequence[str]) -> int:
    if isinstance(item, int | np.integer) and not isinstance(item, bool):
        if not 0 <= int(item) < len(class_names):
            raise ConfigError(
                f"data.classes: class index {int(item)} is out of range 0..{len(class_names) - 1}; "
                f"the classes are: {_listing(class_names)}"
            )
        return int(item)
    text = str(item).strip()
    if text in class_names:
        return list(class_names).index(text)
    if text.isdigit():
        return _parse_item(int(text), class_names)
    raise ConfigError(
        f"data.classes: unknown class {text!r}; valid names (or indices 0..{len(class_names) - 1}) "
        f"are: {_listing(class_names)}"
    )


def _listing(class_names: Sequence[str]) -> str:
    return ", ".join(f"{i}={name!r}" for i, name in enumerate(class_names))


def resolve_classes(selection: Any, class_names: Sequence[str], seed: int = 0) -> list[int]:
    """The original indices of the selected classes, in new-label order (see the module docstring).

    Raises `ConfigError` naming the problem (an unknown name lists the valid ones) for unknown names,
    out-of-range indices, duplicates, an empty selection or an unknown `half:` side.
    """
    if selection is None:
        return list(range(len(class_names)))
    if isinstance(selection, str):
        text = selection.strip()
        if text.startswith(HALF_PREFIX):
            side = text[len(HALF_PREFIX) :].strip().upper()
            if side not in ("A", "B"):
                raise ConfigError(
                    f"data.classes={selection!r}: the half must be 'half:A' or 'half:B' "
                    "(the split is drawn with data.class_seed)"
                )
            half_a, half_b = half_split(len(class_names), seed)
            return half_a if side == "A" else half_b
        items: Sequence[Any] = [part for part in text.split(",") if part.strip()]
    else:
        items = list(selection)
    chosen = [_parse_item(item, class_names) for item in items]
    if not chosen:
        raise ConfigError(
            f"data.classes={selection!r} selects no class; the classes are: {_listing(class_names)}"
        )
    duplicates = sorted({class_names[i] for i in chosen if chosen.count(i) > 1})
    if duplicates:
        raise ConfigError(f"data.classes lists {duplicates} more than once")
    return chosen


class RelabeledSource:
    """A source seen through a class subset: labels mapped old → new, -1 for classes left out.

    Only indices of kept classes should be asked for; `load` returns the new label.
    """

    def __init__(self, source: Any, kept: Sequence[int], num_classes: int):
        self.source = source
        self.in_memory = source.in_memory
        mapping = np.full(max(num_classes, int(source.labels.max(initial=-1)) + 1), -1, np.int32)
        mapping[np.asarray(kept, np.int64)] = np.arange(len(kept), dtype=np.int32)
        self._mapping = mapping
        self._labels = mapping[source.labels]

    def __len__(self) -> int:
        return len(self.source)

    @property
    def labels(self) -> np.ndarray:
        """`int32 [N]`: the new label of every example of the wrapped source (-1 = left out)."""
        return self._labels

    def load(self, index: int, draft_size: int | None) -> tuple[Image.Image, int]:
        image, label = self.source.load(index, draft_size)
        return image, int(self._mapping[label])

    def describe(self, index: int) -> str:
        return self.source.describe(index)


def select_classes(
    sources: dict[str, Any],
    indices: dict[str, np.ndarray],
    class_names: Sequence[str],
    selection: Any,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """Every split restricted to the selected classes and relabelled 0..k-1: (sources, indices, names).

    Splits that share a source object (validation carved from train) keep sharing one wrapped source.
    """
    if selection is None or (not isinstance(selection, str) and len(selection) == 0):
        return sources, indices, list(class_names)
    kept = resolve_classes(selection, class_names, seed)
    wrapped: dict[int, RelabeledSource] = {}
    new_sources, new_indices = {}, {}
    for split, source in sources.items():
        if id(source) not in wrapped:
            wrapped[id(source)] = RelabeledSource(source, kept, len(class_names))
        new_sources[split] = wrapped[id(source)]
        split_indices = np.asarray(indices[split], np.int64)
        new_indices[split] = split_indices[new_sources[split].labels[split_indices] >= 0]
    return new_sources, new_indices, [class_names[i] for i in kept]
