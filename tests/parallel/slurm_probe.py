"""One task of a simulated `srun -n2`: joins through `tljax.parallel.initialize()`'s SLURM detection
and prints the layout and a global sum, for `test_parallel.py`."""

import numpy as np

from tljax import parallel

info = parallel.initialize(timeout_s=60)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

mesh = parallel.make_mesh()
rows = parallel.global_batch(
    np.full((2,), jax.process_index(), np.float32), parallel.batch_sharding(mesh)
)
print(
    "RESULT", info.mode, info.index, info.count, jax.device_count(), float(jax.jit(jnp.sum)(rows))
)
