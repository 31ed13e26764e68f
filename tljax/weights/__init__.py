"""Pretrained weights: a registry of sources, safe readers, name tables to Flax, and `load`.

    variables = tljax.weights.load("efficientnet_lite0")                     # offline: installed package
    model = tljax.models.get("resnet50", num_classes=10)
    variables = tljax.weights.load("resnet50", model, skip=(r"classifier/.*",))   # backbone + new head
    variables = tljax.weights.load("~/Downloads/vgg16-397923af.pth")          # your own file
    variables = tljax.weights.load("resnet50_keras")                           # Keras Applications
    variables = tljax.weights.load("my_model.keras", tljax.models.get("vgg16_keras"))

Files are read without executing pickle code and without torch (`read_state_dict`), Keras files with
h5py only and without deserialising any config (`read_keras`); registered files are checksummed and
cached (`$TLJAX_CACHE`, default `~/.cache/tljax/weights`).
"""

from tljax.weights.keras import KerasFile, UnsafeKerasConfigError, read_keras
from tljax.weights.keras_port import port_keras
from tljax.weights.loading import convert, infer_architecture, load, load_converted, save_converted
from tljax.weights.porting import PortReport, WeightMismatchError, name_table, port_state_dict
from tljax.weights.readers import (
    UnsafePickleError,
    WeightFileError,
    WeightFileNotFoundError,
    read_state_dict,
)
from tljax.weights.registry import (
    Preprocessing,
    UnknownWeightsError,
    WeightSpec,
    get_spec,
    keras_preprocessing,
    list_weights,
)
from tljax.weights.store import ChecksumError, WeightsUnavailableError, default_cache_dir, resolve

__all__ = [
    "ChecksumError",
    "KerasFile",
    "UnsafeKerasConfigError",
    "convert",
    "keras_preprocessing",
    "port_keras",
    "read_keras",
    "PortReport",
    "Preprocessing",
    "UnknownWeightsError",
    "UnsafePickleError",
    "WeightFileError",
    "WeightFileNotFoundError",
    "WeightMismatchError",
    "WeightSpec",
    "WeightsUnavailableError",
    "default_cache_dir",
    "get_spec",
    "infer_architecture",
    "list_weights",
    "load",
    "load_converted",
    "name_table",
    "port_state_dict",
    "read_state_dict",
    "resolve",
    "save_converted",
]
