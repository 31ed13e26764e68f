"""The training state: everything a checkpoint must hold to resume bit-for-bit."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from tljax.typing import PyTree

# XLA:CPU compiles threefry-based random code very slowly (a ResNet-18 init: ~15 s vs ~4 s), so tljax
# uses the "rbg" generator (XLA's RngBitGenerator): deterministic for a seed on a given backend.
RNG_IMPL = "rbg"


def make_key(seed: int) -> jax.Array:
    """The typed PRNG key tljax uses for init and dropout."""
    return jax.random.key(seed, impl=RNG_IMPL)


def wrap_key(data: jax.Array) -> jax.Array:
    """Typed key from the raw data stored in a TrainState."""
    return jax.random.wrap_key_data(data, impl=RNG_IMPL)


@flax.struct.dataclass
class TrainState:
    """Parameters (fp32), BN running statistics, optimizer state, step and the base RNG key.

    The per-step dropout key is `fold_in(rng, step)`, so the RNG never needs to advance and a resumed run
    draws the same dropout masks as an uninterrupted one.
    """

    step: jax.Array  # int32 []
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array  # uint32 [4]: raw data of an "rbg" PRNG key (plain arrays checkpoint simply)

    @classmethod
    def create(
        cls, params: PyTree, batch_stats: PyTree, opt_state: PyTree, seed: int
    ) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            rng=jax.random.key_data(make_key(seed)),
        )

    def variables(self) -> dict[str, PyTree]:
        """The Flax variable dict for `model.apply` (no `batch_stats` entry for BN-free models)."""
        if self.batch_stats:
            return {"params": self.params, "batch_stats": self.batch_stats}
        return {"params": self.params}
