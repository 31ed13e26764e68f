"""A finished training run as a weight source: `load("run:WORKDIR")` and `weights.name=run:WORKDIR`.

A run of `tljax.train.train_and_evaluate` writes, just before its `results.json`, the exact variables its
final metrics were computed with (parameters and BN statistics, after any precise-BN recomputation) to
`WORKDIR/final_variables/` with a small `final_variables.json` naming the model and classes. So:

  * `run:WORKDIR` → those final variables; `run:WORKDIR#best` → the best-validation checkpoint
    (`WORKDIR/best/`), when the run recorded one;
  * both go through the same strict name/shape check as every other source (`strict_merge`): a model
    that does not fit is refused naming the keys, and `skip` regexes keep a fresh init (a new head, or
    the layers above n of a transfer);
  * a workdir that holds no finished run (no `results.json`, no final variables, no best checkpoint) is
    one `UserError` naming the workdir and what is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import orbax.checkpoint as ocp

from tljax import models
from tljax.errors import UserError
from tljax.fileio import atomic_write_json
from tljax.typing import PyTree

RUN_PREFIX = "run:"
FINAL_DIR = "final_variables"
FINAL_META = "final_variables.json"
RESULTS = "results.json"
WHICH = ("final", "best")


class RunNotFinishedError(UserError, FileNotFoundError):
    """A `run:` weight source whose workdir holds no finished run (or not the checkpoint asked for)."""


def parse_run_source(source: str) -> tuple[Path, str]:
    """`"run:DIR"` → (DIR, "final"); `"run:DIR#best"` → (DIR, "best"). DIR may use `~`."""
    if not source.startswith(RUN_PREFIX):
        raise ValueError(f"{source!r} is not a run source (want {RUN_PREFIX}WORKDIR[#best])")
    text = source[len(RUN_PREFIX) :]
    which = "final"
    if "#" in text:
        text, which = text.rsplit("#", 1)
    if which not in WHICH:
        raise UserError(
            f"weight source {source!r}: unknown checkpoint {which!r} after '#'; use "
            f"{RUN_PREFIX}WORKDIR (final variables) or {RUN_PREFIX}WORKDIR#best"
        )
    if not text:
        raise UserError(
            f"weight source {source!r} names no workdir: use {RUN_PREFIX}/path/to/workdir"
        )
    return Path(text).expanduser().absolute(), which


def save_final_variables(
    workdir: str | os.PathLike, variables: PyTree, meta: dict[str, Any]
) -> None:
    """Writes a run's final variables (`{'params', 'batch_stats'}`) and `meta` (model name, classes).

    Called by the training loop before `results.json`, so a workdir with results always has them; orbax
    writes into a temporary directory and renames it when complete, and a re-run (resumed after the last
    step) replaces the previous copy.
    """
    workdir = Path(workdir).absolute()
    target = workdir / FINAL_DIR
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, jax.device_get(variables), force=True)
    checkpointer.wait_until_finished()
    atomic_write_json(workdir / FINAL_META, meta)


def _not_finished(workdir: Path, missing: str, source: str) -> RunNotFinishedError:
    if not workdir.is_dir():
        what = f"{workdir} does not exist"
    elif not (workdir / "config.json").exists():
        what = f"{workdir} is not a tljax training workdir (no config.json)"
    else:
        what = f"the run in {workdir} has not finished ({missing})"
    return RunNotFinishedError(
        f"weight source {source!r}: {what}. Finish the source run first (running its command again "
        "resumes it), or point run: at a workdir whose results.json exists."
    )


def run_meta(source: str) -> dict[str, Any]:
    """The source run's `final_variables.json` (model, num_classes, class_names); raises if unfinished."""
    workdir, _ = parse_run_source(source)
    if not (workdir / RESULTS).exists():
        raise _not_finished(workdir, f"no {RESULTS}", source)
    if not (workdir / FINAL_META).exists():
        raise RunNotFinishedError(
            f"weight source {source!r}: the run in {workdir} finished but saved no final variables "
            f"(no {FINAL_META}): linear_probe runs keep no network weights; train the network with "
            "another recipe"
        )
    return dict(json.loads((workdir / FINAL_META).read_text()))


def run_config(source: str) -> dict[str, Any]:
    """The source run's recorded `config.json` (plain JSON values)."""
    workdir, _ = parse_run_source(source)
    path = workdir / "config.json"
    if not path.exists():
        raise _not_finished(workdir, "no config.json", source)
    return dict(json.loads(path.read_text()))


def run_preprocessing_name(source: str) -> str | None:
    """The registered weights name whose preprocessing the source run used (followed through chains of
    run: sources), so a network trained on some inputs is fine-tuned on the same ones."""
    seen = set()
    while source and source.startswith(RUN_PREFIX):
        if source in seen:
            raise UserError(f"weight source {source!r}: run: sources form a cycle")
        seen.add(source)
        weights = run_config(source).get("weights", {})
        source = weights.get("preprocessing") or weights.get("name")
    return source


def load_run(
    source: str,
    model: nn.Module | None = None,
    *,
    skip: Sequence[str] = (),
    rng: jax.Array | None = None,
) -> dict:
    """Flax variables of a finished run (`run:DIR` final, `run:DIR#best` best) checked against `model`.

    Without `model`, the run's own architecture and number of classes are used.
    """
    from tljax.weights.loading import strict_merge

    workdir, which = parse_run_source(source)
    meta = run_meta(source)
    if model is None:
        model = models.get(meta["model"], num_classes=int(meta["num_classes"]))
    if which == "final":
        directory = workdir / FINAL_DIR
        if not directory.is_dir():
            raise _not_finished(workdir, f"no {FINAL_DIR}/", source)
        restored = ocp.StandardCheckpointer().restore(directory)
    else:
        manager = ocp.CheckpointManager(workdir / "best", item_names=("state", "meta"))
        step = manager.latest_step()
        if step is None:
            manager.close()
            raise RunNotFinishedError(
                f"weight source {source!r}: the run in {workdir} recorded no best checkpoint "
                "(it had no validation split); use run:WORKDIR for its final variables"
            )
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))[
            "state"
        ]
        manager.close()
    return strict_merge(dict(restored), model, skip=skip, rng=rng)
