"""Tiny synthetic datasets and configs for the trainer tests (a few seconds each on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tljax.train.defaults import default_config

CLASSES = ("red", "green", "blue", "gray")


def make_image_folder(
    root: Path, *, per_class: int = 12, test_per_class: int = 6, size: int = 20, seed: int = 0
) -> Path:
    """`root/{train,test}/<class>/*.png`: noisy images whose class is a colour cast (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    tints = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "gray": (0.5, 0.5, 0.5)}
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                base = rng.uniform(40, 120, (size, size, 3))
                image = np.clip(base + 120 * np.asarray(tints[name]), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


def tiny_config(
    data_root: Path,
    *,
    model: str = "tiny_cnn",
    recipe: str = "scratch",
    steps: int = 12,
    image_size: int = 16,
):
    """A locked config training `model` on the generated folder: batch 8, val carved from train."""
    config = default_config()
    config.recipe = recipe
    config.model.name = model
    config.weights.name = None
    config.weights.preprocessing = "efficientnet_lite0"
    config.data.source = "image_folder"
    config.data.root = str(data_root)
    config.data.image_size = image_size
    config.data.resize_size = image_size
    config.data.val_per_class = 2
    config.data.num_workers = 1
    config.data.prefetch_batches = 0
    config.data.augment.enabled = True
    config.data.augment.scale = (0.5, 1.0)
    config.optim.name = "adamw"
    config.optim.lr = 3e-2
    config.optim.weight_decay = 1e-4
    config.train.batch_size = 8
    config.train.eval_batch_size = 8
    config.train.steps = steps
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.checkpoint_every = 3
    config.train.keep_checkpoints = 2
    config.train.precise_bn_batches = (
        2  # exercised by every tiny end-to-end run (and the resume test)
    )
    config.lock()
    return config
