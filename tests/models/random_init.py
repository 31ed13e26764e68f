"""Random model variables drawn with NumPy from the abstract shapes (tests only).

`model.init` compiles a random-number kernel for every distinct parameter shape, which costs tens of
seconds per architecture on this CPU; for tests that only need *some* well-scaled weights this is instant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict


def random_variables(model, seed: int = 0, image_size: int = 64) -> dict:
    abstract = jax.eval_shape(
        model.init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32),
    )
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in flatten_dict(abstract).items():
        shape, name = leaf.shape, path[-1]
        if name == "kernel":  # He-scaled over the fan-in (all axes but the output one)
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif name == "scale":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "var":
            value = 0.5 + rng.random(shape)
        else:  # bias, mean
            value = 0.1 * rng.standard_normal(shape)
        flat[path] = jnp.asarray(value, leaf.dtype)
    return unflatten_dict(flat)
