"""End to end through `train_and_evaluate`: the tiny CNN (artifacts, accuracy, traces, checkpoints),
a real ResNet-18 with a frozen backbone (bitwise-frozen params and BN statistics), NaN handling."""

from __future__ import annotations

import json

import fixtures
import jax
import numpy as np
import pytest
import tiny_model

from tljax.train import Checkpointer, NonFiniteLossError, train_and_evaluate
from tljax.train import setup as setup_lib


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(tmp_path_factory.mktemp("data"))


def test_tiny_run_artifacts_and_accuracy(data_root, tmp_path):
    tiny_model.register()
    results = train_and_evaluate(fixtures.tiny_config(data_root, steps=12), tmp_path)
    # Colour-cast classes: learnable in 12 steps, well above the 25% chance level on 24 test images.
    assert results["test_examples"] == 24 and results["test_accuracy"] >= 0.75
    assert results["train_trace_count"] == 1
    assert np.asarray(results["confusion_matrix"]).sum() == 24
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [4, 8, 12]
    assert [r["split"] for r in records].count("test") == 1
    assert all(np.isfinite(r["loss"]) for r in records)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    for figure in ("learning_curve.png", "confusion_matrix.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
    assert (
        json.loads((tmp_path / "results.json").read_text())["test_accuracy"]
        == results["test_accuracy"]
    )
    # Checkpoints every 3 steps keep the last 2 (and the final step 12 is one of them); one best.
    assert sorted(
        int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()
    ) == [9, 12]
    assert len([p for p in (tmp_path / "best").iterdir() if p.name.isdigit()]) == 1
    # Running the finished run again re-reports its recorded results and rewrites nothing.
    written = {name: (tmp_path / name).read_bytes() for name in ("results.json", "metrics.jsonl")}
    again = train_and_evaluate(fixtures.tiny_config(data_root, steps=12), tmp_path)
    assert again == results and again["final_train_loss"] is not None
    assert {name: (tmp_path / name).read_bytes() for name in written} == written


def test_resnet18_frozen_backbone_end_to_end(data_root, tmp_path):
    config = fixtures.tiny_config(
        data_root, model="resnet18", recipe="feature_extractor", steps=4, image_size=16
    )
    results = train_and_evaluate(config, tmp_path)
    assert results["trainable_params"] == 512 * 4 + 4  # the new head only
    model = setup_lib.build_model(config, 4)
    initial = setup_lib.init_variables(config, model, 16)
    checkpointer = Checkpointer(tmp_path)
    final = checkpointer.read_state()
    checkpointer.close()
    for collection in ("params", "batch_stats"):
        flat_initial = dict(jax.tree_util.tree_flatten_with_path(initial[collection])[0])
        flat_final = dict(jax.tree_util.tree_flatten_with_path(final[collection])[0])
        for path, value in flat_initial.items():
            is_head = "classifier" in jax.tree_util.keystr(path)
            same = np.asarray(value).tobytes() == np.asarray(flat_final[path]).tobytes()
            assert same != is_head, (collection, jax.tree_util.keystr(path))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(data_root, tmp_path):
    tiny_model.register()
    config = fixtures.tiny_config(data_root, steps=30)
    with config.unlocked():
        config.optim.name = "sgd"
        config.optim.lr = 1e12  # diverges within a few steps
        config.optim.schedule = "constant"
        config.optim.weight_decay = 0.0
        config.train.checkpoint_every = 1
        config.train.log_every = 1
    with pytest.raises(NonFiniteLossError) as error:
        train_and_evaluate(config, tmp_path)
    message = str(error.value)
    assert "at step" in message and "lower learning rate" in message and "grad_clip" in message
    bad_step = int(message.split("at step ")[1].split(":")[0])
    checkpointer = Checkpointer(tmp_path)
    last = checkpointer.latest_step()
    assert last is not None and last < bad_step
    state = checkpointer.read_state(last)
    checkpointer.close()
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
