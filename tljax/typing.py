"""The type aliases tljax annotates with, defined once.

`PyTree` is any nested structure of containers and array leaves that `jax.tree_util` walks (params,
batch statistics, optimizer state, batches); JAX itself types these as `Any`, so the alias documents
intent rather than narrowing anything. `Config` is the `ml_collections.ConfigDict` that every tool's
`default_config()` returns and that `--config.key=value` overrides; the tools read it by attribute.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import ml_collections

PyTree: TypeAlias = Any
Config: TypeAlias = ml_collections.ConfigDict

__all__ = ["Config", "PyTree"]
