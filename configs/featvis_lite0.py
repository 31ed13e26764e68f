r"""Feature visualisation of EfficientNet-Lite0's `blocks.10`, channels 0-7, with its real weights.

Activation maximisation in a decorrelated Fourier parameterisation with pad/jitter/scale/rotate
robustness (as in lucid), 128 px, 256 Adam steps; each channel is then compared with its best response
on the 20 ImageNet photos shipped in the foolbox wheel. This is `python -m tljax.visualize`'s default.

    python -m tljax.visualize --config=configs/featvis_lite0.py --out=/tmp/imageopt_out/featvis_blocks10.png

Result: the channels of `blocks.10` reach 6.0–12.9× their best value on the 20 ImageNet photos
(bench/figures/featvis_blocks10.png, 2026-12, "rbg" keys). `decay_power=1.5` rather than lucid's 1.0: bolder, smoother
patterns at the same objective on Lite0, whose stride-2 depthwise convs otherwise imprint a fine grid.
"""

from tljax.imageopt.featvis import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "efficientnet_lite0"
    config.weights = "efficientnet_lite0"  # the real ImageNet weights, installed offline
    config.tap = "blocks.10"
    config.channels = tuple(range(8))
    config.size = 128
    config.steps = 256
    config.learning_rate = 0.05
    config.decay_power = 1.5
    config.out = "/tmp/imageopt_out/featvis_blocks10.png"
    return config
