"""Sweep files: expansion order and names, point configs, references, and the bad-input errors (no
training: each test takes milliseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tljax.errors import ConfigError
from tljax.experiments import naming, spec
from tljax.train.defaults import default_config


def _base():
    config = default_config()
    config.recipe = "scratch"
    config.lock()
    return config


def _sweep(*phases: spec.Phase, name: str = "s") -> spec.Sweep:
    return spec.Sweep(name=name, base=_base(), phases=list(phases))


def test_product_zip_seeds_expand_in_order_with_readable_names():
    grid = spec.product(
        spec.zip_axes(
            spec.axis("optim.lr", [0.1, 0.001], name="lr"),
            spec.axis("train.batch_size", [8, 16]),
        ),
        spec.axis(
            "mode", {"AnB": {"optim.weight_decay": 0.0}, "AnB+": {"optim.weight_decay": 1.0}}
        ),
        spec.seeds(2),
    )
    points = spec.expand(_sweep(spec.Phase("p", grid)))
    assert [p.name for p in points] == [
        f"lr={lr},batch_size={bs},mode={mode},seed={seed}"
        for lr, bs in (("0.1", 8), ("0.001", 16))
        for mode in ("AnB", "AnB+")
        for seed in (0, 1)
    ]
    assert points[0].workdir("/r", "s") == Path("/r/s/p/lr=0.1,batch_size=8,mode=AnB,seed=0")
    config = spec.point_config(_sweep(spec.Phase("p", grid)), points[-1], points, "/r")
    assert (config.optim.lr, config.train.batch_size, config.optim.weight_decay, config.seed) == (
        0.001,
        16,
        1.0,
        1,
    )
    assert config.is_locked
    assert naming.parse_name(points[-1].name) == dict(points[-1].labels)


def test_reference_resolves_to_the_source_points_workdir():
    sweep = _sweep(
        spec.Phase(
            "base",
            spec.product(
                spec.axis("data.classes", ["half:A", "half:B"], name="split"), spec.seeds(2)
            ),
        ),
        spec.Phase(
            "transfer",
            spec.product(spec.axis("optim.lr", [0.1, 0.2], name="lr"), spec.seeds(2)),
            depends_on=("base",),
            overrides={"weights.name": "run:{base/split=half:A,seed=$seed}#best"},
        ),
    )
    points = spec.expand(sweep)
    spec.validate(sweep, points, "/root")
    point = next(p for p in points if p.id == "transfer/lr=0.2,seed=1")
    config = spec.point_config(sweep, point, points, "/root")
    assert config.weights.name == "run:/root/s/base/split=half:A,seed=1#best"
    assert [p.id for p in spec.references(point, points)] == ["base/split=half:A,seed=1"]


@pytest.mark.parametrize(
    "phases, message",
    [
        (
            lambda: [spec.Phase("a", spec.seeds(1), depends_on=("nope",))],
            "depends on 'nope', which is not a phase",
        ),
        (
            lambda: [spec.Phase("a", spec.product(spec.axis("seed", [1, 1], name="seed")))],
            "duplicate point a/seed=1",
        ),
        (
            lambda: [spec.Phase("a", spec.product(spec.axis("optim.lrr", [0.1])))],
            "point a/lrr=0.1: unknown config key 'optim.lrr'",
        ),
        (
            lambda: [spec.Phase("a", spec.axis("train.steps", ["many"]))],
            "point a/steps=many: bad value 'many' for config key 'train.steps'",
        ),
        (
            lambda: [spec.Phase("a", spec.axis("train.steps", [-5]))],
            "point a/steps=-5: invalid config: train.steps=-5",
        ),
        (
            lambda: [
                spec.Phase("a", spec.seeds(1)),
                spec.Phase("b", spec.seeds(1), overrides={"weights.name": "run:{a/seed=0}"}),
            ],
            "phase 'b' does not depend on 'a'",
        ),
        (
            lambda: [
                spec.Phase("a", spec.seeds(2)),
                spec.Phase("b", spec.seeds(1), ("a",), {"weights.name": "run:{a/seed=7}"}),
            ],
            "reference {a/seed=7} matches no point",
        ),
        (
            lambda: [
                spec.Phase("a", spec.seeds(2)),
                spec.Phase("b", spec.seeds(1), ("a",), {"weights.name": "run:{a/$lr}"}),
            ],
            "$lr in 'run:{a/$lr}' is not one of its axes",
        ),
        (
            lambda: [spec.Phase("b", spec.seeds(1), ("a",)), spec.Phase("a", spec.seeds(1))],
            "depends on 'a', which comes later",
        ),
        (
            lambda: [spec.Phase("a", spec.axis("data.root", ["x/y"]))],
            "cannot be part of a directory name",
        ),
    ],
)
def test_bad_sweeps_are_one_clear_error(phases, message):
    with pytest.raises(ConfigError) as error:
        sweep = _sweep(*phases())
        spec.validate(sweep, spec.expand(sweep), "/root")
    assert message in str(error.value)


def test_select_matches_phase_slash_name():
    points = spec.expand(
        _sweep(spec.Phase("a", spec.seeds(3)), spec.Phase("b", spec.seeds(2), ("a",)))
    )
    assert [p.id for p in spec.select(points, r"^b/|a/seed=2")] == [
        "a/seed=2",
        "b/seed=0",
        "b/seed=1",
    ]
    with pytest.raises(Exception, match="matches no point"):
        spec.select(points, "nothing")
