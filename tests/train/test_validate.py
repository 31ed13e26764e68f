"""Config validation (issue 8 item 3): zero and negative sizes are refused by name before anything is
written; a parameter or BN rule that matches nothing is warned about by name; every shipped config
passes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from unittest import mock

import fixtures
import pytest
import tiny_model

from tljax.errors import ConfigError
from tljax.train import loop, setup, train_and_evaluate, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(
        tmp_path_factory.mktemp("data"), per_class=4, test_per_class=2
    )


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("data.train_per_class", 0, "or None / shots=all"),  # shots=0 used to mean "all"
        ("train.steps", -5, "an integer > 0"),  # used to "finish" untrained with rc 0
        ("train.batch_size", 0, "an integer >= 1"),  # used to be a ZeroDivisionError
        ("optim.lr", -0.1, "a number > 0"),
        ("train.keep_checkpoints", 0, "an integer >= 1"),  # used to make resuming impossible
        ("optim.label_smoothing", 1.5, "in [0, 1)"),
        ("data.augment.scale", (0.0, 1.0), "0 < lo <= hi <= 1"),
    ],
)
def test_out_of_range_value_is_refused_by_key_before_anything_is_written(
    data_root, tmp_path, key, value, valid
):
    config = fixtures.tiny_config(data_root)
    section, _, name = key.rpartition(".")
    with config.unlocked():
        node = config
        for part in section.split("."):
            node = node[part]
        node[name] = value
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(config, workdir)
    message = str(error.value)
    assert "\n" not in message
    assert f"{key}={value!r}" in message and valid in message
    assert not workdir.exists()  # refused before the workdir was even created


def test_every_problem_is_named_in_one_line():
    config = fixtures.tiny_config(Path("/nonexistent"))
    with config.unlocked():
        config.train.steps = -1
        config.optim.lr = 0.0
        config.train.checkpoint_every = 0
    problems = validate.config_problems(config)
    assert [p.split("=")[0] for p in problems] == [
        "optim.lr",
        "train.steps",
        "train.checkpoint_every",
    ]


def test_a_negative_group_learning_rate_or_decay_is_refused():
    config = fixtures.tiny_config(Path("/nonexistent"))
    with config.unlocked():
        config.optim.param_rules = (
            ("classifier/.*", {"lr_mult": -1.0}),
            ("block1/.*", "weight_decay=-0.1"),
            (".*", "frozen"),
        )
    assert validate.config_problems(config) == [
        "optim.param_rules[0] lr_mult=-1: must be a number >= 0",
        "optim.param_rules[1] weight_decay=-0.1: must be a number >= 0",
    ]


def test_steps_zero_needs_epochs():
    config = fixtures.tiny_config(Path("/nonexistent"), steps=0)
    assert validate.config_problems(config) == []  # 0 steps = derive them from train.epochs
    with config.unlocked():
        config.train.epochs = 0
    (problem,) = validate.config_problems(config)
    assert "train.steps=0 and train.epochs=0" in problem


def _load_config(path: Path):
    """`get_config()` of a config file; None for a helper module that has none."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if hasattr(module, "get_config") else None


# The training configs (style / dream / visualisation configs have no recipe and their own checks).
TRAINING_CONFIGS = [
    path
    for path in sorted((REPO / "configs").glob("*.py"))
    if "recipe" in (_load_config(path) or {})
]


def test_the_shipped_training_configs_are_found():
    names = {path.name for path in TRAINING_CONFIGS}
    assert {"finetune_top.py", "linear_probe.py", "scratch.py", "transfer.py"} <= names


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: p.name)
def test_shipped_training_configs_are_valid(path):
    assert validate.config_problems(_load_config(path)) == []


def test_rule_that_matches_nothing_is_warned_by_name(data_root):
    tiny_model.register()
    config = fixtures.tiny_config(data_root)
    with config.unlocked():
        # A typo ("clasifier") while the catch-all still matches everything: legal, but a warning.
        config.optim.param_rules = (("clasifier/.*", {"lr_mult": 10.0}), (".*", {}))
        config.bn.rules = ((".*", "update"), ("no_such_bn", "frozen"))
    model = setup.build_model(config, 4)
    variables = setup.init_variables(config, model, 16)
    groups = setup.build_groups(config, model, variables)
    with mock.patch.object(loop.logging, "warning") as warning:
        found = loop._warn_unused_rules(config, groups)
    assert found == ["optim.param_rules 'clasifier/.*'", "bn.rules 'no_such_bn'"]
    warned = [call.args for call in warning.call_args_list]
    assert [args[1:3] for args in warned] == [
        ("optim.param_rules", "clasifier/.*"),
        ("bn.rules", "no_such_bn"),
    ]
    assert validate.unused_rules(config.optim.param_rules, groups.assignment.groups) == [
        "clasifier/.*"
    ]
