"""Scale-out tests: the tiny model and fixtures of tests/train, and XLA's persistent compilation cache
(shared with the subprocesses, which compile the same programs)."""

import os
import sys
import tempfile
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import tiny_model  # noqa: E402

CACHE_DIR = os.path.join(tempfile.gettempdir(), f"tljax-test-xla-cache-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(autouse=True, scope="module")
def _tiny_cnn_registered():
    tiny_model.register()
    yield
    tiny_model.unregister()
