"""Scale-out (issue 10): the mesh spec, per-process data shards, multi-process start-up, and — in
subprocesses with 8 forced CPU devices, so the rest of the suite keeps one — sharded training that
equals the 1-device run, global BatchNorm statistics, ragged evaluation, checkpoints that resume on
another device count, and 2 processes × 4 devices that equal 1 × 8 and survive a `kill -9`.

Measured difference, 8 devices (and 2 processes × 4) vs 1 device, 12 SGD steps of the tiny CNN (the
summation order of the batch reductions differs): train losses within 2.4e-7 relative, final parameters
within 3.0e-7 absolute; the tests allow 1e-5 for both.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fixtures
import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import worker

from tljax import parallel
from tljax.errors import ConfigError, UserError
from tljax.train import Checkpointer, train_and_evaluate
from tljax.train.writers import MetricWriter

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOSS_RTOL, PARAM_ATOL = 1e-5, 1e-5  # measured: 2.4e-7 and 3.0e-7


def _env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_losses(workdir: Path) -> list[float]:
    return [
        r["loss"] for r in MetricWriter.read(workdir / "metrics.jsonl") if r["split"] == "train"
    ]


def _final_state(workdir: Path, like=None):
    """The saved TrainState at step 12 as host arrays (restored onto this process's one device)."""
    checkpointer = Checkpointer(workdir)
    try:
        if like is None:
            return checkpointer.read_state(12)
        restored = checkpointer.latest.restore(
            12,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(
                    __import__("jax").tree.map(ocp.utils.to_shape_dtype_struct, like)
                )
            ),
        )
        return restored["state"]
    finally:
        checkpointer.close()


def _assert_same_run(a: dict, b: dict, what: str) -> None:
    for key in ("test_accuracy", "val_accuracy", "best_step", "steps", "test_examples"):
        assert a[key] == b[key], (what, key, a[key], b[key])
    for key in ("test_loss", "val_loss", "final_train_loss"):
        np.testing.assert_allclose(a[key], b[key], rtol=LOSS_RTOL, err_msg=f"{what}: {key}")
    assert a["confusion_matrix"] == b["confusion_matrix"], what


# ---------------------------------------------------------------- in-process, one device


def test_mesh_spec_takes_the_rest_and_names_bad_specs():
    assert parallel.resolve_axes((("data", -1),), 8) == (("data",), (8,))
    assert parallel.resolve_axes((("data", -1), ("model", 2)), 8) == (("data", "model"), (4, 2))
    assert parallel.resolve_axes((("model", 4), ("data", 2)), 8) == (("model", "data"), (4, 2))
    with pytest.raises(ConfigError, match="multiplies to 6 devices but 8 are present"):
        parallel.resolve_axes((("data", 3), ("model", 2)), 8)
    with pytest.raises(ConfigError, match="does not divide the 8 devices"):
        parallel.resolve_axes((("data", -1), ("model", 3)), 8)
    with pytest.raises(ConfigError, match="at most one axis"):
        parallel.resolve_axes((("data", -1), ("model", -1)), 8)
    with pytest.raises(ConfigError, match="include 'data'"):
        parallel.resolve_axes((("model", -1),), 8)
    with pytest.raises(ConfigError, match="positive integer or -1"):
        parallel.resolve_axes((("data", 0),), 8)


def test_sharding_rules_and_resume_layout_are_checked_before_work():
    mesh = parallel.make_mesh((("data", -1), ("model", 1)))
    with pytest.raises(ConfigError, match="axis 'fsdp', which the mesh"):
        parallel.param_specs({"dense": {"kernel": np.zeros((4, 4))}}, ((".*", "fsdp"),), mesh)
    with pytest.raises(ConfigError, match="invalid regex"):
        parallel.param_specs({"dense": {"kernel": np.zeros((4, 4))}}, (("(", "model"),), mesh)
    placement = parallel.Placement(mesh)
    assert placement.own_iterator_state({"next_index": 5}) == {"next_index": 5}
    saved_by_two = {"process_count": 2, "processes": [{"next_index": 5}, {"next_index": 5}]}
    with pytest.raises(ConfigError, match="written by 2 process"):
        placement.own_iterator_state(saved_by_two)


def test_process_shards_partition_every_global_batch():
    """Process p reads rows [p·b, (p+1)·b) of each global batch; with padding, the processes' batches
    side by side are the global batches, the last one completed by masked padding."""
    elements = grain.MapDataset.range(10).map(lambda i: {"x": np.int64(i)})
    pad = lambda: {"x": np.int64(-1)}  # noqa: E731
    shards = [list(parallel.shard_for_process(elements, 2, p, 2, pad=pad)) for p in range(2)]
    assert [e["x"] for e in shards[0]] == [0, 1, 4, 5, 8, 9]
    assert [e["x"] for e in shards[1]] == [2, 3, 6, 7, -1, -1]
    assert [float(e["mask"]) for e in shards[1]] == [1, 1, 1, 1, 0, 0]
    train = [list(parallel.shard_for_process(elements, 2, p, 2))[:4] for p in range(2)]
    assert [e["x"] for e in train[0]] == [0, 1, 4, 5]
    assert [e["x"] for e in train[1]] == [2, 3, 6, 7]


def test_initialize_single_explicit_errors_and_partial_slurm():
    assert parallel.initialize(environ={}).mode == "single"
    partial_slurm = {"SLURM_JOB_ID": "12", "SLURM_NTASKS": "2"}  # no task layout (jax issue 30073)
    assert parallel.initialize(environ=partial_slurm).mode == "single"
    with pytest.raises(ConfigError, match="needs all of --coordinator_address"):
        parallel.initialize("127.0.0.1:1234", None, 0, environ={})
    with pytest.raises(ConfigError, match="must be in 0 … 1"):
        parallel.initialize("127.0.0.1:1234", 2, 2, environ={})


def test_unreachable_coordinator_is_one_clear_error_with_the_address():
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(
        UserError, match=f"coordinator 127.0.0.1:{port} could not be reached within 1 s"
    ):
        parallel.initialize(f"127.0.0.1:{port}", 2, 1, timeout_s=1, environ={})
    assert time.monotonic() - started < 10


def test_slurm_task_layout_is_detected():
    """Two tasks with the variables `srun -n2` sets join into one run of 2 × 2 devices by themselves."""
    job_id = str(
        np.random.default_rng().integers(10_000, 1_000_000)
    )  # JAX derives the port from it
    tasks = [
        subprocess.Popen(
            [sys.executable, str(HERE / "slurm_probe.py")],
            cwd=REPO,
            env={
                **_env(2),
                "SLURM_JOB_ID": job_id,
                "SLURM_NTASKS": "2",
                "SLURM_PROCID": str(index),
                "SLURM_LOCALID": str(index),
                "SLURM_STEP_NODELIST": "localhost",
                "SLURM_NODELIST": "localhost",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [task.communicate(timeout=120)[0] for task in tasks]
    for index, output in enumerate(outputs):
        result = [line for line in output.splitlines() if line.startswith("RESULT")]
        # Rows of process 0 hold 0, of process 1 hold 1: the global sum over 4 devices is 2.
        assert result == [f"RESULT slurm {index} 2 4 2.0"], output[-3000:]


def test_cli_with_an_unreachable_coordinator_exits_2_with_one_line(tmp_path):
    """Every main joins through `tljax.cli.run`: a coordinator nobody listens on is one line, exit 2."""
    port = _free_port()
    done = subprocess.run(
        [
            sys.executable, "-m", "tljax.main",
            f"--config={REPO / 'tests/train/tiny_run_config.py'}:{tmp_path}",
            f"--workdir={tmp_path / 'run'}",
            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=1",
            "--distributed_timeout=1",
        ],
        cwd=REPO, env=_env(1), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the coordinator 127.0.0.1:{port} could not be reached within 1 s ([Errno 111] "
        "Connection refused): start process 0 with the same --coordinator_address, check the host "
        "and port (and firewalls), or raise --distributed_timeout"
    ], done.stderr[-3000:]
    assert not (tmp_path / "run").exists()  # nothing started


# ---------------------------------------------------------------- 8 devices, 2 processes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 1-device reference run (here), then the 8-device subprocess (checks + run + 1→8 resume)."""
    tmp = tmp_path_factory.mktemp("parallel")
    data_root = fixtures.make_image_folder(tmp / "data")
    one = train_and_evaluate(worker.run_config(data_root), tmp / "one-device")
    spec = {
        "data": str(data_root),
        "tmp": str(tmp),
        "workdir": str(tmp / "eight-devices"),
        "one_device_workdir": str(tmp / "one-device"),
        "out": str(tmp / "eight.json"),
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "eight_devices.py"), json.dumps(spec)],
        cwd=REPO,
        env=_env(8),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return {
        "tmp": tmp,
        "data": data_root,
        "one": one,
        "eight": json.loads(Path(spec["out"]).read_text()),
    }


def test_eight_devices_equal_one_device(runs):
    one, eight = runs["one"], runs["eight"]["run"]
    tmp = runs["tmp"]
    assert eight["train_trace_count"] == 1
    np.testing.assert_allclose(
        _train_losses(tmp / "eight-devices"), _train_losses(tmp / "one-device"), rtol=LOSS_RTOL
    )
    _assert_same_run(eight, one, "8 devices vs 1")
    reference = _final_state(tmp / "one-device")
    on_one_device = _final_state(tmp / "eight-devices", like=reference)
    for a, b in zip(
        __import__("jax").tree.leaves(on_one_device),
        __import__("jax").tree.leaves(reference),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=PARAM_ATOL)


def test_checkpoints_resume_across_device_counts(runs):
    tmp = runs["tmp"]
    # 1 → 8 happened in the subprocess; 8 → 1 here, from the 8-device run as it was after step 6.
    _assert_same_run(runs["eight"]["resumed_from_one_device"], runs["one"], "1 → 8 devices")
    resumed = worker.rewind(tmp / "eight-devices", tmp / "from-eight-devices", 6)
    _assert_same_run(
        train_and_evaluate(worker.run_config(runs["data"]), resumed), runs["one"], "8 → 1"
    )


def _launch(runs, workdir: Path, port: int, name: str, **extra) -> list[subprocess.Popen]:
    processes = []
    for index in range(2):
        spec = {
            "data": str(runs["data"]),
            "workdir": str(workdir),
            "out": str(runs["tmp"] / f"{name}-{index}.json"),
            "coordinator": f"127.0.0.1:{port}",
            "num_processes": 2,
            "process_id": index,
            "record": True,
            **extra,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "worker.py"), json.dumps(spec)],
                cwd=REPO,
                env=_env(4),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return processes


def test_two_processes_survive_kill9_and_equal_one_process(runs):
    tmp, workdir = runs["tmp"], runs["tmp"] / "two-processes"
    first = _launch(runs, workdir, _free_port(), "killed", slow=0.3, heartbeat=5)
    deadline = time.monotonic() + 240
    while not (workdir / "checkpoints" / "6").is_dir():
        assert time.monotonic() < deadline and first[0].poll() is None, first[0].communicate()[0][
            -3000:
        ]
        time.sleep(0.1)
    first[1].send_signal(signal.SIGKILL)
    try:
        output = first[0].communicate(timeout=60)[0]  # must end, not hang in a collective
    finally:
        first[0].kill()
    assert first[0].returncode != 0
    assert "heartbeat timeout" in output or "another task died" in output, output[-3000:]
    assert not (workdir / "results.json").exists()

    second = _launch(runs, workdir, _free_port(), "resumed")
    for process in second:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output[-4000:]
    outs = [json.loads((tmp / f"resumed-{i}.json").read_text()) for i in range(2)]
    assert [o["process_count"] for o in outs] == [2, 2] and outs[0]["device_count"] == 8
    resumed_steps = range(6 * 8, 12 * 8)  # global example indices of steps 7..12 (global batch 8)
    for index, out in enumerate(outs):
        # Each process decoded only rows [4p, 4p + 4) of each global batch of 8 …
        assert all((g % 8) // 4 == index for g in out["decoded"]), index
    # … and together every example of the resumed steps.
    assert set(resumed_steps) <= set(outs[0]["decoded"]) | set(outs[1]["decoded"])
    _assert_same_run(outs[0]["results"], runs["eight"]["run"], "2 × 4 (killed, resumed) vs 1 × 8")
    _assert_same_run(outs[0]["results"], runs["one"], "2 × 4 vs 1 device")
    assert outs[0]["results"]["params_digest"] == outs[1]["results"]["params_digest"]
