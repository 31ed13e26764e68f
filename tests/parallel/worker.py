"""One training process for the scale-out tests: `python tests/parallel/worker.py SPEC_JSON`.

The spec names the data folder, the workdir, the steps, and optionally a multi-process layout
(`coordinator`, `num_processes`, `process_id`), a step after which to die (`crash_after`: `os._exit`
right after that step's checkpoint) and a per-step sleep (`slow`, so a signal lands mid-run). The
device count comes from XLA_FLAGS, set by the test. Writes `<out>` (JSON): the results, the global
example indices this process decoded for the training split, and the device layout.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402


def run_config(data_root: Path, mesh=(("data", -1),), batch_size: int = 8):
    """The tiny run every scale-out test compares: 12 steps of SGD, a loss record every step, every
    checkpoint kept. SGD rather than Adam: Adam divides a gradient that is zero in exact arithmetic (a
    conv bias followed by BatchNorm) by its own rounding noise, so such parameters move by O(lr) in a
    direction that depends on the summation order, and runs on different device counts would differ in
    them for reasons that have nothing to do with sharding."""
    tiny_model.register()
    config = fixtures.tiny_config(data_root, steps=12)
    with config.unlocked():
        config.optim.name = "sgd"
        config.optim.lr = 0.1
        config.train.log_every = 1
        config.train.keep_checkpoints = 10
        config.train.batch_size = batch_size
        config.parallel.mesh = tuple(tuple(axis) for axis in mesh)
    return config


def rewind(source: Path, target: Path, step: int) -> Path:
    """A copy of the finished run `source` as a run killed right after its checkpoint at `step`."""
    shutil.copytree(source, target)
    for kind in ("checkpoints", "best"):
        for checkpoint in (target / kind).iterdir():
            if checkpoint.name.isdigit() and int(checkpoint.name) > step:
                shutil.rmtree(checkpoint)
    shutil.rmtree(target / "final_variables", ignore_errors=True)
    for name in ("results.json", "final_variables.json"):
        (target / name).unlink(missing_ok=True)
    return target


def main(spec: dict) -> None:
    from tljax import parallel

    if spec.get("coordinator"):
        parallel.initialize(
            spec["coordinator"],
            spec["num_processes"],
            spec["process_id"],
            timeout_s=spec.get("timeout", 60),
            heartbeat_s=spec.get("heartbeat", 100),
        )
    import jax

    import tljax.parallel.data as data_lib
    from tljax.train import checkpoints, loop

    decoded: list[int] = []
    original_shard = data_lib.shard_for_process

    def recording_shard(elements, local_batch, index, count, *, pad=None):
        if pad is not None:  # evaluation splits: not recorded
            return original_shard(elements, local_batch, index, count, pad=pad)

        class Recorder:
            def __len__(self):
                return len(elements)

            def __getitem__(self, g):
                decoded.append(int(g))
                return elements[g]

        return original_shard(Recorder(), local_batch, index, count, pad=pad)

    data_lib.shard_for_process = recording_shard

    if spec.get("crash_after") or spec.get("slow"):
        original_save = checkpoints.Checkpointer.save
        original_step = loop.make_train_step

        def save_then_maybe_die(self, step, state, iterator_state):
            original_save(self, step, state, iterator_state)
            if step == spec.get("crash_after"):
                os._exit(17)

        def slow_step(*args, **kwargs):
            step = original_step(*args, **kwargs)

            class Slow:
                trace_count = property(lambda _: step.trace_count)

                def __call__(self, *a, **k):
                    out = step(*a, **k)
                    time.sleep(spec.get("slow", 0))
                    return out

            return Slow()

        checkpoints.Checkpointer.save = save_then_maybe_die
        loop.make_train_step = slow_step

    config = run_config(
        Path(spec["data"]), spec.get("mesh", (("data", -1),)), spec.get("batch_size", 8)
    )
    results = loop.train_and_evaluate(config, spec["workdir"])
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "results": results,
                "decoded": decoded if spec.get("record") else None,
                "process_index": jax.process_index(),
                "process_count": jax.process_count(),
                "device_count": jax.device_count(),
            }
        )
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
