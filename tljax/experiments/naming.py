"""Point names and workdirs: `n=3,mode=AnB,seed=1` from a point's (axis, label) pairs, and back, and
`ROOT/<sweep>/<phase>/<name>/`. A label is one path component with no separator a name, a shell or a
`{phase/labels}` reference needs, so names are readable, deterministic and safe as directory names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tljax.errors import ConfigError

LABEL = re.compile(r"^[A-Za-z0-9._+:@-]+$")
NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # sweep, phase and axis names


def format_label(value: Any) -> str:
    """The label of an axis value in a point's name: `0.001`, `10`, `True`, `resnet18`."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (int, str)):
        return str(value)
    raise ConfigError(
        f"axis value {value!r} has no short label: give the axis labels, e.g. "
        "spec.axis('mode', {'label': {'key': value}})"
    )


def checked_label(label: str) -> str:
    if not LABEL.match(label):
        raise ConfigError(
            f"axis label {label!r} cannot be part of a directory name: use letters, digits and "
            "'.', '_', '+', ':', '@', '-' (or give the axis explicit labels)"
        )
    return label


def point_name(labels: Iterable[tuple[str, str]]) -> str:
    """`n=3,mode=AnB,seed=1`; a phase without axes has the single point `default`."""
    return ",".join(f"{k}={v}" for k, v in labels) or "default"


def parse_name(text: str) -> dict[str, str]:
    """The inverse of `point_name`: `n=3,seed=1` → `{"n": "3", "seed": "1"}`."""
    if text in ("", "default"):
        return {}
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"point reference {text!r}: expected labels like n=3,seed=1")
        pairs[key] = value
    return pairs


def point_workdir(root: str | Path, sweep: str, phase: str, name: str) -> Path:
    """`ROOT/<sweep>/<phase>/<name>`, absolute (what `{phase/labels}` references resolve to)."""
    return Path(root).absolute() / sweep / phase / name
