"""Class names of the datasets the registered weights were trained on (vendored in third_party/)."""

from __future__ import annotations

import functools
from pathlib import Path

THIRD_PARTY = Path(__file__).resolve().parents[2] / "third_party"


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (torchvision's list, BSD-3)."""
    path = THIRD_PARTY / "imagenet" / "classes.txt"
    names = tuple(path.read_text().splitlines())
    if len(names) != 1000:
        raise RuntimeError(f"{path} should hold 1000 class names, found {len(names)}")
    return names
