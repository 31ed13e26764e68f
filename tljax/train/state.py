"""The training state: everything a checkpoint must hold to resume bit-for-bit."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

# The RNG-key policy ("rbg" keys) is tljax.rng's; re-exported here for the trainer.
from tljax.rng import RNG_IMPL, make_key, wrap_key
from tljax.typing import PyTree

__all__ = ["RNG_IMPL", "TrainState", "make_key", "wrap_key"]


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
