"""Every shipped config: loads, is locked, documents its command and result, and its parameter rules
cover EfficientNet-Lite0 as the recipe says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from tljax import models
from tljax.train import setup

# The training configs (configs/ also holds other tools' configs, e.g. image optimisation).
TRAINING = (
    "feature_extractor",
    "finetune_top",
    "finetune_all",
    "scratch",
    "linear_probe",
    "fashion_mnist_lite0",
)
CONFIGS = [Path(__file__).resolve().parents[1] / "configs" / f"{name}.py" for name in TRAINING]
NAMES = list(TRAINING)


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipes_ship():
    assert all(path.exists() for path in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=NAMES)
def test_config_is_locked_and_documented(path):
    module = _load(path)
    config = module.get_config()
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.optim.lrr = 0.1
    assert f"python -m tljax.main --config=configs/{path.stem}.py" in module.__doc__
    assert "test" in module.__doc__ and "%" in module.__doc__  # the result it reached
    assert (
        config.data.source == "fashion_mnist" and config.data.test_per_class is None
    )  # full test set
    assert (config.weights.name is None) == (config.recipe == "scratch")
    assert module.get_config("shots=20").data.train_per_class == 20


_ABSTRACT = {}


def _lite0_params():
    if not _ABSTRACT:
        model = models.get("efficientnet_lite0", num_classes=10)
        _ABSTRACT["model"] = model
        _ABSTRACT["params"] = jax.eval_shape(
            model.init, jax.random.key(0, impl="rbg"), jnp.zeros((1, 64, 64, 3))
        )["params"]
    return _ABSTRACT["model"], _ABSTRACT["params"]


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.stem != "linear_probe"], ids=lambda p: p.stem
)
def test_recipe_rules_cover_lite0(path):
    config = _load(path).get_config()
    model, params = _lite0_params()
    groups = setup.build_groups(config, model, {"params": params, "batch_stats": {}})
    assignment = groups.assignment
    head = 1280 * 10 + 10
    if config.recipe == "feature_extractor":
        assert assignment.num_trainable() == head
    elif config.recipe == "finetune_top":
        trainable = {p.split("/")[0] for p in assignment.trainable_paths()}
        assert trainable == {"classifier", "head_conv", "head_bn", "blocks_15"}
    else:  # finetune_all, scratch: everything trains
        assert assignment.num_frozen() == 0
        if config.recipe == "finetune_all":
            assert (
                assignment.groups["blocks_0/depthwise_conv/kernel"].lr_mult
                == config.optim.backbone_lr_mult
            )
