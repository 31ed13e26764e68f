"""Backbones for the image-optimisation tools: a headless `tljax.models` network, its weights and the
preprocessing those weights expect."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tljax.data.preprocess import MeanStd
from tljax.typing import Config, PyTree

__all__ = ["default_preprocessing", "from_config", "load_backbone"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def default_preprocessing(model_name: str) -> MeanStd:
    """The registered preprocessing of `model_name`'s own weights, else its family's (Lite: 127/128)."""
    from tljax import weights

    try:
        return weights.get_spec(model_name).preprocessing
    except (
        weights.UnknownWeightsError
    ):  # no weights under this architecture name (efficientnet_lite4)
        spec_name = "efficientnet_lite0" if model_name.startswith("efficientnet_lite") else "vgg19"
        return weights.get_spec(spec_name).preprocessing


def load_backbone(
    model_name: str,
    weights_name: str = "default",
    *,
    dtype: str | Any = "float32",
    seed: int = 0,
) -> tuple[nn.Module, PyTree, MeanStd]:
    """A headless `tljax.models` backbone, its variables and its preprocessing, for image optimisation.

    `weights_name`: "default" (the weights registered under the model's own name, e.g. "vgg19",
    "efficientnet_lite0"), another registered name, a file/directory path (e.g. a downloaded
    `vgg19-dcbb9e9d.pth`), or "random" (a seeded init: for benchmarks and plumbing tests).
    The classifier is dropped: taps never reach it, and VGG's fc6 alone is 400 MB.
    """
    from tljax import models, weights
    from tljax.train.state import make_key  # the project's one RNG-key policy ("rbg" keys)

    compute_dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    headless = models.get(model_name, include_top=False, dtype=compute_dtype)
    preprocessing = default_preprocessing(model_name)
    if weights_name == "random":
        variables = jax.jit(headless.init)(make_key(seed), jnp.zeros((1, 64, 64, 3), jnp.float32))
        return headless, variables, preprocessing
    source = model_name if weights_name == "default" else weights_name
    if not Path(os.fspath(source)).expanduser().exists():
        preprocessing = weights.get_spec(
            source
        ).preprocessing  # unknown names raise, listing known ones
    # `include_top=False` drops the file's head (named in the port report) when loading.
    return headless, weights.load(source, headless), preprocessing


def from_config(config: Config) -> tuple[nn.Module, PyTree, MeanStd]:
    """`load_backbone` for a tool's run config: its `model`, `weights`, `dtype` and `seed` keys."""
    return load_backbone(
        config.model,
        config.weights,
        dtype=config.get("dtype", "float32"),
        seed=config.get("seed", 0),
    )
