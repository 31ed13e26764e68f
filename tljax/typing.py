"""The type aliases tljax annotates with, defined once.

`PyTree` is any nested structure of containers and array leaves that `jax.tree_util` walks (params,
batch statistics, optimizer state, batches); JAX itself types these as `Any`, so the alias documents
intent rather than narrowing anything. `ModuleDef` is a Flax module class (or a `functools.partial` of
one) that an architecture takes as a field and instantiates, as flax's examples do (`conv: ModuleDef =
nn.Conv`). `Config` is the `ml_collections.ConfigDict` that every tool's
`default_config()` returns and that `--config.key=value` overrides; the tools read it by attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import ml_collections

PyTree: TypeAlias = Any
Config: TypeAlias = ml_collections.ConfigDict
ModuleDef: TypeAlias = Callable[..., Any]

__all__ = ["Config", "ModuleDef", "PyTree"]
