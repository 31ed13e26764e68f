"""Trainer tests: the tiny model is importable from here, and XLA's persistent compilation cache is on.

Several tests compile the same programs (a reference run and its resumed twin, the CLI subprocesses);
the cache makes each program compile once per session instead of once per process.
"""

import os
import tempfile

import jax
import pytest
import tiny_model

CACHE_DIR = os.path.join(tempfile.gettempdir(), f"tljax-test-xla-cache-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)  # inherited by subprocesses
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(autouse=True, scope="module")
def _tiny_cnn_registered():
    """The tiny CNN is in the model registry for this directory's tests only."""
    tiny_model.register()
    yield
    tiny_model.unregister()
