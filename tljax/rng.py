"""The one RNG-key policy: typed keys from XLA's "rbg" generator, made here and nowhere else.

XLA:CPU compiles threefry-based random code very slowly (model inits take several times longer to
compile), so tljax uses the "rbg" generator (XLA's RngBitGenerator) for every key it makes: parameter
init, dropout, weight-port fill-ins. It is deterministic for a seed on a given backend. Keys are typed
(`jax.random.key`, not raw `PRNGKey` arrays); a checkpoint stores their raw data, which `wrap_key` turns
back into a key.
"""

from __future__ import annotations

import jax

RNG_IMPL = "rbg"


def make_key(seed: int) -> jax.Array:
    """The typed PRNG key tljax uses for init, dropout and every other random draw."""
    return jax.random.key(seed, impl=RNG_IMPL)


def wrap_key(data: jax.Array) -> jax.Array:
    """Typed key from the raw key data stored in a checkpoint (a `TrainState.rng`)."""
    return jax.random.wrap_key_data(data, impl=RNG_IMPL)


__all__ = ["RNG_IMPL", "make_key", "wrap_key"]
