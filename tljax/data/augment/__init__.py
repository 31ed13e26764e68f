"""Augmentation: host-side example/batch ops for the input pipeline, and the on-device library.

- `host`: the pipeline's registry of per-example numpy ops (flip) and batch ops, seeded by grain (its
  names are re-exported here, so `tljax.data.augment.EXAMPLE_OPS` etc. keep working).
- `ops`: on-device image ops `OPS[name](image [H, W, C] in [0, 1], magnitude in [0, 1], key)`.
- `mix`: mixup and CutMix with timm's conventions, soft targets with label smoothing folded in.
- `randaugment`, `augmix`: the two policies over `ops`, batched with one key per example; `augmix` also
  holds the Jensen–Shannon consistency loss.
- `device`: the config → one jit-able `augment(batch, key) -> batch` the train step calls.
"""

from tljax.data.augment import augmix, device, mix, ops, randaugment
from tljax.data.augment.host import (
    BATCH_OPS,
    EXAMPLE_OPS,
    BatchOp,
    ExampleOp,
    build_batch_ops,
    build_example_ops,
    horizontal_flip,
    register_batch_op,
    register_example_op,
)

__all__ = [
    "BATCH_OPS",
    "EXAMPLE_OPS",
    "BatchOp",
    "ExampleOp",
    "augmix",
    "build_batch_ops",
    "build_example_ops",
    "device",
    "horizontal_flip",
    "mix",
    "ops",
    "randaugment",
    "register_batch_op",
    "register_example_op",
]
