"""Fault injection (issue 8 item 4): each kind of file of the newest checkpoint truncated in turn; the
run resumes to the uninterrupted digest every time, a damaged step is moved aside (never deleted), and
only when no checkpoint is intact does the run stop, with one line."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import fixtures
import jax
import numpy as np
import pytest
import tiny_model

from tljax.errors import WorkdirError
from tljax.train import Checkpointer, train_and_evaluate

COMPARED = (
    "params_digest",
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "val_loss",
    "final_train_loss",
    "final_train_accuracy",
)
# The files a restore must read: truncating any of them must set the step aside, not crash or pass.
MUST_BE_SET_ASIDE = ("data/metadata", "state/_METADATA", "state/d/*", "state/manifest.ocdbt")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 12-step run (checkpoints 9 and 12 kept) and its results."""
    tiny_model.register()
    data_root = fixtures.make_image_folder(tmp_path_factory.mktemp("data"))
    workdir = tmp_path_factory.mktemp("reference")
    results = train_and_evaluate(fixtures.tiny_config(data_root, steps=12), workdir)
    return data_root, workdir, results


def _kinds(checkpoint: Path) -> dict[str, Path]:
    """One file per kind of file in an orbax checkpoint (content-hash names collapse to `*`)."""
    kinds: dict[str, Path] = {}
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file():
            kind = re.sub(r"[0-9a-f]{32}", "*", str(path.relative_to(checkpoint)))
            if path.name == "commit_success.txt":  # one marker file, whatever the folder
                kind = path.name
            if kind not in kinds or path.stat().st_size > kinds[kind].stat().st_size:
                kinds[kind] = path
    return kinds


def _killed_after_last_checkpoint(finished_workdir: Path, target: Path) -> Path:
    """A copy of the finished run as a kill just before results.json would have left it."""
    shutil.copytree(finished_workdir, target)
    (target / "results.json").unlink()
    return target


def test_truncating_each_kind_of_file_in_the_newest_checkpoint_resumes_to_the_same_digest(
    finished, tmp_path
):
    data_root, reference_dir, reference = finished
    kinds = _kinds(reference_dir / "checkpoints" / "12")
    assert {"_CHECKPOINT_METADATA", "data/metadata", "state/_METADATA", "state/d/*"} <= set(kinds)
    set_aside = {}
    for index, (kind, original) in enumerate(kinds.items()):
        workdir = _killed_after_last_checkpoint(reference_dir, tmp_path / f"run{index}")
        damaged = workdir / original.relative_to(reference_dir)
        os.truncate(damaged, damaged.stat().st_size // 2)
        resumed = train_and_evaluate(fixtures.tiny_config(data_root, steps=12), workdir)
        for key in COMPARED:
            assert resumed[key] == reference[key], (kind, key)
        moved = workdir / "corrupt_checkpoints" / "checkpoints-12"
        set_aside[kind] = moved.exists()
        if set_aside[kind]:  # moved whole, damaged file included; resumed from step 9
            assert (moved / damaged.relative_to(workdir / "checkpoints" / "12")).exists()
            assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "9"]
    assert all(set_aside[kind] for kind in MUST_BE_SET_ASIDE), set_aside


def test_no_intact_checkpoint_is_one_line_and_moves_nothing_back(finished, tmp_path):
    data_root, reference_dir, _ = finished
    workdir = _killed_after_last_checkpoint(reference_dir, tmp_path / "run")
    for step in ("9", "12"):
        path = workdir / "checkpoints" / step / "data" / "metadata"
        path.write_text(path.read_text()[:5])
    with pytest.raises(WorkdirError) as error:
        train_and_evaluate(fixtures.tiny_config(data_root, steps=12), workdir)
    message = str(error.value)
    assert "\n" not in message and "no intact checkpoint" in message
    assert "checkpoints-12" in message and "checkpoints-9" in message
    assert sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir()) == [
        "checkpoints-12",
        "checkpoints-9",
    ]
    assert not any(p.name.isdigit() for p in (workdir / "checkpoints").iterdir())


def test_an_intact_checkpoint_of_another_model_is_refused_not_moved(finished, tmp_path):
    _, reference_dir, _ = finished
    workdir = _killed_after_last_checkpoint(reference_dir, tmp_path / "run")
    checkpointer = Checkpointer(workdir)
    state = checkpointer.read_state()
    # The same tree with one parameter of another shape: what a different model would ask for.
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    first_param = next(path for path, _ in flat if "params" in jax.tree_util.keystr(path))
    like = jax.tree_util.tree_map_with_path(
        lambda p, x: np.zeros((7, 7)) if p == first_param else x, state
    )
    with pytest.raises(WorkdirError, match="intact but does not fit"):
        checkpointer.restore_latest(like)
    checkpointer.close()
    assert not (workdir / "corrupt_checkpoints").exists()
    assert json.loads((workdir / "config.json").read_text())["train"]["steps"] == 12


def test_a_damaged_best_checkpoint_is_set_aside_and_the_best_metrics_stay_right(finished, tmp_path):
    data_root, reference_dir, reference = finished
    assert reference["best_step"] != 12  # so the best checkpoint is needed at the end
    workdir = _killed_after_last_checkpoint(reference_dir, tmp_path / "run")
    (best,) = [p for p in (workdir / "best").iterdir() if p.name.isdigit()]
    metadata = best / "meta" / "metadata"
    os.truncate(metadata, metadata.stat().st_size // 2)
    resumed = train_and_evaluate(fixtures.tiny_config(data_root, steps=12), workdir)
    for key in (*COMPARED, "best_val_accuracy", "best_step"):
        assert resumed[key] == reference[key], key
    # Its variables are gone, so the test score at the best step is not reported rather than guessed.
    assert "test_accuracy_at_best_val" not in resumed
    assert (workdir / "corrupt_checkpoints" / f"best-{best.name}" / "meta" / "metadata").exists()
