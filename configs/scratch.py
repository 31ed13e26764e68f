r"""Scratch baseline: the same EfficientNet-Lite0 architecture from a random init, all parameters train.

Same inputs (the Lite0 preprocessing), same schedule and budget as the transfer recipes, so the
difference in the results table is the pretrained weights. Every BN layer updates its statistics, and
they are recomputed exactly after training (`train.precise_bn_batches`, see `get_config`).

Data: real Fashion-MNIST (Debian `dataset-fashion-mnist`), 28 px images resized to 32×32 (no crop) so
that the whole results table runs on a 2-core CPU (at 64 px the 10-shot linear probe reaches 68.0%
instead of 64.8%, at 4× the cost); N labelled images per class (`:shots=N`, seeded and class-balanced); no
validation split (the few labelled images all train); scored on all 10,000 test images. Augmentation:
random-resized-crop (scale 0.5–1) + horizontal flip. AdamW, cosine schedule, batch 32, 20 epochs at 10 shots, 5 at 100 shots.

    python -m tljax.main --config=configs/scratch.py:shots=10 --workdir=/tmp/scratch10
    python -m tljax.main --config=configs/scratch.py:shots=100 --workdir=/tmp/scratch100

Results (seed 0, all 10,000 test images; wall time on a shared 2-core CPU including weight loading,
compilation and the test pass):
    shots=10  (  100 train images, 60 steps): test accuracy 42.38%  (49 s)
    shots=100 (1,000 train images, 155 steps): test accuracy 59.80%  (54 s)
    (BN moving averages only, no precise BN, shots=10: 10.00%)
"""

import sys
from pathlib import Path

# Configs load by file path, not as a package: the shared experiment is found next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402


def get_config(arg: str | None = None):
    """`arg`: `shots=N` (labelled images per class; `all` = the 60,000), `size=32` (pixels)."""
    config = fashion_mnist_lite0_config("scratch", arg)
    config.weights.name = None  # random init
    config.weights.skip = (r"classifier/.*",)
    config.weights.preprocessing = "efficientnet_lite0"  # the same inputs as the transfer runs
    # Precise BN: without it the 10-shot run scored chance (10.00%): with Lite's BN momentum 0.99, 60
    # steps leave the moving averages near their random-init values of 0 and 1.
    config.lock()
    return config
