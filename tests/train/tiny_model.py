"""A tiny CNN with the tljax model interface (apply/taps/frozen_bn/stages/tap_names), for fast tests.

`register()` adds it to `tljax.models` as "tiny_cnn" so `train_and_evaluate` can build it by name; the
kill -9 test's subprocess calls it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tljax.models.common import TapRecorder, batch_norm


class TinyCNN(nn.Module):
    num_classes: int = 4
    include_top: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    frozen_bn: Sequence[str] = ()
    width: int = 8

    def tap_names(self) -> tuple[str, ...]:
        names = ("stem", "block1", "pool")
        return (*names, "logits") if self.include_top else names

    def stages(self) -> tuple[tuple[str, ...], ...]:
        out = [("stem_conv", "stem_bn"), ("block1_conv", "block1_bn")]
        return tuple(out + [("classifier",)]) if self.include_top else tuple(out)

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        rec = TapRecorder(taps, self.tap_names(), "tiny_cnn")
        bn = dict(
            train=train,
            frozen_bn=self.frozen_bn,
            epsilon=1e-5,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = x.astype(self.dtype)
        x = nn.Conv(
            self.width,
            (3, 3),
            strides=(2, 2),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="stem_conv",
        )(x)
        x = nn.relu(batch_norm(self, "stem_bn", x, **bn))
        if rec.add("stem", x):
            return rec.outputs
        x = nn.Conv(
            2 * self.width,
            (3, 3),
            strides=(2, 2),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="block1_conv",
        )(x)
        x = nn.relu(batch_norm(self, "block1_bn", x, **bn))
        if rec.add("block1", x):
            return rec.outputs
        x = x.mean(axis=(1, 2))
        if rec.add("pool", x) or not self.include_top:
            return rec.outputs if rec.active else x
        x = nn.Dropout(0.1, deterministic=not train)(x)
        x = nn.Dense(
            self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="classifier"
        )(x)
        if rec.add("logits", x):
            return rec.outputs
        return x


def register() -> None:
    """Registers TinyCNN as "tiny_cnn" (idempotent)."""
    from tljax.models import registry

    if "tiny_cnn" not in registry.list_models():
        registry.register("tiny_cnn")(lambda **kwargs: TinyCNN(**kwargs))


def unregister() -> None:
    """Removes "tiny_cnn" again, so tests elsewhere that list the model zoo never see it."""
    from tljax.models import registry

    registry._MODELS.pop("tiny_cnn", None)
