"""From a config to the pieces of a run: data, model, initial variables, parameter groups, BN policy.

Shared by the training loop and the linear probe, so both read the config the same way.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tljax import data as data_lib
from tljax import models, optim
from tljax.errors import ConfigError
from tljax.train.state import make_key
from tljax.typing import Config, PyTree

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
    if name not in DTYPES:
        raise ValueError(f"model.dtype {name!r}: use one of {sorted(DTYPES)}")
    return DTYPES[name]


def resolve_preprocessing(config: Config) -> Any:
    """The input normalisation and sizes: those of `weights.preprocessing`, else of `weights.name`.

    A scratch run (no weights) still needs one, so it sees exactly the inputs of the transfer run it is
    compared with.
    """
    from tljax import weights

    name = config.weights.preprocessing or config.weights.name
    if name and str(name).startswith("run:"):
        # A trained run as the source: its inputs were normalised like the weights it started from.
        from tljax.weights.runs import run_preprocessing_name

        name = run_preprocessing_name(str(name))
    if not name:
        raise ValueError(
            "no preprocessing: set weights.name (registered pretrained weights) or, for random init, "
            f"weights.preprocessing to a registered weights name ({', '.join(weights.list_weights())})"
        )
    try:
        return weights.get_spec(str(name)).preprocessing
    except ValueError as error:
        raise ValueError(
            f"weights {name!r} is not a registered name, so its preprocessing is unknown: set "
            f"weights.preprocessing to the registered weights whose normalisation it expects ({error})"
        ) from error


def build_data(config: Config) -> data_lib.Datasets:
    """`tljax.data.build_datasets` with the weights' preprocessing; logs sizes and skipped files."""
    datasets = data_lib.build_datasets(config.data, resolve_preprocessing(config), seed=config.seed)
    sizes = ", ".join(
        f"{name} {split.num_examples}"
        for name, split in (
            ("train", datasets.train),
            ("val", datasets.val),
            ("test", datasets.test),
        )
        if split is not None
    )
    logging.info(
        "data: %s classes (%s); %s px", datasets.num_classes, sizes, datasets.train.geometry.crop
    )
    if datasets.skipped.count:
        logging.warning("%s", datasets.skipped.summary())
    return datasets


def image_size(datasets: data_lib.Datasets) -> int:
    return int(datasets.train.geometry.crop)


def build_model(
    config: Config, num_classes: int, *, include_top: bool = True, frozen_bn=()
) -> nn.Module:
    return models.get(
        config.model.name,
        num_classes=num_classes,
        include_top=include_top,
        dtype=compute_dtype(config.model.dtype),
        param_dtype=jnp.float32,
        frozen_bn=tuple(frozen_bn),
    )


def init_variables(config: Config, model: nn.Module, size: int) -> PyTree:
    """Pretrained backbone + freshly initialised skipped layers (the head), or a random init (scratch)."""
    rng = make_key(config.seed)
    if config.recipe == "transfer":
        from tljax import weights

        if not config.weights.name:
            raise ConfigError(
                "recipe 'transfer' copies layers from weights.name: set it to a finished run "
                "(--config.weights.name=run:WORKDIR) or pretrained weights"
            )
        # Layers 1..n from the source (strictly checked), everything above from model.init(rng): the
        # same seeded init a scratch run of this seed starts from.
        above = optim.transfer_skip(model.layers(), config.transfer.layers)
        logging.info(
            "transfer: layers 1..%d from %s (%s), layers above re-initialised (seed %d)",
            config.transfer.layers,
            config.weights.name,
            config.transfer.mode,
            config.seed,
        )
        variables = weights.load(config.weights.name, model, skip=above, rng=rng)
    elif config.weights.name:
        from tljax import weights

        logging.info(
            "weights: %s (new: %s)", config.weights.name, ", ".join(config.weights.skip) or "none"
        )
        variables = weights.load(
            config.weights.name, model, skip=tuple(config.weights.skip), rng=rng
        )
    else:
        logging.info("weights: random init (seed %d)", config.seed)
        variables = jax.jit(model.init)(rng, jnp.zeros((1, size, size, 3), jnp.float32))
    # Parameters stay fp32 whatever the compute dtype, and become plain dicts for path-based splitting.
    return jax.tree.map(
        lambda x: jnp.asarray(x, jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        {k: dict(v) for k, v in dict(variables).items()},
    )


@dataclasses.dataclass
class Groups:
    """The parameter-group assignment and the BN policy derived from a config and a parameter tree."""

    assignment: optim.Assignment
    bn_decisions: dict[str, str]

    @property
    def frozen_bn(self) -> tuple[str, ...]:
        return optim.frozen_bn_field(self.bn_decisions)


def param_rules(config: Config, model: nn.Module) -> list[tuple[str, Any]]:
    """`optim.param_rules` if given, else the recipe's rules for this model's stages."""
    if config.optim.param_rules:
        return [tuple(rule) for rule in config.optim.param_rules]
    return optim.recipe_rules(
        config.recipe,
        model.stages(),
        trainable_stages=config.optim.trainable_stages,
        backbone_lr_mult=config.optim.backbone_lr_mult,
        layer_decay=config.optim.layer_decay,
        layers=model.layers() if config.recipe == "transfer" else (),
        transfer_layers=config.transfer.layers,
        transfer_mode=config.transfer.mode,
        transfer_lr_mult=config.transfer.lr_mult,
    )


def build_groups(config: Config, model: nn.Module, variables: PyTree) -> Groups:
    """Matches the rules, resolves the BN policy, logs both tables."""
    assignment = optim.assign_groups(variables["params"], param_rules(config, model))
    logging.info("parameter groups (%s):\n%s", config.recipe, assignment.table())
    bn_rules = [tuple(rule) for rule in config.bn.rules] if config.bn.rules else None
    decisions = optim.resolve_bn_policy(
        optim.bn_module_paths(variables.get("batch_stats", {})), bn_rules, assignment
    )
    if decisions:
        logging.info(
            "%s%s",
            optim.bn_table(decisions),
            "" if bn_rules else " (default: follow the parameters)",
        )
    return Groups(assignment, decisions)


def tree_digest(tree: PyTree) -> str:
    """A short content hash of an array tree (for logs and tests)."""
    import hashlib

    digest = hashlib.sha256()
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda kv: str(kv[0])
    ):
        digest.update(str(path).encode())
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()[:16]


def file_identity(name_or_path: str | None) -> str:
    """What identifies weights for a cache key: the name, or a path with its size and mtime."""
    if not name_or_path:
        return "random"
    if os.path.exists(name_or_path):
        stat = os.stat(name_or_path)
        return f"{os.path.abspath(name_or_path)}:{stat.st_size}:{int(stat.st_mtime)}"
    return str(name_or_path)
