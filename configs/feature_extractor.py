r"""Feature extractor: frozen pretrained EfficientNet-Lite0 backbone, a new trained head.

Only `classifier/*` trains; every backbone parameter is frozen (no gradient, no optimizer state),
and the backbone's BatchNorm layers keep their ImageNet statistics (the default BN policy: statistics
follow the parameters, so a frozen backbone runs in inference mode).

Data: real Fashion-MNIST (Debian `dataset-fashion-mnist`), 28 px images resized to 32×32 (no crop) so
that the whole results table runs on a 2-core CPU (at 64 px the 10-shot linear probe reaches 68.0%
instead of 64.8%, at 4× the cost); N labelled images per class (`:shots=N`, seeded and class-balanced); no
validation split (the few labelled images all train); scored on all 10,000 test images. Augmentation:
random-resized-crop (scale 0.5–1) + horizontal flip. AdamW, cosine schedule, batch 32, 20 epochs at 10 shots, 5 at 100 shots.

    python -m tljax.main --config=configs/feature_extractor.py:shots=10 --workdir=/tmp/feature_extractor10
    python -m tljax.main --config=configs/feature_extractor.py:shots=100 --workdir=/tmp/feature_extractor100

Results (seed 0, all 10,000 test images; wall time on a shared 2-core CPU including weight loading,
compilation and the test pass):
    shots=10  (  100 train images, 60 steps): test accuracy 61.88%  (22 s)
    shots=100 (1,000 train images, 155 steps): test accuracy 69.61%  (25 s)
"""

import sys
from pathlib import Path

# Configs load by file path, not as a package: the shared experiment is found next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402


def get_config(arg: str | None = None):
    """`arg`: `shots=N` (labelled images per class; `all` = the 60,000), `size=32` (pixels)."""
    config = fashion_mnist_lite0_config("feature_extractor", arg)
    config.optim.lr = 1e-2
    config.train.precise_bn_batches = 0  # the backbone's BN statistics are frozen with it
    config.lock()
    return config
