"""Pretrained weights: a registry of sources, safe readers, name tables to Flax, and `load`.

    variables = tljax.weights.load("efficientnet_lite0")                     # offline: installed package
    model = tljax.models.get("resnet50", num_classes=10)
    variables = tljax.weights.load("resnet50", model, skip=(r"classifier/.*",))   # backbone + new head
    variables = tljax.weights.load("~/Downloads/vgg16-397923af.pth")          # your own file

Files are read without executing pickle code and without torch (`read_state_dict`); registered files are
checksummed and cached (`$TLJAX_CACHE`, default `~/.cache/tljax/weights`).
"""

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
    list_weights,
)
from tljax.weights.store import ChecksumError, WeightsUnavailableError, default_cache_dir, resolve

__all__ = [
    "ChecksumError",
    "convert",
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
