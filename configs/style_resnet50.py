r"""Neural style transfer with ResNet-50: a starting point (no ResNet weights install offline to tune on).

Style from the stem and one block of each stage, content from a mid-network block (the usual choice);
β/α = 100 and a TV term, since ResNet's block outputs are not post-ReLU features like VGG's.

    python -m tljax.style --config=configs/style_resnet50.py --config.weights=/path/resnet50-0676ba61.pth \
        --content=cat.png --style=klimt.png --out=/tmp/imageopt_out/style_resnet50.png

Result: not measured here (no weights offline). On XLA:CPU one compiled step per call is faster than
`lax.scan` for ResNet-50 (`cpu_loop="python"`, see `bench/style_step.py`).
"""

from tljax.imageopt.style import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "resnet50"
    config.weights = "resnet50"
    config.out = "/tmp/imageopt_out/style_resnet50.png"
    config.content_taps = ("layer3.1",)
    config.style_taps = ("stem", "layer1.2", "layer2.3", "layer3.5")
    config.content_weight = 10.0
    config.style_weight = 1e3
    config.tv_weight = 10.0
    config.cpu_loop = "python"
    return config
