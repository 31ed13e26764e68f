r"""DeepDream with ResNet-50: amplify `layer3.3` (half the mean square); a starting point, untuned.

    python -m tljax.dream --config=configs/dream_resnet50.py --config.weights=/path/resnet50-0676ba61.pth \
        --image=photo.png --out=/tmp/imageopt_out/dream_resnet50.png

Result: not measured here (no ResNet weights offline). `cpu_loop="python"`: one compiled step per call
is faster than `lax.scan` for ResNet-50 on XLA:CPU.
"""

from tljax.imageopt.dream import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "resnet50"
    config.weights = "resnet50"
    config.out = "/tmp/imageopt_out/dream_resnet50.png"
    config.objectives = ("layer3.3",)
    config.reduction = "l2"
    config.cpu_loop = "python"
    return config
