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
    shots=10  (  100 train images, 60 steps): test accuracy 61.88%  (108 s)
    shots=100 (1,000 train images, 155 steps): test accuracy 69.61%  (184 s)
"""

from tljax.train.defaults import default_config, parse_config_arg


def get_config(arg: str | None = None):
    """`arg`: `shots=N` (labelled images per class; `all` = the 60,000), `size=32` (pixels)."""
    args = parse_config_arg(arg, shots=10, size=32)
    config = default_config()
    config.recipe = "feature_extractor"
    config.seed = 0
    config.model.name = "efficientnet_lite0"
    config.weights.name = "efficientnet_lite0"  # real ImageNet weights, offline
    config.weights.skip = (r"classifier/.*",)  # a new 10-class head
    config.data.source = "fashion_mnist"
    config.data.image_size = args["size"]
    config.data.resize_size = args["size"]
    config.data.train_per_class = args["shots"]
    config.data.augment.scale = (0.5, 1.0)

    config.optim.name = "adamw"
    config.optim.lr = 1e-2
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"

    config.train.batch_size = 32
    config.train.eval_batch_size = 250
    # ~60 steps at 10 shots (100 images), ~155 at 100 shots (1,000 images).
    config.train.epochs = 20 if (args["shots"] or 6000) <= 10 else 5
    config.train.log_every = 10
    config.train.checkpoint_every = 50
    config.lock()
    return config
