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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402


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

    tiny_model.register()
    config = fixtures.tiny_config(Path(spec["data"]), steps=spec.get("steps", 12))
    with config.unlocked():
        config.train.log_every = 1
        config.train.batch_size = spec.get("batch_size", 8)
        config.parallel.mesh = tuple(tuple(a) for a in spec.get("mesh", (("data", -1),)))
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
