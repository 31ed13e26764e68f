"""configs/transfer.py: locked, documented, and its arguments build base and transfer runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "configs" / "transfer.py"


def _module():
    spec = importlib.util.spec_from_file_location("config_transfer", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_base_and_transfer_configs():
    module = _module()
    base = module.get_config("classes=half:A")
    assert base.is_locked and base.recipe == "scratch" and base.weights.name is None
    assert base.data.classes == "half:A" and base.model.name == "caffenet"
    with pytest.raises(AttributeError):
        base.transfer.layerz = 3
    transfer = module.get_config("n=3,mode=finetune,source=/runs/baseA")
    assert transfer.recipe == "transfer" and transfer.weights.name == "run:/runs/baseA"
    assert (transfer.transfer.layers, transfer.transfer.mode) == (3, "finetune")
    # The same budget for base and transfer networks (Yosinski et al.'s protocol).
    assert (base.train.steps, base.data.train_per_class) == (
        transfer.train.steps,
        transfer.data.train_per_class,
    )
    assert module.get_config("shots=all").data.train_per_class is None
    assert "python -m tljax.main --config=configs/transfer.py" in module.__doc__
    with pytest.raises(ValueError, match="source=WORKDIR"):
        module.get_config("n=3")
    with pytest.raises(ValueError, match="scale='tiny'"):
        module.get_config("scale=tiny")
