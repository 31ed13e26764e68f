"""tljax: transfer learning for computer vision in JAX/Flax.

Subpackages, in the direction data flows: `data` (sources, preprocessing, augmentation) → `models`
(architectures with named taps) + `weights` (registry, safe readers, name tables) → `optim` (parameter
groups, BN policy) → `train` (state, step, loop, checkpoints, writers); `imageopt` optimises images
through a fixed network. Command-line tools: `python -m tljax.{main,predict,convert,style,dream,visualize}`.
"""

__version__ = "0.1.0"
