"""The 8-device checks, run in one subprocess with `--xla_force_host_platform_device_count=8` (so the
rest of the suite keeps one device): `python tests/parallel/eight_devices.py SPEC_JSON`.

Asserts what needs the 8 devices in-process (global BatchNorm statistics, a single trace with no host
transfer, sharding rules, a ragged eval, errors for bad input) and writes the numbers of a 12-step run and
of a run resumed here from a 1-device checkpoint to `spec["out"]`, for the test to compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tiny_model  # noqa: E402
import worker  # noqa: E402

from tljax import optim, parallel  # noqa: E402
from tljax.errors import ConfigError  # noqa: E402
from tljax.train import (  # noqa: E402
    Checkpointer,
    TrainState,
    make_eval_step,
    make_train_step,
    setup,
)
from tljax.train.loop import evaluate, train_and_evaluate  # noqa: E402


class BatchNormNet(nn.Module):
    """BatchNorm straight on the input, so its batch statistics are those of the pixels (a NumPy answer)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
        return nn.Dense(4, name="head")(x.mean(axis=(1, 2)))


def make_state(placement, model, tx, sample):
    variables = jax.device_get(jax.jit(model.init)(jax.random.key(0), sample))
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    return placement.create_state(
        lambda p, b: TrainState.create(p, b, tx.init(p), 0), params, params, batch_stats
    )


def check_global_batch_norm() -> None:
    placement = parallel.Placement.from_config({})
    assert jax.device_count() == 8 and parallel.data_size(placement.mesh) == 8
    rng = np.random.default_rng(0)
    # Each device's rows get their own offset: per-device statistics would differ from the global ones.
    images = (rng.normal(size=(8, 4, 4, 3)) + np.arange(8)[:, None, None, None]).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % 4
    model, tx = BatchNormNet(), optax.sgd(0.1)
    state, shardings = make_state(placement, model, tx, images[:1])
    step = make_train_step(
        model,
        tx,
        ["bn/scale", "bn/bias", "head/kernel", "head/bias"],
        state_sharding=shardings,
        batch_sharding=placement.batch,
    )
    batch = parallel.global_batch({"image": images, "label": labels}, placement.batch)
    assert batch["image"].sharding.shard_shape(batch["image"].shape)[0] == 1  # one row per device
    state, _ = step(state, batch)
    mean = np.asarray(state.batch_stats["bn"]["mean"])
    var = np.asarray(state.batch_stats["bn"]["var"])
    # Flax: running = 0.9·running + 0.1·batch statistic, from mean 0 and var 1.
    np.testing.assert_allclose(mean, 0.1 * images.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, 0.9 + 0.1 * images.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)


def check_single_trace_no_transfer() -> None:
    placement = parallel.Placement.from_config({})
    model, tx = tiny_model.TinyCNN(), optax.adamw(1e-2)
    images = np.random.default_rng(1).normal(size=(8, 16, 16, 3)).astype(np.float32)
    state, shardings = make_state(placement, model, tx, images[:1])
    assignment = optim.assign_groups(state.params, [(".*", {})])
    step = make_train_step(
        model,
        tx,
        assignment.trainable_paths(),
        state_sharding=shardings,
        batch_sharding=placement.batch,
    )
    batches = [
        parallel.global_batch(
            {"image": images + i, "label": np.arange(8, dtype=np.int32) % 4}, placement.batch
        )
        for i in range(3)
    ]
    with jax.transfer_guard("disallow"):  # any host↔device copy inside the steps raises
        for batch in batches:
            state, metrics = step(state, batch)
    assert step.trace_count == 1, step.trace_count
    assert metrics["loss"].sharding.is_fully_replicated


def check_sharding_rules(tmp: Path) -> dict:
    model, tx = tiny_model.TinyCNN(), optax.adam(1e-2)
    images = np.random.default_rng(2).normal(size=(8, 16, 16, 3)).astype(np.float32)
    batch_np = {"image": images, "label": np.arange(8, dtype=np.int32) % 4}
    losses, states = {}, {}
    for name, mesh, rules in (
        ("replicated", (("data", -1),), ()),
        ("fsdp", (("data", -1), ("model", 2)), ((".*/kernel", "model"),)),
    ):
        placement = parallel.Placement(parallel.make_mesh(mesh), rules)
        state, shardings = make_state(placement, model, tx, images[:1])
        if name == "fsdp":
            kernel = state.params["block1_conv"]["kernel"]  # [3, 3, 8, 16]: 16 splits over model
            assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "model")
            assert kernel.sharding.shard_shape(kernel.shape) == (3, 3, 8, 8)
            mu = state.opt_state[0].mu["block1_conv"]["kernel"]
            assert mu.sharding.spec == kernel.sharding.spec  # the Adam slot follows its parameter
            assert state.params["block1_conv"]["bias"].sharding.is_fully_replicated
            assert state.batch_stats["block1_bn"]["mean"].sharding.is_fully_replicated
        assignment = optim.assign_groups(state.params, [(".*", {})])
        step = make_train_step(
            model,
            tx,
            assignment.trainable_paths(),
            state_sharding=shardings,
            batch_sharding=placement.batch,
        )
        batch = parallel.global_batch(batch_np, placement.batch)
        state, metrics = step(state, batch)
        state, metrics = step(state, batch)
        losses[name] = float(metrics["loss"])
        states[name] = state
    np.testing.assert_allclose(losses["fsdp"], losses["replicated"], rtol=1e-5)
    # The FSDP-sharded state checkpoints and restores onto the replicated layout, values unchanged.
    checkpointer = Checkpointer(tmp / "fsdp-checkpoint")
    checkpointer.save(2, states["fsdp"], {"next_index": 0})
    restored, _ = checkpointer.restore_latest(states["replicated"])
    checkpointer.close()
    kernel = restored.params["block1_conv"]["kernel"]
    assert kernel.sharding.is_fully_replicated
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(states["fsdp"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return losses


def check_ragged_eval(data_root: Path) -> dict:
    tiny_model.register()
    config = worker.run_config(data_root)
    datasets = setup.build_data(config)
    split = datasets.test  # 24 images; batch 5 → 8 (the device count): 3 batches, the last 0 padded
    model = setup.build_model(config, datasets.num_classes)
    variables = jax.device_get(setup.init_variables(config, model, setup.image_size(datasets)))
    placement = parallel.Placement.from_config(config)
    sharded = placement.put(variables)
    eval_step = make_eval_step(
        model, jax.tree.map(lambda _: placement.replicated, sharded), placement.batch
    )
    results = {}
    for n in (21, 24):  # 21: a ragged last batch with 3 padded rows
        split_n = type(split).__new__(type(split))
        split_n.__dict__.update(split.__dict__)
        split_n.indices = split.indices[:n]
        metrics, labels, predictions = evaluate(eval_step, sharded, split_n, 5, placement)
        # Reference: one unpadded, unsharded forward pass over the n images on one device.
        everything = next(split_n.iterator(n, epochs=1, augment=False))
        one_device = jax.devices()[0]
        logits = jax.jit(lambda v, x: model.apply(v, x, train=False), device=one_device)(
            jax.device_put(variables, one_device), jax.device_put(everything["image"], one_device)
        )
        losses = np.asarray(
            optax.softmax_cross_entropy_with_integer_labels(logits, everything["label"])
        )
        assert metrics["examples"] == n, metrics
        np.testing.assert_array_equal(labels, split_n.labels)
        np.testing.assert_array_equal(predictions, np.argmax(np.asarray(logits), -1))
        np.testing.assert_allclose(metrics["loss"], losses.mean(), rtol=1e-5)
        np.testing.assert_allclose(metrics["accuracy"], np.mean(predictions == labels))
        results[n] = metrics
    return results


def check_bad_input(data_root: Path, tmp: Path) -> dict:
    messages = {}
    for name, mesh, batch in (("batch", (("data", -1),), 6), ("mesh", (("data", 3),), 8)):
        workdir = tmp / f"bad-{name}"
        try:
            train_and_evaluate(worker.run_config(data_root, mesh, batch), workdir)
        except ConfigError as error:
            messages[name] = str(error)
        else:
            raise AssertionError(f"{name}: no error")
        assert not (workdir / "checkpoints").exists(), "an error must come before any training"
    assert "train.batch_size=6" in messages["batch"] and "8" in messages["batch"], messages
    assert "multiplies to 3" in messages["mesh"] and "8 are present" in messages["mesh"], messages
    return messages


def main(spec: dict) -> None:
    data_root, tmp = Path(spec["data"]), Path(spec["tmp"])
    check_global_batch_norm()
    check_single_trace_no_transfer()
    out = {"fsdp_losses": check_sharding_rules(tmp)}
    out["ragged"] = check_ragged_eval(data_root)
    out["bad_input"] = check_bad_input(data_root, tmp)
    out["run"] = train_and_evaluate(worker.run_config(data_root), spec["workdir"])
    # 1 → 8: the 1-device reference run as it was after step 6, resumed here on 8 devices.
    resumed = worker.rewind(Path(spec["one_device_workdir"]), tmp / "from-one-device", 6)
    out["resumed_from_one_device"] = train_and_evaluate(worker.run_config(data_root), resumed)
    Path(spec["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
