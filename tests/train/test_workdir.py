"""The workdir (issue 8 items 2, 5, 6, 10): the lock and its stale take-over, the config record that
refuses a different run and records the allowed changes, the writability check before any work, and
metrics.jsonl cut on resume without rewriting the records it keeps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import fixtures
import numpy as np
import pytest
import tiny_model

from tljax import fileio
from tljax.errors import ConfigError, WorkdirError
from tljax.train import plots, train_and_evaluate
from tljax.train import workdir as workdir_lib
from tljax.train.writers import MetricWriter


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return fixtures.make_image_folder(tmp_path_factory.mktemp("data"))


def test_second_lock_is_refused_with_holder_pid_and_host(tmp_path):
    first = workdir_lib.WorkdirLock(tmp_path).acquire()
    with pytest.raises(WorkdirError) as error:
        workdir_lib.WorkdirLock(tmp_path).acquire()  # another open file: excluded even in-process
    message = str(error.value)
    assert f"in use by process {os.getpid()} on host {socket.gethostname()}" in message
    assert "another --workdir" in message
    first.release()
    assert workdir_lib.WorkdirLock.holder(tmp_path) is None  # released: emptied, not stale
    with workdir_lib.WorkdirLock(tmp_path) as again:
        assert again.held


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    # What a process killed with -9 leaves: the lock file naming it, no flock held.
    (tmp_path / workdir_lib.LOCK_NAME).write_text(
        json.dumps({"pid": dead_pid, "host": socket.gethostname(), "since": "earlier"})
    )
    with workdir_lib.WorkdirLock(tmp_path):
        assert workdir_lib.WorkdirLock.holder(tmp_path)["pid"] == os.getpid()


def test_without_flock_an_exclusive_file_locks_and_a_dead_holder_is_taken_over(
    tmp_path, monkeypatch
):
    import errno
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")  # what some NFS/Lustre mounts answer

    monkeypatch.setattr(fcntl, "flock", no_flock)
    first = workdir_lib.WorkdirLock(tmp_path).acquire()
    with pytest.raises(WorkdirError) as error:
        workdir_lib.WorkdirLock(tmp_path).acquire()
    assert f"in use by process {os.getpid()} on host {socket.gethostname()}" in str(error.value)
    first.release()
    assert not (tmp_path / workdir_lib.EXCLUSIVE_LOCK_NAME).exists()

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    (tmp_path / workdir_lib.EXCLUSIVE_LOCK_NAME).write_text(
        json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "earlier"})
    )
    with workdir_lib.WorkdirLock(tmp_path):
        assert workdir_lib.WorkdirLock.holder(tmp_path)["pid"] == os.getpid()
    # A holder on another host cannot be checked: refused, naming the file to delete if it is stale.
    (tmp_path / workdir_lib.EXCLUSIVE_LOCK_NAME).write_text(
        json.dumps({"pid": 1, "host": "elsewhere", "since": "earlier"})
    )
    with pytest.raises(WorkdirError, match="on host elsewhere .* delete .*lock.excl"):
        workdir_lib.WorkdirLock(tmp_path).acquire()


def test_workdir_under_a_file_is_refused_before_any_work(data_root, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(WorkdirError, match="is a file, not a directory"):
        train_and_evaluate(fixtures.tiny_config(data_root), tmp_path / "file" / "run")


def test_relaunch_with_a_different_config_is_refused_and_allowed_changes_are_recorded(
    data_root, tmp_path
):
    tiny_model.register()
    first = train_and_evaluate(fixtures.tiny_config(data_root, steps=6), tmp_path)
    recorded = (tmp_path / "config.json").read_bytes()
    assert workdir_lib.is_finished(tmp_path)

    # A different learning rate: refused with the key, both values and the way out; nothing changes.
    config = fixtures.tiny_config(data_root, steps=6)
    with config.unlocked():
        config.optim.lr = 0.3
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(config, tmp_path)
    message = str(error.value)
    assert "optim.lr: 0.03 in the workdir, 0.3 now" in message and "new --workdir" in message
    assert "optim.lr cannot change in a resumed run" in message
    assert (tmp_path / "config.json").read_bytes() == recorded

    # More steps: a safe key, but only when named.
    longer = fixtures.tiny_config(data_root, steps=9)
    with pytest.raises(ConfigError, match="--resume_with_changes=train.steps"):
        train_and_evaluate(longer, tmp_path)
    with pytest.raises(ConfigError, match="not safe to change"):
        train_and_evaluate(longer, tmp_path, resume_with_changes=("train.steps", "optim.lr"))
    resumed = train_and_evaluate(longer, tmp_path, resume_with_changes=("train.steps",))
    assert resumed["steps"] == 9 and resumed["params_digest"] != first["params_digest"]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 9
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume_with_changes"]
    assert history[1]["changes"] == {"train.steps": [6, 9]}
    assert workdir_lib.is_finished(tmp_path)
    records = MetricWriter.read(tmp_path / "metrics.jsonl")
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 9


def test_a_record_from_an_older_tljax_accepts_new_keys_at_their_default(data_root, tmp_path):
    config = fixtures.tiny_config(data_root)
    workdir_lib.record_config(tmp_path, config)
    # What an older tljax recorded: no `optim.layer_decay` (added later) and no `probe.C`.
    record = json.loads((tmp_path / "config.json").read_text())
    del record["optim"]["layer_decay"], record["probe"]["C"]
    fileio.atomic_write_json(tmp_path / "config.json", record)
    workdir_lib.write_results(tmp_path, {"test_accuracy": 0.5})
    assert workdir_lib.is_finished(tmp_path)

    assert workdir_lib.record_config(tmp_path, config) == {}  # both at their defaults: same run
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["added_with_defaults"] == {"optim.layer_decay": 0.0, "probe.C": 1.0}
    assert workdir_lib.is_finished(tmp_path)  # still the finished run, re-stamped
    assert workdir_lib.read_results(tmp_path)["test_accuracy"] == 0.5

    del record["probe"]["optax_lr"]
    fileio.atomic_write_json(tmp_path / "config.json", record)
    other = fixtures.tiny_config(data_root)
    with other.unlocked():
        other.probe.optax_lr = 0.5  # a new key, but not at its default: another run
    with pytest.raises(ConfigError, match="probe.optax_lr: <absent> in the workdir, 0.5 now"):
        workdir_lib.record_config(tmp_path, other)


def test_metrics_are_cut_after_the_restored_step_without_rewriting_the_rest(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = MetricWriter(tmp_path)
    for step in range(1, 7):
        writer.write("train", step, {"loss": 1.0 / step})
    writer.write("test", 6, {"accuracy": 0.5})
    writer.close()
    with open(path, "a") as file:
        file.write('{"step": 7, "split": "tr')  # torn by a kill
    before = path.read_bytes()
    inode = path.stat().st_ino

    writer = MetricWriter(tmp_path, resume_step=4)
    writer.write("train", 5, {"loss": 0.5})
    writer.close()
    after = path.read_bytes()
    kept = b"".join(before.splitlines(keepends=True)[:4])
    assert (
        after.startswith(kept) and path.stat().st_ino == inode
    )  # truncated in place, not rewritten
    assert [(r["split"], r["step"]) for r in MetricWriter.read(path)] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("train", 4),
        ("train", 5),
    ]
    # A resumed finished run (restored at its last step) drops only the final test record.
    writer = MetricWriter(tmp_path, resume_step=5)
    writer.close()
    assert len(MetricWriter.read(path)) == 5


def test_a_plot_that_fails_midway_leaves_the_previous_figure_whole(tmp_path, monkeypatch):
    path = tmp_path / "confusion_matrix.png"
    matrix = np.array([[3, 1], [0, 4]])
    plots.plot_confusion_matrix(matrix, ["a", "b"], path)
    whole = path.read_bytes()
    assert whole[:4] == b"\x89PNG"

    import matplotlib.figure

    def savefig_then_die(self, target, **kwargs):
        with open(target, "wb") as file:
            file.write(whole[:100])  # half a PNG, then the process "dies"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig_then_die)
    with pytest.raises(OSError):
        plots.plot_confusion_matrix(matrix * 2, ["a", "b"], path)
    assert path.read_bytes() == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png"]  # no temporary


def test_results_are_written_whole_and_stamped(tmp_path):
    fileio.atomic_write_json(tmp_path / "config.json", {"train": {"steps": 3}})
    written = workdir_lib.write_results(tmp_path, {"test_accuracy": 0.5})
    assert workdir_lib.read_results(tmp_path) == written and workdir_lib.is_finished(tmp_path)
    fileio.atomic_write_json(tmp_path / "config.json", {"train": {"steps": 4}})
    assert not workdir_lib.is_finished(tmp_path)  # results of another config: not finished
