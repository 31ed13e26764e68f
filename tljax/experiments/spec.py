r"""A sweep: one locked base config, and phases of points built from product / zip / seed axes.

    from tljax.experiments import spec

    def get_sweep(arg=None):
        base = ...  # a locked ml_collections config, as a `configs/*.py` returns it
        grid = spec.product(spec.axis("optim.lr", [0.1, 0.01], name="lr"), spec.seeds(3))
        return spec.Sweep(
            name="lr_grid",
            base=base,
            phases=[
                spec.Phase("base", grid),
                spec.Phase(
                    "transfer",
                    spec.product(spec.axis("data.shots", [10, 100]), spec.seeds(3)),
                    depends_on=("base",),
                    overrides={"weights.name": "run:{base/lr=0.1,seed=$seed}"},
                ),
            ],
        )

An axis sets config keys to values, exactly like `--config.key=value` on the command line (the base is
locked, so an unknown key is an error naming the point); each value has a short label, and a point's
labels make its readable, deterministic name (`lr=0.1,seed=2`). A "mode" axis sets several keys per
label: `spec.axis("mode", {"AnB": {...}, "AnB+": {...}})`. `product` is the cartesian product of axes,
`zip_axes` pairs equally long axes element-wise, `seeds(n)` is the `seed` axis 0..n-1.

An override value may name another point's workdir: `{phase/labels}` is replaced by that point's
workdir path (labels `key=value,...`, any subset that picks exactly one point of `phase`), after `$axis`
has been replaced by this point's label on that axis. With `run:` in front it is the transfer helper's
weight source `weights.name=run:DIR`. A phase that names another in its overrides must list it in
`depends_on`; the runner starts a phase only after every point of its dependencies has finished.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from tljax.errors import ConfigError, UserError
from tljax.experiments import naming

# `{phase/labels}` in an override value: a reference to another point's workdir.
REFERENCE = re.compile(r"\{([A-Za-z0-9._-]+)/([^{}]*)\}")
_AXIS_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclasses.dataclass(frozen=True)
class Combo:
    """One point's share of the axes: its (axis name, label) pairs and the config overrides they set."""

    labels: tuple[tuple[str, str], ...]
    overrides: tuple[tuple[str, Any], ...]

    def merged(self, other: Combo) -> Combo:
        names = {name for name, _ in self.labels}
        for name, _ in other.labels:
            if name in names:
                raise ConfigError(f"axis {name!r} appears twice in one product/zip: rename one")
        return Combo(self.labels + other.labels, self.overrides + other.overrides)


@dataclasses.dataclass(frozen=True)
class Points:
    """An ordered list of combos; axes, products and zips are all `Points`."""

    combos: tuple[Combo, ...]
    seed_axes: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.combos)


def axis(
    key_or_name: str,
    values: Sequence[Any] | Mapping[str, Mapping[str, Any]],
    *,
    name: str | None = None,
) -> Points:
    """One axis: `axis("optim.lr", [0.1, 0.01], name="lr")` sets `optim.lr` (label name = the last key
    component unless `name` is given); `axis("mode", {"AnB": {"k1": v1, "k2": v2}, ...})` sets
    several keys per label."""
    if isinstance(values, Mapping):
        axis_name = name or key_or_name
        combos = tuple(
            Combo(((axis_name, naming.checked_label(label)),), tuple(dict(overrides).items()))
            for label, overrides in values.items()
        )
    else:
        if isinstance(values, (str, bytes)):
            raise ConfigError(
                f"axis {key_or_name!r}: values must be a list, not the string {values!r}"
            )
        axis_name = name or key_or_name.rsplit(".", 1)[-1]
        combos = tuple(
            Combo(((axis_name, naming.checked_label(naming.format_label(v))),), ((key_or_name, v),))
            for v in values
        )
    if not naming.NAME.match(axis_name):
        raise ConfigError(f"axis name {axis_name!r}: use letters, digits, '.', '_' or '-'")
    if not combos:
        raise ConfigError(f"axis {axis_name!r} has no values")
    return Points(combos)


def seeds(count_or_values: int | Sequence[int], key: str = "seed") -> Points:
    """The seed axis (`seed=0..n-1`, or the given seeds): the report averages over it."""
    values = (
        list(range(count_or_values)) if isinstance(count_or_values, int) else list(count_or_values)
    )
    points = axis(key, values, name="seed")
    return dataclasses.replace(points, seed_axes=frozenset({"seed"}))


def product(*groups: Points) -> Points:
    """The cartesian product, the first group varying slowest (like `itertools.product`)."""
    if not groups:
        return Points((Combo((), ()),))
    combos = []
    for parts in itertools.product(*(g.combos for g in groups)):
        combo = Combo((), ())
        for part in parts:
            combo = combo.merged(part)
        combos.append(combo)
    return Points(tuple(combos), frozenset().union(*(g.seed_axes for g in groups)))


def zip_axes(*groups: Points) -> Points:
    """Pairs equally long groups element-wise (`zip`): `zip_axes(axis("a", [1, 2]), axis("b", [3, 4]))`
    is the two points a=1,b=3 and a=2,b=4."""
    lengths = {len(g) for g in groups}
    if len(lengths) > 1:
        raise ConfigError(f"zip_axes of groups of different lengths {[len(g) for g in groups]}")
    combos = []
    for parts in zip(*(g.combos for g in groups)):
        combo = Combo((), ())
        for part in parts:
            combo = combo.merged(part)
        combos.append(combo)
    return Points(tuple(combos), frozenset().union(*(g.seed_axes for g in groups)))


@dataclasses.dataclass(frozen=True)
class Phase:
    """A group of points that can run in parallel once every phase in `depends_on` has finished.

    `overrides` apply to every point of the phase before its axes' overrides (see the module docstring
    for `{phase/labels}` references and `$axis` variables in their values).
    """

    name: str
    points: Points
    depends_on: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A named sweep: base config, phases in order, the metric the progress lines and report lead with,
    and an optional `plot(rows, out_dir) -> [paths]` hook the report calls with the results rows."""

    name: str
    base: ml_collections.ConfigDict
    phases: Sequence[Phase]
    metric: str = "test_accuracy"
    plot: Callable[[list[dict[str, Any]], Path], Sequence[Path]] | None = None


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of the sweep: its phase, readable name, labels and the overrides of its config."""

    phase: str
    name: str
    labels: tuple[tuple[str, str], ...]
    overrides: tuple[tuple[str, Any], ...]
    seed_axes: frozenset[str]

    @property
    def id(self) -> str:
        """`phase/name`, unique within the sweep (what `--only` matches)."""
        return f"{self.phase}/{self.name}"

    def workdir(self, root: str | Path, sweep: str) -> Path:
        """`ROOT/<sweep>/<phase>/<name>`, absolute."""
        return naming.point_workdir(root, sweep, self.phase, self.name)


def expand(sweep: Sweep) -> list[Point]:
    """All points of the sweep in phase order; raises `ConfigError` for malformed phases, an unknown or
    cyclic dependency, or two points with the same name (before anything runs)."""
    if not naming.NAME.match(sweep.name):
        raise ConfigError(f"sweep name {sweep.name!r}: use letters, digits, '.', '_' or '-'")
    if not isinstance(sweep.base, ml_collections.ConfigDict):
        raise ConfigError(f"sweep {sweep.name!r}: base must be an ml_collections.ConfigDict")
    names = [p.name for p in sweep.phases]
    if not names:
        raise ConfigError(f"sweep {sweep.name!r} has no phases")
    seen: set[str] = set()
    points: list[Point] = []
    for phase in sweep.phases:
        if not naming.NAME.match(phase.name):
            raise ConfigError(f"phase name {phase.name!r}: use letters, digits, '.', '_' or '-'")
        if phase.name in seen:
            raise ConfigError(f"sweep {sweep.name!r}: two phases named {phase.name!r}")
        for dependency in phase.depends_on:
            if dependency not in names:
                raise ConfigError(
                    f"phase {phase.name!r} depends on {dependency!r}, which is not a phase of sweep "
                    f"{sweep.name!r} (phases: {', '.join(names)})"
                )
            if dependency not in seen:
                raise ConfigError(
                    f"phase {phase.name!r} depends on {dependency!r}, which comes later: list phases "
                    "after the phases they depend on"
                )
        seen.add(phase.name)
        by_name: dict[str, Combo] = {}
        for combo in phase.points.combos:
            name = naming.point_name(combo.labels)
            if name in by_name:
                raise ConfigError(
                    f"duplicate point {phase.name}/{name} in sweep {sweep.name!r}: two combinations "
                    "of the axes give the same labels (repeated axis values?)"
                )
            by_name[name] = combo
            overrides = tuple(phase.overrides.items()) + combo.overrides
            points.append(Point(phase.name, name, combo.labels, overrides, phase.points.seed_axes))
    return points


def select(points: Sequence[Point], only: str | None) -> list[Point]:
    """The points whose `phase/name` matches the regex `only` (searched, like `pytest -k`)."""
    if not only:
        return list(points)
    try:
        pattern = re.compile(only)
    except re.error as error:
        raise UserError(f"--only={only!r} is not a valid regex: {error}") from None
    chosen = [p for p in points if pattern.search(p.id)]
    if not chosen:
        raise UserError(f"--only={only!r} matches no point (ids look like {points[0].id!r})")
    return chosen


def find(points: Sequence[Point], phase: str, labels: Mapping[str, str]) -> Point:
    """The single point of `phase` whose labels include `labels`."""
    matches = [
        p
        for p in points
        if p.phase == phase and all(dict(p.labels).get(k) == v for k, v in labels.items())
    ]
    if len(matches) != 1:
        wanted = naming.point_name(labels.items())
        what = "no point" if not matches else f"{len(matches)} points"
        raise ConfigError(
            f"reference {{{phase}/{wanted}}} matches {what} of phase {phase!r}"
            + (f": {', '.join(p.name for p in matches[:4])}" if matches else "")
            + " (give labels that pick exactly one point)"
        )
    return matches[0]


def references(point: Point, points: Sequence[Point]) -> list[Point]:
    """The points whose workdirs `point`'s override values name (`{phase/labels}`)."""
    found = []
    for _, value in point.overrides:
        if isinstance(value, str):
            for phase, labels in REFERENCE.findall(_substitute_axes(point, value)):
                found.append(find(points, phase, naming.parse_name(labels)))
    return found


def _substitute_axes(point: Point, value: str) -> str:
    labels = dict(point.labels)

    def replace(match: re.Match) -> str:
        if match.group(1) not in labels:
            raise ConfigError(
                f"point {point.id}: ${match.group(1)} in {value!r} is not one of its axes "
                f"({', '.join(labels) or 'none'})"
            )
        return labels[match.group(1)]

    return _AXIS_VARIABLE.sub(replace, value)


def resolve_value(point: Point, value: Any, points: Sequence[Point], root: Path, sweep: str) -> Any:
    """An override value with `$axis` and `{phase/labels}` replaced (non-strings pass through)."""
    if not isinstance(value, str):
        return value
    value = _substitute_axes(point, value)
    return REFERENCE.sub(
        lambda m: str(find(points, m.group(1), naming.parse_name(m.group(2))).workdir(root, sweep)),
        value,
    )


def point_config(
    sweep: Sweep, point: Point, points: Sequence[Point], root: str | Path
) -> ml_collections.ConfigDict:
    """The point's config: a copy of the locked base with the point's overrides set, one by one, as
    `--config.key=value` would. An unknown key or a value of the wrong type is a `ConfigError` naming
    the point and the key."""
    config = copy.deepcopy(sweep.base)
    config.lock()  # an unlocked base would accept typos as new keys
    for key, value in point.overrides:
        value = resolve_value(point, value, points, Path(root), sweep.name)
        parent, _, leaf = key.rpartition(".")
        try:
            node = config
            for part in filter(None, parent.split(".")):
                node = getattr(node, part)
            if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
                raise KeyError(key)
            setattr(node, leaf, value)
        except (AttributeError, KeyError):
            raise ConfigError(
                f"sweep {sweep.name!r}, point {point.id}: unknown config key {key!r} (the base config "
                "is locked; check the spelling against the config file)"
            ) from None
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"sweep {sweep.name!r}, point {point.id}: bad value {value!r} for config key "
                f"{key!r}: {error}"
            ) from None
    return config


def validate(sweep: Sweep, points: Sequence[Point], root: str | Path) -> None:
    """Every check that does not need a run: each point's config builds and passes
    `tljax.train.validate`, and every `{phase/labels}` reference names exactly one point of a phase that its phase depends on."""
    from tljax.train.validate import validate_config

    phases = {p.name: p for p in sweep.phases}
    for point in points:
        config = point_config(sweep, point, points, root)
        try:
            validate_config(
                config
            )  # the checks train_and_evaluate would make, before any point runs
        except ConfigError as error:
            raise ConfigError(f"sweep {sweep.name!r}, point {point.id}: {error}") from None
        for source in references(point, points):
            if source.phase not in _ancestors(phases, point.phase):
                raise ConfigError(
                    f"point {point.id} uses the workdir of {source.id}, but phase {point.phase!r} "
                    f"does not depend on {source.phase!r}: add it to depends_on"
                )


def _ancestors(phases: Mapping[str, Phase], name: str) -> set[str]:
    found: set[str] = set()
    stack = list(phases[name].depends_on)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(phases[current].depends_on)
    return found


def load(spec_text: str) -> tuple[Sweep, str]:
    """Imports a sweep file, `path.py[:arg]`, and returns `get_sweep(arg)` and the spec with the path
    made absolute (what point processes and batch scripts are given)."""
    path_text, _, arg = spec_text.partition(":")
    path = Path(path_text).absolute()
    if not path.is_file():
        raise UserError(f"--sweep={spec_text}: no such file {path}")
    module_name = f"tljax_sweep_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise UserError(f"sweep file {path} defines no get_sweep(arg=None)")
    sweep = module.get_sweep(arg or None)
    if not isinstance(sweep, Sweep):
        raise UserError(f"{path}: get_sweep() returned {type(sweep).__name__}, not spec.Sweep")
    return sweep, str(path) + (f":{arg}" if arg else "")
