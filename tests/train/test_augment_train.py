"""On-device augmentation in the train step, end to end: a run with RandAugment + mixup/CutMix that
crashes and resumes ends bit-exact with the uninterrupted one, the step with AugMix + JSD compiles once,
and bad `data.augment` names or magnitudes are one ConfigError naming the valid choices."""

from __future__ import annotations

import fixtures
import numpy as np
import pytest

import tljax.train.loop as loop
from tljax.errors import ConfigError
from tljax.train import train_and_evaluate

COMPARED = ("test_loss", "val_loss", "final_train_loss", "params_digest", "steps")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(tmp_path_factory.mktemp("data"))


def _config(data_root, *, steps=8, image_ops=("randaugment",), batch_ops=("mixup", "cutmix")):
    config = fixtures.tiny_config(data_root, steps=steps)
    config.data.augment.image_ops = image_ops
    config.data.augment.batch_ops = batch_ops
    config.data.augment.mix.mode = "elem"
    config.optim.label_smoothing = 0.1
    return config


class _Crash(Exception):
    pass


def test_resumed_run_with_augmentation_is_bit_exact(data_root, tmp_path, monkeypatch):
    reference = train_and_evaluate(_config(data_root), tmp_path / "reference")
    assert reference["train_trace_count"] == 1

    original = loop.make_train_step

    def crashing_after_five(*args, **kwargs):
        step = original(*args, **kwargs)
        calls = []

        def crashing(*a, **k):
            calls.append(1)
            if len(calls) > 5:
                raise _Crash("simulated crash after step 5")
            return step(*a, **k)

        return crashing

    monkeypatch.setattr(loop, "make_train_step", crashing_after_five)
    workdir = tmp_path / "crashed"
    with pytest.raises(_Crash):
        train_and_evaluate(_config(data_root), workdir)
    monkeypatch.setattr(loop, "make_train_step", original)
    assert not (workdir / "results.json").exists()
    resumed = train_and_evaluate(_config(data_root), workdir)
    assert resumed["train_trace_count"] == 1
    for key in COMPARED:
        assert resumed[key] == reference[key], key
    # Augmentation really ran: without it the same run ends elsewhere.
    plain = train_and_evaluate(_config(data_root, image_ops=(), batch_ops=()), tmp_path / "plain")
    assert plain["params_digest"] != reference["params_digest"]


def test_augmix_jsd_step_compiles_once_and_trains(data_root, tmp_path):
    results = train_and_evaluate(
        _config(data_root, steps=4, image_ops=("augmix",), batch_ops=()), tmp_path
    )
    assert results["train_trace_count"] == 1
    assert np.isfinite(results["final_train_loss"])


@pytest.mark.parametrize(
    "key, value, expected",
    [
        (
            "image_ops",
            ("randaugment", "autoaugment"),
            r"unknown \['autoaugment'\]; valid: randaugment, augmix",
        ),
        ("batch_ops", ("mixup", "cutmx"), r"unknown \['cutmx'\]; valid: .*mixup, cutmix"),
        (
            "randaugment.magnitude",
            12.0,
            r"randaugment.magnitude=12.0: must be a number in \[0, 10\]",
        ),
        (
            "randaugment.ops",
            ("rotate", "blur"),
            r"unknown \['blur'\]; valid: autocontrast, brightness",
        ),
        ("augmix.severity", 0.0, r"augmix.severity=0.0: must be a number in \[0.1, 10\]"),
        ("mix.mode", "pairs", r"mix.mode='pairs': must be one of 'batch', 'pair', 'elem'"),
    ],
)
def test_bad_augment_config_is_one_clear_error(data_root, tmp_path, key, value, expected):
    config = _config(data_root)
    node = config.data.augment
    *parents, leaf = key.split(".")
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    with pytest.raises(ConfigError, match=expected):
        train_and_evaluate(config, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_augmix_jsd_with_mixup_is_refused(data_root, tmp_path):
    config = _config(data_root, image_ops=("augmix",), batch_ops=("mixup",))
    with pytest.raises(ConfigError, match="JSD loss needs the clean image"):
        train_and_evaluate(config, tmp_path)
