r"""Zeiler–Fergus top-9 patches of EfficientNet-Lite0 at five depths, over real photos that install offline.

Scans foolbox's 20 ImageNet photos plus the scikit-image / scikit-learn / matplotlib sample photos (each
also as four quadrant crops), keeps the top-9 activations of channels 0-11 per tap with their
locations, and crops each unit's receptive field (computed from the architecture) from the original.

    python -m tljax.visualize --config=configs/top9_lite0.py --out=/tmp/imageopt_out/top9.png

Result: one row block per layer ("Layer 1 … Layer 5", bench/figures/top9_layers.jpg): colour blobs and
edges at `blocks.0`, textures by `blocks.4`, object parts at `blocks.8`.
"""

from tljax.imageopt.topk_patches import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "efficientnet_lite0"
    config.weights = "efficientnet_lite0"
    config.taps = ("blocks.0", "blocks.2", "blocks.4", "blocks.6", "blocks.8")
    config.channels = tuple(range(12))
    config.data = "photos"
    config.out = "/tmp/imageopt_out/top9.png"
    return config
