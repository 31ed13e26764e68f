r"""Neural style transfer with VGG19: neural-style's classic setting (Gatys et al.'s layers).

Content `relu4_2`; style `relu1_1, relu2_1, relu3_1, relu4_1, relu5_1` with equal weights; α = 10,
β = 40 (the deeplearning.ai seeds' Gram normalisation already balances the terms); 512 px; L-BFGS.
No registry ships VGG19's ImageNet weights offline: download `vgg19-dcbb9e9d.pth` from
download.pytorch.org where a network exists and pass it as `--config.weights`.

    python -m tljax.style --config=configs/style_vgg19.py --config.weights=/path/vgg19-dcbb9e9d.pth \
        --content=cat.png --style=klimt.png --out=/tmp/imageopt_out/style_vgg19.png

Result: not measured here (no weights offline); the setting is the published one. On XLA:CPU VGG's step
runs 3-5× faster as one compiled step per call than inside `lax.scan`, hence `cpu_loop="python"`.
"""

from tljax.imageopt.style import default_config


def get_config(arg: str | None = None):
    del arg
    config = default_config()  # the StyleOptions defaults are this setting
    config.model = "vgg19"
    config.weights = "vgg19"
    config.out = "/tmp/imageopt_out/style_vgg19.png"
    config.cpu_loop = "python"
    return config
