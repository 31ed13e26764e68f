"""The experiment shared by the Fashion-MNIST × EfficientNet-Lite0 recipes (not a config itself).

The recipe configs (`finetune_top.py`, `finetune_all.py`, `feature_extractor.py`, `scratch.py`,
`fashion_mnist_lite0.py`) start from `fashion_mnist_lite0_config` and change what makes their recipe.
Configs are loaded by file path, not as a package, so they import this module as shown in each of them
(`sys.path` gets this directory).
"""

from __future__ import annotations

import ml_collections

from tljax.train.defaults import default_config, parse_config_arg


def fashion_mnist_lite0_config(
    recipe: str, arg: str | None, *, default_shots: int = 10
) -> ml_collections.ConfigDict:
    """The set-up shared by the Fashion-MNIST × EfficientNet-Lite0 recipes in `configs/` (unlocked).

    Real Lite0 ImageNet weights with a new 10-class head; Fashion-MNIST resized to `size`×`size` (no
    crop); `shots` labelled images per class (`all` = the 60,000); random-resized-crop (0.5–1) + flip;
    AdamW 3e-3, cosine, batch 32, ~60 steps at ≤10 shots and ~155 at 100 shots; precise BN over 10 batches
    (Lite's BN momentum 0.99 leaves moving averages far from the trained statistics on runs this short).
    `arg` is the config-file argument: `shots=N,size=S`.
    """
    args = parse_config_arg(arg, shots=default_shots, size=32)
    config = default_config()
    config.recipe = recipe
    config.seed = 0
    config.model.name = "efficientnet_lite0"
    config.weights.name = "efficientnet_lite0"  # real ImageNet weights, offline
    config.weights.skip = (r"classifier/.*",)  # a new 10-class head
    config.data.source = "fashion_mnist"
    config.data.image_size = args["size"]
    config.data.resize_size = args["size"]
    config.data.train_per_class = args["shots"]
    config.data.augment.scale = (0.5, 1.0)

    config.optim.name = "adamw"
    config.optim.lr = 3e-3
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"

    config.train.batch_size = 32
    config.train.eval_batch_size = 250
    config.train.epochs = 20 if (args["shots"] or 6000) <= 10 else 5
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    config.train.precise_bn_batches = 10
    return config
