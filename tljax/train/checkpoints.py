"""Orbax checkpoints: the latest K (for resuming) and the best one by validation accuracy.

Layout in the workdir:
  checkpoints/<step>/{state, data}   TrainState + the grain iterator position (JSON), every N steps
  best/<step>/{state, meta}          params + batch stats of the best validation accuracy, and its metrics

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a process killed
at any moment (even mid-save) leaves the previous checkpoints intact and the half-written one is ignored
on restore. Saves are synchronous: the train step donates its input buffers, and a synchronous save
never races a later step for them.

A checkpoint that cannot be read back (a truncated array file, `_METADATA` or iterator JSON: disk trouble,
a copy interrupted by hand) is named in a warning, moved aside to `corrupt_checkpoints/` (never deleted)
and the next older one is restored; only when none is intact does `restore_latest` raise a one-line
`WorkdirError`. A checkpoint that reads fine but does not fit the model is not corrupt and is left alone.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from tljax.errors import WorkdirError, os_error_of
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
        self.workdir = workdir
        self.set_aside: list[
            Path
        ] = []  # corrupt checkpoints moved to corrupt_checkpoints/, this run
        _silence_closed_loop_callbacks()
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
        with _translated_write_errors(self.latest.directory / str(step)):
            self.latest.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=ocp.args.JsonSave(encode_iterator_state(iterator_state)),
                ),
                force=True,
            )

    def restore_latest(self, like_state: PyTree) -> tuple[PyTree, Any] | None:
        """(state, iterator_state) of the newest intact checkpoint, shaped like `like_state`; or None.

        Newer checkpoints that cannot be read are moved aside (see the module docstring). Raises
        `WorkdirError` when checkpoints exist but none is intact, or when the newest readable one does
        not fit `like_state` (a different model: nothing is moved).
        """
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                restored = self.latest.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_abstract(like_state)),
                        data=ocp.args.JsonRestore(),
                    ),
                )
                return restored["state"], decode_iterator_state(restored["data"])
            except Exception as error:  # noqa: BLE001 - classified just below
                if self._readable(self.latest, step, ("state", "data")):
                    raise WorkdirError(
                        f"checkpoint {self.latest.directory / str(step)} is intact but does not fit "
                        f"this run's model ({_first_line(error)}): use a new --workdir for a "
                        "different model"
                    ) from error
                self._set_aside(self.latest, step, error)
        if self.set_aside:
            raise WorkdirError(
                f"no intact checkpoint in {self.latest.directory}: "
                f"{', '.join(str(p) for p in self.set_aside)} could not be read and were moved aside; "
                "move an intact copy back, or delete the checkpoints/ folder to start the run again"
            )
        return None

    @staticmethod
    def _readable(manager: ocp.CheckpointManager, step: int, items: tuple[str, ...]) -> bool:
        """Whether `step` restores without a target (its files are whole), whatever its structure."""
        readers = {"state": ocp.args.StandardRestore(), "data": ocp.args.JsonRestore()}
        readers["meta"] = ocp.args.JsonRestore()
        try:
            manager.restore(step, args=ocp.args.Composite(**{k: readers[k] for k in items}))
        except Exception:  # noqa: BLE001 - any failure to read back means damaged files
            return False
        return True

    def _set_aside(self, manager: ocp.CheckpointManager, step: int, error: BaseException) -> None:
        """Moves a damaged step directory to `<workdir>/corrupt_checkpoints/` and forgets it."""
        source = Path(manager.directory) / str(step)
        if jax.process_index() != 0:
            # One mover: the main process. The others just try the next older step, as it does.
            logging.warning("checkpoint %s is damaged (%s)", source, _first_line(error))
            return
        target_dir = self.workdir / "corrupt_checkpoints"
        target_dir.mkdir(exist_ok=True)
        target = target_dir / f"{Path(manager.directory).name}-{step}"
        suffix = 1
        while target.exists():
            target = target_dir / f"{Path(manager.directory).name}-{step}.{suffix}"
            suffix += 1
        shutil.move(source, target)
        manager.reload()
        self.set_aside.append(target)
        logging.warning(
            "checkpoint %s is damaged (%s): moved it to %s and trying the next older one",
            source,
            _first_line(error),
            target,
        )

    def read_state(self, step: int | None = None) -> PyTree:
        """The saved TrainState of `step` (default: the latest) as a plain tree of arrays, no target needed."""
        step = self.latest.latest_step() if step is None else step
        restored = self.latest.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
        return restored["state"]

    def save_best(self, step: int, variables: PyTree, meta: dict[str, Any]) -> None:
        """Keeps `variables` (params + batch stats) as the best checkpoint, replacing the previous one."""
        with _translated_write_errors(self.best.directory / str(step)):
            self.best.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
        # max_to_keep=1 keeps the newest; the previous best is deleted only after this one is complete.

    def best_meta(self) -> dict[str, Any] | None:
        """The metrics saved with the best checkpoint; None if there is none (or it was damaged)."""
        step = self.best.latest_step()
        if step is None:
            return None
        try:
            restored = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as error:  # noqa: BLE001 - a damaged best checkpoint is set aside
            self._set_aside(self.best, step, error)
            return None
        return dict(restored["meta"])

    def restore_best(self, like_variables: PyTree) -> PyTree | None:
        """The best checkpoint's variables; None if there is none (or it was damaged: set aside)."""
        step = self.best.latest_step()
        if step is None:
            return None
        try:
            restored = self.best.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_variables))),
            )
        except Exception as error:  # noqa: BLE001 - see restore_latest
            if self._readable(self.best, step, ("state",)):
                raise
            self._set_aside(self.best, step, error)
            return None
        return restored["state"]

    def close(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()
        self.latest.close()
        self.best.close()


@contextlib.contextmanager
def _translated_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raises an orbax save failure caused by the OS (disk full, permissions) as that `OSError`."""
    try:
        yield
    except Exception as error:
        os_error = os_error_of(error, path)
        if os_error is None or (os_error is error and os_error.filename):
            raise
        raise OSError(
            os_error.errno, os_error.strerror, os_error.filename or os.fspath(path)
        ) from error


def _silence_closed_loop_callbacks() -> None:
    """Drops the `RuntimeError: Event loop is closed` noise of an aborted orbax read.

    When one array of a damaged checkpoint fails, orbax's `asyncio.run` returns and closes its event
    loop while TensorStore still completes the other reads; each completion then calls
    `loop.call_soon_threadsafe` on the closed loop from a TensorStore thread and Python prints the
    "unraisable" error, dozens of tracebacks that bury the one useful line. Only that exact error is
    dropped (installed before any read, since some arrive while the failure propagates, and kept, since
    others arrive later); every other unraisable error reaches the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_tljax_closed_loop_filter", False):
        return

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._tljax_closed_loop_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
