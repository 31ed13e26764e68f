"""Sweep tests: the tiny CNN registered, a shared image folder, XLA's persistent compilation cache on
(inherited by the point processes, so each tiny program compiles once per session), and a real
single-node SLURM cluster for the SLURM backend test (started once, left running if it already was)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY_SWEEP = Path(__file__).with_name("tiny_sweep.py")

CACHE_DIR = os.path.join(tempfile.gettempdir(), f"tljax-test-xla-cache-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(autouse=True, scope="module")
def _tiny_cnn_registered():
    tiny_model.register()
    yield
    tiny_model.unregister()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return fixtures.make_image_folder(tmp_path_factory.mktemp("sweep-data"))


def sweep_env() -> dict[str, str]:
    """The environment of a sweep subprocess: this checkout's tljax first on the path."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """`launch/slurm_local.sh start` (installs slurm-wlm + munge if missing); stopped at the end only
    if this session started it. Returns the environment for sbatch/squeue (SLURM_CONF set)."""
    script = REPO / "launch" / "slurm_local.sh"
    started = subprocess.run(
        ["bash", str(script), "start"], capture_output=True, text=True, timeout=600, check=False
    )
    assert started.returncode == 0, f"SLURM did not start:\n{started.stdout}\n{started.stderr}"
    conf = (
        subprocess.run(["bash", str(script), "env"], capture_output=True, text=True, check=True)
        .stdout.split("=", 1)[1]
        .strip()
    )
    yield {**sweep_env(), "SLURM_CONF": conf}
    if started.stdout.strip() == "started":
        subprocess.run(["bash", str(script), "stop"], timeout=120, check=False)
