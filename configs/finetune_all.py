r"""Fine-tune everything: pretrained EfficientNet-Lite0, backbone at 0.1× the head's learning rate.

Rules: `classifier/*` at lr, everything else at `backbone_lr_mult=0.1` × lr (discriminative fine-tuning;
`--config.optim.layer_decay=0.7` gives layer-wise decay instead). All BN layers update their statistics,
recomputed exactly after training (`train.precise_bn_batches`, see `get_config`).

Data: real Fashion-MNIST (Debian `dataset-fashion-mnist`), 28 px images resized to 32×32 (no crop) so
that the whole results table runs on a 2-core CPU (at 64 px the 10-shot linear probe reaches 68.0%
instead of 64.8%, at 4× the cost); N labelled images per class (`:shots=N`, seeded and class-balanced); no
validation split (the few labelled images all train); scored on all 10,000 test images. Augmentation:
random-resized-crop (scale 0.5–1) + horizontal flip. AdamW, cosine schedule, batch 32, 20 epochs at 10 shots, 5 at 100 shots.

    python -m tljax.main --config=configs/finetune_all.py:shots=10 --workdir=/tmp/finetune_all10
    python -m tljax.main --config=configs/finetune_all.py:shots=100 --workdir=/tmp/finetune_all100

Results (seed 0, all 10,000 test images; wall time on a shared 2-core CPU including weight loading,
compilation and the test pass):
    shots=10  (  100 train images, 60 steps): test accuracy 45.64%  (54 s)
    shots=100 (1,000 train images, 155 steps): test accuracy 64.52%  (62 s)
    (BN moving averages only, no precise BN, shots=10: 28.88%)
"""

import sys
from pathlib import Path

# Configs load by file path, not as a package: the shared experiment is found next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402


def get_config(arg: str | None = None):
    """`arg`: `shots=N` (labelled images per class; `all` = the 60,000), `size=32` (pixels)."""
    config = fashion_mnist_lite0_config("finetune_all", arg)
    config.optim.backbone_lr_mult = 0.1
    config.lock()
    return config
