r"""DeepDream with VGG19: the classic `relu4_3` objective (half the mean square, the original DeepDream).

No registry ships VGG19's ImageNet weights offline: download `vgg19-dcbb9e9d.pth` where a network
exists and pass it as `--config.weights`.

    python -m tljax.dream --config=configs/dream_vgg19.py --config.weights=/path/vgg19-dcbb9e9d.pth \
        --image=photo.png --out=/tmp/imageopt_out/dream_vgg19.png

Result: not measured here (no weights offline). On XLA:CPU VGG's step runs faster as one compiled step
per call than inside `lax.scan`, hence `cpu_loop="python"`.
"""

from tljax.imageopt.dream import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()
    config.model = "vgg19"
    config.weights = "vgg19"
    config.out = "/tmp/imageopt_out/dream_vgg19.png"
    config.objectives = ("relu4_3",)
    config.reduction = "l2"
    config.cpu_loop = "python"
    return config
