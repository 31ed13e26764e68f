"""`train_and_evaluate(config, workdir)`: the whole run, resumable at any step.

config → data → model + weights → parameter groups + BN policy → optimizer → jitted step → loop →
writers. What makes a killed run finish with the same numbers as an uninterrupted one:
  * the TrainState (params, BN statistics, optimizer state, step, base RNG key) and the grain iterator
    position are saved together in one orbax checkpoint, written atomically;
  * the dropout key of step s is `fold_in(rng, s)` and the data order depends on the seed only;
  * on start the newest intact checkpoint is restored (damaged newer ones are moved aside), and metrics
    written after it are dropped.
Before anything is written the config is validated (`validate`), the workdir is checked writable, locked
against a second process and its config record checked (`workdir`): a relaunch with a different config is
refused, a finished run re-reports its recorded results. SIGTERM (preemption) and SIGINT (Ctrl-C) save a
checkpoint after the current step (or abandon the run cleanly before the first one) and return
`{"preempted": True, "signal": ...}`; a second signal of the same kind stops at once. A NaN/Inf loss
stops the run before anything else is saved, naming the step.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tljax import optim, parallel
from tljax.data.augment import device as device_augment
from tljax.train import plots, setup, validate
from tljax.train import workdir as workdir_lib
from tljax.train.checkpoints import Checkpointer
from tljax.train.state import TrainState
from tljax.train.step import make_eval_step, make_train_step
from tljax.train.writers import MetricWriter, NullWriter, Progress
from tljax.typing import Config, PyTree
from tljax.weights.runs import save_final_variables


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss (or parameters); the message names the step and the remedies."""


class _StopSignals:
    """Turns SIGTERM and SIGINT into a flag the loop checks after each step (main thread only).

    A save in progress is never interrupted (no half-written `*.orbax-checkpoint-tmp`, no exception in
    grain's threads); the loop saves after the current step and returns. A second signal of the same
    kind means "now": SIGINT raises `KeyboardInterrupt`, SIGTERM gets its default action.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: str | None = None  # "SIGTERM" or "SIGINT" once one arrived
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        del frame
        name = signal.Signals(signum).name
        if self.requested == name:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.requested = name
        logging.warning(
            "%s received: saving a checkpoint after the current step, then exiting (send it again "
            "to stop at once)",
            name,
        )

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


@jax.jit
def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _non_finite_message(what: str, step: int, checkpointer: Checkpointer, config: Config) -> str:
    last = checkpointer.latest_step()
    kept = (
        f"the last good checkpoint (step {last}) is intact"
        if last is not None
        else "no checkpoint was written"
    )
    return (
        f"{what} at step {step}: training stopped and {kept}. Likely fixes, in a new --workdir (this "
        "one records the diverged run's config): a lower learning rate "
        f"(now --config.optim.lr={config.optim.lr:g}; try 10× lower), "
        + (
            "float32 compute instead of bfloat16 (--config.model.dtype=float32), "
            if config.model.dtype == "bfloat16"
            else ""
        )
        + f"gradient clipping (--config.optim.grad_clip=1.0; now {config.optim.grad_clip:g}), or warm-up "
        "(--config.optim.warmup_steps=...)."
    )


def evaluate(
    eval_step,
    variables: PyTree,
    split,
    batch_size: int,
    placement: parallel.Placement | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Loss and accuracy over a whole split, plus (labels, predictions) for the confusion matrix.

    Batches are global (sharded over the mesh of `placement`, default: all devices on `data`), of
    `batch_size` rounded up to a multiple of the devices and processes; each process reads its rows, the
    last batch is padded and every padded (or undecodable) example is masked out of every metric, so
    each example counts exactly once and the eval step compiles once per split.
    """
    placement = placement or parallel.Placement.from_config({})
    batch_size = placement.eval_batch(min(batch_size, split.num_examples))
    iterator = split.iterator(
        batch_size // placement.process_count,
        shuffle=False,
        epochs=1,
        drop_remainder=False,
        augment=False,
        process_index=placement.process_index,
        process_count=placement.process_count,
        pad_remainder=True,
    )
    outputs = []
    for local in iterator:
        batch = parallel.global_batch(local, placement.batch)
        loss_sum, correct, predictions = eval_step(
            variables, batch["image"], batch["label"], batch["mask"]
        )
        # Device arrays, fetched once at the end: no host round trip per batch.
        outputs.append((loss_sum, correct, predictions, batch["label"], batch["mask"]))
    if not outputs:
        raise ValueError(f"split {split.name!r} produced no examples to evaluate")
    fetched = parallel.fetch(outputs)
    keep = np.concatenate([o[4] for o in fetched]) > 0
    count = int(keep.sum())
    if not count:
        raise ValueError(f"split {split.name!r}: none of its examples could be decoded")
    loss = sum(float(o[0]) for o in fetched) / count
    accuracy = sum(float(o[1]) for o in fetched) / count
    labels = np.concatenate([o[3] for o in fetched])[keep]
    predictions = np.concatenate([o[2] for o in fetched])[keep]
    return {"loss": loss, "accuracy": accuracy, "examples": count}, labels, predictions


@functools.lru_cache(maxsize=16)
def _training_mode_statistics(model):
    """The jitted `(params, batch_stats, images) -> updated batch_stats` of one training-mode pass, one
    per model: repeated recomputations (AdaBN per corruption set, precise BN per run) compile once, and
    the parameters are arguments rather than constants baked into the program."""

    @jax.jit
    def batch_stats(params: PyTree, start: PyTree, images: jax.Array) -> PyTree:
        _, updated = model.apply(
            {"params": params, "batch_stats": start},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(0, impl="rbg")},
        )
        return updated["batch_stats"]

    return batch_stats


def recompute_bn_statistics(model, variables: PyTree, update_paths, batches) -> PyTree:
    """Precise BN (Wu & Johnson 2021): replaces the running statistics of the BN layers in `update_paths`
    by the average of their training-mode batch statistics over `batches`.

    After a short schedule, exponential moving averages (Lite's BN momentum is 0.99) are still far
    from the statistics the network was trained with — a scratch Lite0 at 60 steps scored chance (10%)
    on the test set although it fitted 43% of its training batches. Flax's BN updates
    `ra ← m·ra + (1−m)·batch_stat`, so a training-mode pass that starts from running statistics of 0
    returns `(1−m)·batch_stat`, and one that starts from 1 returns `m + (1−m)·batch_stat`: their
    difference gives each layer's momentum `m`, and the batch statistics follow exactly, whatever the
    architecture's momentum. Layers not in `update_paths` (frozen statistics) are left untouched and
    used as they are in the forward pass.
    """
    from flax import traverse_util

    update_paths = set(update_paths)
    flat = traverse_util.flatten_dict(dict(variables["batch_stats"]), sep="/")

    def filled(value: float) -> PyTree:
        return traverse_util.unflatten_dict(
            {
                k: (jnp.full_like(x, value) if k.rsplit("/", 1)[0] in update_paths else x)
                for k, x in flat.items()
            },
            sep="/",
        )

    def batch_stats(start: PyTree, images: jax.Array) -> PyTree:
        return _training_mode_statistics(model)(variables["params"], start, images)

    zeros, ones = filled(0.0), filled(1.0)
    total, momentum, count = None, None, 0
    for batch in batches:
        scaled = batch_stats(zeros, batch["image"])  # (1 − m)·batch_stat
        if momentum is None:
            momentum = jax.tree.map(jnp.subtract, batch_stats(ones, batch["image"]), scaled)
        total = scaled if total is None else jax.tree.map(jnp.add, total, scaled)
        count += 1
    if not count:
        return variables["batch_stats"]
    average = traverse_util.flatten_dict(
        dict(jax.tree.map(lambda t, m: t / count / (1.0 - m), total, momentum)), sep="/"
    )
    merged = {
        k: (average[k] if k.rsplit("/", 1)[0] in update_paths else x) for k, x in flat.items()
    }
    return traverse_util.unflatten_dict(merged, sep="/")


def _flush_train_metrics(
    pending: list[tuple[int, dict[str, jax.Array]]], checkpointer, config
) -> dict[str, float]:
    """Fetches the accumulated per-step metrics; raises on the first non-finite loss, naming its step."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), metrics in zip(pending, fetched, strict=True):
        if not math.isfinite(float(metrics["loss"])):
            raise NonFiniteLossError(
                _non_finite_message(f"loss is {float(metrics['loss'])}", step, checkpointer, config)
            )
    return {
        "loss": float(np.mean([m["loss"] for m in fetched])),
        "accuracy": float(np.mean([m["accuracy"] for m in fetched])),
    }


def train_and_evaluate(
    config: Config, workdir: str | Path, *, resume_with_changes: Iterable[str] = ()
) -> dict[str, Any]:
    """Trains (or resumes) the configured recipe in `workdir` and returns the final metrics.

    Before any work: the config is validated (`ConfigError`), the workdir checked writable, locked and
    its config record checked (`WorkdirError` / `ConfigError`; `resume_with_changes` names the keys of
    `workdir.SAFE_TO_CHANGE` a relaunch may change, recorded in history.jsonl). A workdir whose run
    already finished returns its recorded results without training. Returns
    `{"preempted": True, "signal": "SIGTERM" | "SIGINT", "step": s}` when stopped by a signal (a
    checkpoint at step s exists, or s is the restored step when stopped before the first new step).
    The workdir receives config.json, history.jsonl, checkpoints/, best/, tensorboard/, metrics.jsonl,
    results.json, learning_curve.png and confusion_matrix.png.
    """
    validate.validate_config(config)
    workdir = workdir_lib.check_writable(workdir)
    # The mesh next: a mesh or batch size that does not fit the devices fails before any work.
    placement = parallel.Placement.from_config(config)
    # In a multi-process run every process shares the workdir and orbax coordinates their writes: the
    # lock keeps other runs out, so the main process alone holds it and records the config.
    lock = workdir_lib.WorkdirLock(workdir) if placement.is_main else contextlib.nullcontext()
    with lock:
        if placement.is_main:
            workdir_lib.record_config(workdir, config, resume_with_changes)
        if workdir_lib.is_finished(workdir):
            logging.info(
                "%s already holds the finished run of this config: reporting its recorded results "
                "(use a new --workdir to run it again)",
                workdir,
            )
            return workdir_lib.read_results(workdir) or {}
        if config.recipe == "linear_probe":
            from tljax.train.linear_probe import run_linear_probe

            # No checkpoints to save: signals act at once (the feature cache is written atomically,
            # so a relaunch reuses what was extracted).
            return run_linear_probe(config, workdir)
        with _StopSignals() as stop:
            return _train_and_evaluate(config, workdir, stop, placement)


def _train_and_evaluate(
    config: Config, workdir: Path, stop: _StopSignals, placement: parallel.Placement
) -> dict[str, Any]:
    """The training recipes' run, once the workdir is locked and its config checked."""
    started = time.perf_counter()

    # Data, model and initial variables.
    datasets = setup.build_data(config)
    size = setup.image_size(datasets)
    model = setup.build_model(config, datasets.num_classes)
    init_model = model

    def initial_variables() -> PyTree:
        return setup.init_variables(config, init_model, size)

    # A random init runs on the devices, inside the jitted program that creates the state directly in
    # its sharding (no full copy on one device or the host first); only shapes are needed until then.
    # Pretrained or transferred weights come from a file, so they pass through the host.
    random_init = config.recipe != "transfer" and not config.weights.name
    variables = jax.eval_shape(initial_variables) if random_init else initial_variables()
    groups = setup.build_groups(config, model, variables)
    _warn_unused_rules(config, groups)
    # The BN policy is a property of the forward pass, so it is baked into the model.
    model = setup.build_model(config, datasets.num_classes, frozen_bn=groups.frozen_bn)

    # Schedule lengths.
    n_train = datasets.train.num_examples
    batch_size = min(config.train.batch_size, n_train)
    if batch_size < config.train.batch_size:
        logging.warning(
            "train.batch_size %d > %d training examples: using %d",
            config.train.batch_size,
            n_train,
            batch_size,
        )
    local_batch = placement.local_batch(batch_size)
    steps_per_epoch = max(n_train // batch_size, 1)
    total_steps = int(config.train.steps or math.ceil(config.train.epochs * steps_per_epoch))
    eval_every = int(config.train.eval_every or steps_per_epoch)
    log_every = max(1, int(config.train.log_every))
    checkpoint_every = max(1, int(config.train.checkpoint_every))
    logging.info("%d steps of batch %d (%d per epoch)", total_steps, batch_size, steps_per_epoch)

    optim_config = optim.OptimConfig.from_config(config.optim)
    tx = optim.build_optimizer(optim_config, groups.assignment, variables["params"], total_steps)

    def create_state(params: PyTree, batch_stats: PyTree) -> TrainState:
        return TrainState.create(params, batch_stats, tx.init(params), config.seed)

    def create_initial_state() -> TrainState:
        initial = initial_variables()
        return create_state(initial["params"], initial.get("batch_stats", {}))

    # The optimizer state (and a random init) is created on the devices in its final sharding.
    if random_init:
        state, state_sharding = placement.create_state(create_initial_state, variables["params"])
    else:
        state, state_sharding = placement.create_state(
            create_state,
            variables["params"],
            jax.device_get(variables["params"]),
            jax.device_get(variables.get("batch_stats", {})),
        )
    del variables
    # Jitted: evaluating it eagerly for the log would compile each of its ops separately.
    schedule = jax.jit(optim.learning_rate_schedule(optim_config, total_steps))

    train_step = make_train_step(
        model,
        tx,
        groups.assignment.trainable_paths(),
        label_smoothing=config.optim.label_smoothing,
        state_sharding=state_sharding,
        batch_sharding=placement.batch,
        augment=device_augment.from_config(
            config.data.augment,
            setup.resolve_preprocessing(config),
            datasets.num_classes,
            config.optim.label_smoothing,
        ),
    )
    eval_step = make_eval_step(model, state_sharding.variables(), placement.batch)
    train_iter = datasets.train.iterator(
        local_batch,
        shuffle=True,
        seed=config.seed,
        epochs=None,
        drop_remainder=True,
        process_index=placement.process_index,
        process_count=placement.process_count,
    )

    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, iterator_state = restored
        train_iter.set_state(placement.own_iterator_state(iterator_state))
        logging.info("resumed from %s at step %d", checkpointer.latest.directory, int(state.step))
    start_step = int(state.step)
    best = (
        checkpointer.best_meta()
        or _best_from_metrics(workdir, start_step)  # the best checkpoint was damaged (set aside)
        or {"val_accuracy": -1.0, "step": None}
    )
    writer = MetricWriter(workdir, resume_step=start_step) if placement.is_main else NullWriter()
    feeder = placement.feeder(train_iter)
    progress = Progress(total_steps, batch_size, start_step)
    val_metrics: dict[str, float] | None = None
    train_metrics: dict[str, float] = {}
    images_per_second: list[float] = []

    step = start_step
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    try:
        with contextlib.nullcontext(stop) as sigterm:
            if sigterm.requested:  # arrived while setting up: nothing new to save
                logging.warning("%s: stopped before training, at step %d", sigterm.requested, step)
                return {"preempted": True, "signal": sigterm.requested, "step": step}
            while step < total_steps:
                batch, data_state = next(feeder)
                state, metrics = train_step(state, batch)
                step += 1
                pending.append((step, metrics))
                last = step == total_steps
                do_eval = datasets.val is not None and (step % eval_every == 0 or last)
                do_save = step % checkpoint_every == 0 or last or sigterm.requested
                if step % log_every == 0 or do_eval or do_save:
                    train_metrics = _flush_train_metrics(pending, checkpointer, config)
                    pending = []
                    _, rate = progress.line(step, train_metrics["loss"], train_metrics["accuracy"])
                    if step - start_step > log_every:  # the first interval includes compilation
                        images_per_second.append(rate)
                    writer.write(
                        "train",
                        step,
                        {
                            **train_metrics,
                            "lr": float(schedule(step - 1)),
                            "images_per_second": rate,
                        },
                    )
                if do_eval:
                    val_metrics, _, _ = evaluate(
                        eval_step,
                        state.variables(),
                        datasets.val,
                        config.train.eval_batch_size,
                        placement,
                    )
                    val_metrics.pop("examples")
                    writer.write("val", step, val_metrics)
                    logging.info(
                        "step %d | val loss %.4f | val acc %.2f%%",
                        step,
                        val_metrics["loss"],
                        100 * val_metrics["accuracy"],
                    )
                    if val_metrics["accuracy"] > best["val_accuracy"]:
                        best = {
                            "step": step,
                            "val_accuracy": val_metrics["accuracy"],
                            "val_loss": val_metrics["loss"],
                        }
                        checkpointer.save_best(step, state.variables(), best)
                if do_save:
                    if not bool(_all_finite(state.params)):
                        raise NonFiniteLossError(
                            _non_finite_message(
                                "parameters became NaN/Inf", step, checkpointer, config
                            )
                        )
                    checkpointer.save(step, state, placement.saved_iterator_state(data_state))
                if sigterm.requested:
                    logging.warning(
                        "%s: checkpoint saved at step %d in %s", sigterm.requested, step, workdir
                    )
                    return {"preempted": True, "signal": sigterm.requested, "step": step}

        if datasets.val is not None and val_metrics is None:  # resumed at the last step
            # Evaluated as the uninterrupted run did at this step: before precise BN changes the
            # statistics (afterwards, a run killed after its last save reported another val loss).
            val_metrics, _, _ = evaluate(
                eval_step, state.variables(), datasets.val, config.train.eval_batch_size, placement
            )
            val_metrics.pop("examples")
        updating_bn = [p for p, d in groups.bn_decisions.items() if d == "update"]
        if config.train.precise_bn_batches and updating_bn:
            # Deterministic (own seed, no augmentation), so a resumed run recomputes the same statistics.
            calibration = datasets.train.iterator(
                local_batch,
                shuffle=True,
                seed=config.seed + 1,
                epochs=None,
                drop_remainder=True,
                augment=False,
                process_index=placement.process_index,
                process_count=placement.process_count,
            )
            batches = (
                parallel.global_batch(next(calibration), placement.batch)
                for _ in range(int(config.train.precise_bn_batches))
            )
            state = state.replace(
                batch_stats=recompute_bn_statistics(model, state.variables(), updating_bn, batches)
            )
            del calibration
            logging.info(
                "recomputed the statistics of %d BN layer(s) over %d batches (precise BN)",
                len(updating_bn),
                config.train.precise_bn_batches,
            )

        if stop.requested:  # arrived after the last save: the relaunch does the final evaluation
            logging.warning(
                "%s: the final checkpoint (step %d) is saved; stopping before the final evaluation",
                stop.requested,
                step,
            )
            return {"preempted": True, "signal": stop.requested, "step": step}

        if not train_metrics:  # resumed at the last step: report the recorded final train metrics
            recorded = [r for r in writer.history() if r.get("split") == "train"]
            if recorded:
                train_metrics = {
                    k: recorded[-1][k] for k in ("loss", "accuracy") if k in recorded[-1]
                }

        # Final evaluation.
        results: dict[str, Any] = {
            "recipe": config.recipe,
            "model": config.model.name,
            "weights": config.weights.name or "random",
            "class_names": list(datasets.class_names),
            "steps": total_steps,
            "train_examples": n_train,
            "image_size": size,
            "trainable_params": groups.assignment.num_trainable(),
            "frozen_params": groups.assignment.num_frozen(),
            "final_train_loss": train_metrics.get("loss"),
            "final_train_accuracy": train_metrics.get("accuracy"),
            "train_trace_count": train_step.trace_count,
            # Content hash of the final parameters and BN statistics: equal runs give equal digests.
            "params_digest": setup.tree_digest(parallel.fetch(state.variables())),
        }
        if datasets.val is not None:
            assert val_metrics is not None  # evaluated in the loop or right after it
            results.update(
                val_accuracy=val_metrics["accuracy"],
                val_loss=val_metrics["loss"],
                best_val_accuracy=best["val_accuracy"],
                best_step=best["step"],
            )
        if datasets.test is not None:
            test_metrics, labels, predictions = evaluate(
                eval_step, state.variables(), datasets.test, config.train.eval_batch_size, placement
            )
            writer.write(
                "test", step, {"loss": test_metrics["loss"], "accuracy": test_metrics["accuracy"]}
            )
            results.update(
                test_accuracy=test_metrics["accuracy"],
                test_loss=test_metrics["loss"],
                test_examples=test_metrics["examples"],
            )
            matrix = plots.confusion_matrix(labels, predictions, datasets.num_classes)
            results["confusion_matrix"] = matrix.tolist()
            if placement.is_main:
                plots.plot_confusion_matrix(
                    matrix,
                    datasets.class_names,
                    workdir / "confusion_matrix.png",
                    title=f"{config.recipe} test",
                )
            if best["step"] is not None and best["step"] != step:
                best_variables = checkpointer.restore_best(state.variables())
                if best_variables is not None:  # None: the best checkpoint was damaged (set aside)
                    best_test, _, _ = evaluate(
                        eval_step,
                        best_variables,
                        datasets.test,
                        config.train.eval_batch_size,
                        placement,
                    )
                    results["test_accuracy_at_best_val"] = best_test["accuracy"]
            logging.info(
                "test accuracy %.2f%% (%d images)",
                100 * test_metrics["accuracy"],
                test_metrics["examples"],
            )
        if placement.is_main:
            plots.plot_learning_curve(
                writer.history(),
                workdir / "learning_curve.png",
                title=f"{config.recipe}: {config.model.name}",
            )
        results["images_per_second"] = (
            float(np.median(images_per_second)) if images_per_second else None
        )
        results["seconds"] = time.perf_counter() - started
        # The variables these results were computed with, for `weights.load("run:WORKDIR")`; written
        # before results.json, whose presence marks the run finished.
        save_final_variables(
            workdir,
            parallel.fetch(state.variables()),  # orbax: every process calls it
            {
                "model": config.model.name,
                "num_classes": datasets.num_classes,
                "class_names": list(datasets.class_names),
                "step": step,
            },
        )
        if placement.is_main:
            return workdir_lib.write_results(workdir, results)
        return results
    finally:
        for close in (writer.close, checkpointer.close):
            try:
                close()
            except (
                OSError
            ) as error:  # e.g. a full disk: must not mask the error that stopped the run
                logging.warning("while closing the run's files: %s", error)
        # Stop the iterator's prefetch threads now, while the interpreter is fully alive (at exit,
        # grain's finaliser can run after the modules it needs are gone and print noise).
        del train_iter


def _best_from_metrics(workdir: Path, up_to_step: int) -> dict[str, Any] | None:
    """The best validation record up to `up_to_step` in metrics.jsonl (first of equals, as the loop
    picks it), for a run whose best checkpoint was lost: its metrics stay right, its variables are gone."""
    best = None
    for record in MetricWriter.read(workdir / "metrics.jsonl"):
        if record.get("split") != "val" or record.get("step", 0) > up_to_step:
            continue
        if best is None or record["accuracy"] > best["val_accuracy"]:
            best = {
                "step": record["step"],
                "val_accuracy": record["accuracy"],
                "val_loss": record["loss"],
            }
    return best


def _warn_unused_rules(config: Config, groups: setup.Groups) -> list[str]:
    """Logs a warning naming each `optim.param_rules` / `bn.rules` regex that matches nothing."""
    found = []
    param_paths = list(groups.assignment.groups)
    for key, rules, paths in (
        ("optim.param_rules", config.optim.param_rules, param_paths),
        ("bn.rules", config.bn.rules, list(groups.bn_decisions)),
    ):
        for pattern in validate.unused_rules(rules, paths):
            found.append(f"{key} {pattern!r}")
            logging.warning(
                "%s rule %r matches no %s: a typo? (its parameters fall through to later rules)",
                key,
                pattern,
                "parameter" if key.startswith("optim") else "BN layer",
            )
    return found
