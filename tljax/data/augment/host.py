"""Training augmentation: a registry of per-example and per-batch operations, chosen by name in the config.

Two hook points, because augmentations come in two kinds:
- example ops `op(image, rng) -> image` on one `uint8 [S, S, 3]` image after the crop (flip, colour
  jitter, RandAugment...). They run in the pipeline's worker threads with a generator that grain seeds from
  the pipeline seed and the example's position, so an epoch is reproducible for a seed.
- batch ops `op(batch, rng) -> batch` on the normalised batch `{"image": float32 [B, H, W, 3],
  "label": int32 [B]}` (mixup, CutMix: they mix examples, so they need the batch). A batch op may add keys
  (e.g. soft labels); the trainer decides what it reads.
The random-resized-crop itself is not an op: it needs the full decoded picture (see `preprocess`).

To add one: `@register_example_op("name")` on a factory `factory(augment_config) -> op`, then list "name"
in `data.augment.example_ops` (new hyper-parameters go in `default_data_config().augment`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tljax.typing import Config

ExampleOp = Callable[[np.ndarray, np.random.Generator], np.ndarray]
BatchOp = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]
ExampleOpFactory = Callable[[Any], ExampleOp]
BatchOpFactory = Callable[[Any], BatchOp]

EXAMPLE_OPS: dict[str, ExampleOpFactory] = {}
BATCH_OPS: dict[str, BatchOpFactory] = {}


def register_example_op(name: str) -> Callable[[ExampleOpFactory], ExampleOpFactory]:
    """Decorator: register `factory(augment_config) -> op(image uint8 [S,S,3], rng) -> image` as `name`."""

    def decorator(factory: ExampleOpFactory) -> ExampleOpFactory:
        if name in EXAMPLE_OPS:
            raise ValueError(f"example op {name!r} is already registered")
        EXAMPLE_OPS[name] = factory
        return factory

    return decorator


def register_batch_op(name: str) -> Callable[[BatchOpFactory], BatchOpFactory]:
    """Decorator: register `factory(augment_config) -> op(batch dict, rng) -> batch dict` as `name`."""

    def decorator(factory: BatchOpFactory) -> BatchOpFactory:
        if name in BATCH_OPS:
            raise ValueError(f"batch op {name!r} is already registered")
        BATCH_OPS[name] = factory
        return factory

    return decorator


def _build(names: Any, registry: dict[str, Any], kind: str, augment_config: Config) -> list[Any]:
    ops = []
    for name in tuple(names or ()):
        if name not in registry:
            raise ValueError(f"unknown {kind} op {name!r}; registered: {sorted(registry)}")
        ops.append(registry[name](augment_config))
    return ops


def build_example_ops(augment_config: Config) -> list[ExampleOp]:
    """The example ops named in `augment_config.example_ops`, in order."""
    return _build(augment_config.example_ops, EXAMPLE_OPS, "example", augment_config)


# Batch ops that run on device in the train step (`tljax.data.augment.device`), not in the pipeline.
DEVICE_BATCH_OPS = ("mixup", "cutmix")


def build_batch_ops(augment_config: Config) -> list[BatchOp]:
    """The host batch ops named in `augment_config.batch_ops`, in order (the device ones are skipped)."""
    names = [name for name in tuple(augment_config.batch_ops or ()) if name not in DEVICE_BATCH_OPS]
    return _build(names, BATCH_OPS, "batch", augment_config)


@register_example_op("hflip")
def horizontal_flip(augment_config: Config) -> ExampleOp:
    """Mirror left-right with probability `augment_config.hflip_prob`."""
    probability = float(augment_config.hflip_prob)

    def op(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return image[:, ::-1] if rng.random() < probability else image

    return op


# Registers "searched_policy" (the trainable Faster AutoAugment policy, applied from its saved JSON).
from tljax.data import trainable_policy as _trainable_policy  # noqa: E402, F401
