"""Orbax checkpoints: the latest K (for resuming) and the best one by validation accuracy.

Layout in the workdir:
  checkpoints/<step>/{state, data}   TrainState + the grain iterator position (JSON), every N steps
  best/<step>/{state, meta}          params + batch stats of the best validation accuracy, and its metrics

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a process killed
at any moment (even mid-save) leaves the previous checkpoints intact and the half-written one is ignored
on restore. Saves are synchronous: the train step donates its input buffers, and a synchronous save
never races a later step for them.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from tljax.typing import PyTree


def encode_iterator_state(state: Any) -> Any:
    """A grain iterator state (nested dicts of ints/str/bytes/arrays) as plain JSON values."""
    if isinstance(state, bytes):
        return {"__bytes__": base64.b64encode(state).decode("ascii")}
    if isinstance(state, dict):
        return {str(k): encode_iterator_state(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [encode_iterator_state(v) for v in state]
    if isinstance(state, np.ndarray):
        return state.tolist()
    if isinstance(state, np.generic):
        return state.item()
    return state


def decode_iterator_state(state: Any) -> Any:
    """Inverse of `encode_iterator_state`."""
    if isinstance(state, dict):
        if set(state) == {"__bytes__"}:
            return base64.b64decode(state["__bytes__"])
        return {k: decode_iterator_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [decode_iterator_state(v) for v in state]
    return state


def _abstract(tree: PyTree) -> PyTree:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """The two orbax managers of a run, with the loop's vocabulary (save / restore_latest / best)."""

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 2):
        workdir = Path(workdir).absolute()
        self.latest = ocp.CheckpointManager(
            workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=True,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            ),
            item_names=("state", "data"),
        )
        self.best = ocp.CheckpointManager(
            workdir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=True,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            ),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state: PyTree, iterator_state: Any) -> None:
        """Saves the full TrainState and the data position at `step` (overwriting nothing older)."""
        if self.latest.latest_step() == step:
            return  # already saved (e.g. a periodic save followed by the final one)
        self.latest.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(encode_iterator_state(iterator_state)),
            ),
            force=True,
        )

    def restore_latest(self, like_state: PyTree) -> tuple[PyTree, Any] | None:
        """(state, iterator_state) of the newest complete checkpoint, shaped like `like_state`; or None."""
        step = self.latest.latest_step()
        if step is None:
            return None
        restored = self.latest.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(like_state)), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], decode_iterator_state(restored["data"])

    def read_state(self, step: int | None = None) -> PyTree:
        """The saved TrainState of `step` (default: the latest) as a plain tree of arrays, no target needed."""
        step = self.latest.latest_step() if step is None else step
        restored = self.latest.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
        return restored["state"]

    def save_best(self, step: int, variables: PyTree, meta: dict[str, Any]) -> None:
        """Keeps `variables` (params + batch stats) as the best checkpoint, replacing the previous one."""
        self.best.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        # max_to_keep=1 keeps the newest; the previous best is deleted only after this one is complete.

    def best_meta(self) -> dict[str, Any] | None:
        step = self.best.latest_step()
        if step is None:
            return None
        return dict(
            self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        )

    def restore_best(self, like_variables: PyTree) -> PyTree | None:
        step = self.best.latest_step()
        if step is None:
            return None
        restored = self.best.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_variables)))
        )
        return restored["state"]

    def close(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()
        self.latest.close()
        self.best.close()
