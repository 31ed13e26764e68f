"""Safe readers for Keras weight files, with h5py only (no TensorFlow, no Keras, nothing deserialised).

Three layouts, read into one `KerasFile` (the weighted layers in model order, each with its arrays in
the file's order):

* legacy HDF5 (`.h5`): a whole model (`model.save("x.h5")`: a `model_weights` group and a
  `model_config` JSON attribute) or weights only (`save_weights` in Keras 2, and every published Keras
  Applications ImageNet file): a `layer_names` attribute, one group per layer with a `weight_names`
  attribute. Layers are named; the class comes from `model_config` when there is one.
* Keras 3 `.weights.h5`: `layers/<snake_case_class>[_N]/vars/<i>`. The keys are positional: the N-th
  layer of a class in the model's layer order, its i-th variable. Keras 3.x writes the layer's name as
  an attribute of `vars`, kept for messages; the port maps keys through the name table's layer order.
* `.keras` archives: a zip of `config.json` and `model.weights.h5`. The config is parsed as JSON only,
  to name the positional keys; it is never deserialised, and a model whose config could carry code
  (a `Lambda` layer, a class from outside Keras, a `registered_name` outside Keras) is refused.

Reads are bounded: sizes are checked against the file before any bytes are read or decompressed, HDF5
links to other files, external or virtual datasets and non-numeric data are refused, and a damaged
file gives one `WeightFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tljax.weights.readers import WeightFileError, WeightFileNotFoundError

__all__ = [
    "KERAS_SUFFIXES",
    "KerasFile",
    "KerasLayer",
    "UnsafeKerasConfigError",
    "is_keras_file",
    "read_keras",
    "snake_case",
]

KERAS_SUFFIXES = (".h5", ".hdf5", ".weights.h5", ".keras")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# config.json of the largest Keras Applications model is ~1 MB; anything far past that is not a config.
_MAX_CONFIG_BYTES = 64 << 20
# Keras stores archive members uncompressed; a compressed member may expand this much (plus 1 MiB).
_MAX_COMPRESSION_RATIO = 64
# Config classes that execute user code when deserialised, refused even though they ship with Keras.
_CODE_CARRYING_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "TorchModuleWrapper"}


class UnsafeKerasConfigError(WeightFileError):
    """A Keras model config that could run code if deserialised (Lambda, custom objects): refused."""


@dataclass(frozen=True)
class KerasLayer:
    """One weighted layer of a Keras file: its arrays in the file's order.

    `name` is the layer's name (`conv1_conv`) where the file records one, else None; `key` is its
    positional `.weights.h5` key (`conv2d_3`) where the file has that layout, else None; `class_name`
    is the Keras class (`Conv2D`) where the file records it, else None.
    """

    name: str | None
    key: str | None
    class_name: str | None
    weights: tuple[np.ndarray, ...]
    weight_names: tuple[str, ...]  # as the file spells them: 'conv1_conv/kernel:0', or '0', '1', …

    @property
    def label(self) -> str:
        """How messages name the layer: `name`, `key (name)` or `key`."""
        if self.name and self.key:
            return f"{self.key} ({self.name})"
        return str(self.name or self.key)


@dataclass(frozen=True)
class KerasFile:
    """The weighted layers of a Keras file, in the model's layer order."""

    path: Path
    format: Literal["h5_model", "h5_weights", "weights_h5", "keras"]
    layers: tuple[KerasLayer, ...]
    keras_version: str | None

    @property
    def named(self) -> bool:
        """Whether every layer carries its name (legacy `.h5`, `.keras`); False: positional keys only."""
        return all(layer.name for layer in self.layers)

    @property
    def positional(self) -> bool:
        """Whether the layers carry Keras 3 positional keys (`.weights.h5`, `.keras`)."""
        return all(layer.key for layer in self.layers)


def snake_case(class_name: str) -> str:
    """Keras 3's group name for a layer class: `BatchNormalization` → `batch_normalization`,
    `Conv2D` → `conv2d`, `DepthwiseConv2D` → `depthwise_conv2d`."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def is_keras_file(path: str | Path) -> bool:
    """Whether `path` is a Keras file by its name or its first bytes (HDF5, or a zip with a config)."""
    path = Path(path)
    if path.name.endswith(KERAS_SUFFIXES):
        return True
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError:
        return False
    if head == _HDF5_MAGIC:
        return True
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                return (
                    "config.json" in archive.namelist() and "model.weights.h5" in archive.namelist()
                )
        except zipfile.BadZipFile:
            return False
    return False


def _corrupt(path: Path, detail: str) -> WeightFileError:
    return WeightFileError(
        f"{path}: the Keras file is truncated or corrupt ({detail}). Save or download it again."
    )


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _string_list(group: Any, name: str) -> list[str] | None:
    """A (possibly chunked: `name0`, `name1`, …) string-list attribute, as Keras' legacy writer stores it."""
    if name in group.attrs:
        return [_text(v) for v in np.atleast_1d(group.attrs[name])]
    if f"{name}0" not in group.attrs:
        return None
    out, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        out += [_text(v) for v in np.atleast_1d(group.attrs[f"{name}{chunk}"])]
        chunk += 1
    return out


def _member(h5py: Any, group: Any, name: str, path: Path, kind: type) -> Any:
    """`group[name]` after checking it is a hard link (no reads from other files) of type `kind`."""
    link = group.get(name, getlink=True)
    if link is None:
        raise _corrupt(path, f"'{group.name}/{name}' is missing")
    if not isinstance(link, h5py.HardLink):
        raise WeightFileError(
            f"{path}: '{group.name}/{name}' is a link to {type(link).__name__} elsewhere; a Keras "
            "weight file holds its data itself, so tljax does not follow links"
        )
    obj = group[name]
    if not isinstance(obj, kind):
        raise _corrupt(path, f"'{obj.name}' is a {type(obj).__name__}, expected a {kind.__name__}")
    return obj


def _read_dataset(h5py: Any, dataset: Any, path: Path, budget: int) -> np.ndarray:
    """The dataset's array, refused unread unless it is plain numeric data the file can hold."""
    where = f"dataset '{dataset.name}'"
    if dataset.dtype.kind not in "fiub" or dataset.dtype.fields is not None:
        raise WeightFileError(f"{path}: {where} holds {dataset.dtype}, not numbers")
    if dataset.is_virtual or dataset.external:
        raise WeightFileError(f"{path}: {where} reads its data from other files; refused")
    if dataset.nbytes > budget:
        raise _corrupt(
            path, f"{where} declares {dataset.nbytes} bytes, more than the file can hold ({budget})"
        )
    try:
        return np.asarray(dataset[()])  # h5py returns a fresh array: no second copy
    except (OSError, RuntimeError, ValueError) as error:
        raise _corrupt(path, f"{where} cannot be read: {error}") from error


def _layer_weights(h5py: Any, group: Any, path: Path, budget: int) -> tuple[list, list[str]]:
    """Arrays of one legacy layer group, in its `weight_names` order (trainable first, as Keras saves)."""
    names = _string_list(group, "weight_names")
    if names is None:
        raise _corrupt(path, f"layer group '{group.name}' has no weight_names attribute")
    arrays = []
    for weight in names:
        parts = weight.split("/")
        node = group
        for part in parts[:-1]:
            node = _member(h5py, node, part, path, h5py.Group)
        dataset = _member(h5py, node, parts[-1], path, h5py.Dataset)
        arrays.append(_read_dataset(h5py, dataset, path, budget))
    return arrays, names


def _config_classes(config: Any, path: Path) -> list[tuple[str, str]]:
    """(name, class_name) of every layer of a Keras model config, in order; refuses code-carrying ones."""
    check_config_safe(config, path)
    body = config.get("config", {}) if isinstance(config, dict) else {}
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list):
        raise WeightFileError(
            f"{path}: the model config has no layer list (a subclassed model?); tljax ports "
            "Functional and Sequential Keras models"
        )
    out = []
    for layer in layers:
        name = layer.get("config", {}).get("name") or layer.get("name")
        out.append((str(name), str(layer.get("class_name"))))
    return out


def check_config_safe(config: Any, path: Path) -> None:
    """Raise `UnsafeKerasConfigError` if any object in a Keras config could run code when deserialised:
    a Lambda-like class, a class whose `module` is not Keras', or a `registered_name` (custom objects)."""
    offenders: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "class_name" in node:
                cls, module = str(node["class_name"]), node.get("module")
                registered = node.get("registered_name")
                if cls in _CODE_CARRYING_CLASSES:
                    offenders.append(f"{cls} layer {node.get('config', {}).get('name', '?')!r}")
                elif module is not None and not str(module).split(".")[0] == "keras":
                    offenders.append(f"{cls} from module {module!r}")
                elif registered not in (None, cls) and not str(registered).startswith("keras"):
                    offenders.append(f"{cls} registered as {registered!r} (a custom object)")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    if offenders:
        raise UnsafeKerasConfigError(
            f"{path}: the model config holds {', '.join(offenders[:5])}; a Keras config like this can "
            "carry code that runs when it is loaded, and tljax never deserialises configs. Save the "
            "weights only (model.save_weights('x.weights.h5')) and load them into a tljax model."
        )


def _read_legacy(h5py: Any, handle: Any, path: Path, budget: int) -> KerasFile:
    if "model_weights" in handle and "layer_names" not in handle.attrs:
        group = _member(h5py, handle, "model_weights", path, h5py.Group)
        layout: Literal["h5_model", "h5_weights"] = "h5_model"
    else:
        group, layout = handle, "h5_weights"
    layer_names = _string_list(group, "layer_names")
    assert layer_names is not None
    classes: dict[str, str] = {}
    if "model_config" in handle.attrs:
        config = _json(_text(handle.attrs["model_config"]), path, "model_config attribute")
        classes = dict(_config_classes(config, path))
    layers = []
    for name in layer_names:
        arrays, names = _layer_weights(
            h5py, _member(h5py, group, name, path, h5py.Group), path, budget
        )
        if arrays:
            layers.append(KerasLayer(name, None, classes.get(name), tuple(arrays), tuple(names)))
    version = group.attrs.get("keras_version", handle.attrs.get("keras_version"))
    return KerasFile(path, layout, tuple(layers), _text(version) if version is not None else None)


_POSITIONAL_KEY = re.compile(r"([a-z0-9_]+?)(?:_(\d+))?")


def _positional_order(key: str) -> tuple[str, int]:
    """'conv2d_3' → ('conv2d', 3), 'conv2d' → ('conv2d', 0): Keras numbers repeats from _1."""
    match = _POSITIONAL_KEY.fullmatch(key)
    if match is None:
        return key, 0
    return match.group(1), int(match.group(2) or 0)


def _read_keras3(
    h5py: Any, handle: Any, path: Path, budget: int, names: dict[str, str] | None
) -> tuple[KerasLayer, ...]:
    """Layers of a Keras 3 weights file; `names` maps positional keys to layer names (from a config)."""
    group = _member(h5py, handle, "layers", path, h5py.Group)
    found: list[tuple[str, KerasLayer]] = []
    for key in group:
        layer_group = _member(h5py, group, key, path, h5py.Group)
        if "vars" not in layer_group:
            continue
        variables = _member(h5py, layer_group, "vars", path, h5py.Group)
        indices = sorted(variables, key=lambda k: int(k) if k.isdigit() else -1)
        if not all(k.isdigit() for k in indices) or indices != [
            str(i) for i in range(len(indices))
        ]:
            raise _corrupt(path, f"'{variables.name}' holds {indices}, not variables 0..n-1")
        arrays = [
            _read_dataset(h5py, _member(h5py, variables, k, path, h5py.Dataset), path, budget)
            for k in indices
        ]
        if any(sub != "vars" for sub in layer_group):
            raise WeightFileError(
                f"{path}: layer '{key}' nests other layers ({sorted(layer_group)}); tljax ports "
                "flat Functional/Sequential models"
            )
        if arrays:
            name = (names or {}).get(key) or (
                _text(variables.attrs["name"]) if "name" in variables.attrs else None
            )
            found.append((key, KerasLayer(name, key, None, tuple(arrays), tuple(indices))))
    # h5py lists groups alphabetically. A config gives the model's order; without one the order is
    # known per class (the _N suffix), and the classes interleave as only the name table knows.
    order = {key: i for i, key in enumerate(names or {})}
    found.sort(key=lambda item: (order.get(item[0], len(order)), _positional_order(item[0])))
    return tuple(layer for _, layer in found)


def _json(text: str, path: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _corrupt(path, f"its {what} is not valid JSON: {error}") from error


def _open_hdf5(source: Any, path: Path) -> Any:
    import h5py

    try:
        return h5py.File(source, "r")
    except OSError as error:
        raise _corrupt(path, f"HDF5 refused to open it: {error}") from error


def _read_hdf5(
    source: Any, path: Path, size: int, names: dict[str, str] | None = None
) -> KerasFile:
    import h5py

    # Uncompressed, a dataset cannot hold more bytes than the file; compressed, at most the ratio.
    budget = _MAX_COMPRESSION_RATIO * size + (1 << 20)
    with _open_hdf5(source, path) as handle:
        try:
            if "layer_names" in handle.attrs or "model_weights" in handle:
                return _read_legacy(h5py, handle, path, budget)
            if "layers" in handle:
                version = handle.attrs.get("keras_version")
                layers = _read_keras3(h5py, handle, path, budget, names)
                return KerasFile(
                    path, "weights_h5", layers, _text(version) if version is not None else None
                )
        except (KeyError, OSError, RuntimeError) as error:
            raise _corrupt(path, str(error)) from error
        top = sorted(handle)[:10]
    raise WeightFileError(
        f"{path} is an HDF5 file but not a Keras weight file (no 'layer_names' attribute, "
        f"'model_weights' or 'layers' group; top level: {top}). Give a file written by Keras' "
        "model.save('x.h5'), save_weights('x.weights.h5') or model.save('x.keras')."
    )


def _archive_member(archive: zipfile.ZipFile, name: str, path: Path, size: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise WeightFileError(
            f"{path} is a zip archive without {name}: not a .keras model archive "
            f"(members: {archive.namelist()[:10]})"
        ) from None
    if info.header_offset + info.compress_size > size:
        raise _corrupt(path, f"member {name} ends past the end of the file")
    if info.file_size > _MAX_COMPRESSION_RATIO * info.compress_size + (1 << 20):
        raise WeightFileError(
            f"{path}: member {name} expands from {info.compress_size} to {info.file_size} bytes "
            f"(more than {_MAX_COMPRESSION_RATIO}x: a zip bomb?); refused before decompressing it"
        )
    if name == "config.json" and info.file_size > _MAX_CONFIG_BYTES:
        raise WeightFileError(
            f"{path}: config.json is {info.file_size} bytes, too large for a config"
        )
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as error:  # CRC errors, truncation
        raise _corrupt(path, f"member {name}: {error}") from error


def _keys_from_config(config_layers: list[tuple[str, str]]) -> dict[str, str]:
    """Positional key → layer name, numbering each class's layers in the config's (= the model's) order."""
    seen: dict[str, int] = {}
    keys = {}
    for name, class_name in config_layers:
        base = snake_case(class_name)
        count = seen.get(base)
        seen[base] = 0 if count is None else count + 1
        keys[base if count is None else f"{base}_{count + 1}"] = name
    return keys


def _read_archive(path: Path, size: int) -> KerasFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise _corrupt(path, f"not a readable zip archive: {error}") from error
    with archive:
        config_bytes = _archive_member(archive, "config.json", path, size)
        config = _json(config_bytes.decode("utf8", "replace"), path, "config.json")
        config_layers = _config_classes(config, path)
        classes = dict(config_layers)
        weights = _archive_member(archive, "model.weights.h5", path, size)
        metadata = None
        if "metadata.json" in archive.namelist():
            metadata = _json(
                _archive_member(archive, "metadata.json", path, size).decode("utf8", "replace"),
                path,
                "metadata.json",
            )
    inner = _read_hdf5(io.BytesIO(weights), path, len(weights), _keys_from_config(config_layers))
    layers = tuple(
        KerasLayer(la.name, la.key, classes.get(la.name or ""), la.weights, la.weight_names)
        for la in inner.layers
    )
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return KerasFile(path, "keras", layers, version or inner.keras_version)


def read_keras(path: str | os.PathLike[str]) -> KerasFile:
    """Reads a Keras `.h5` (whole model or weights only), `.weights.h5` or `.keras` file with h5py.

    Returns the weighted layers in the model's order (see the module docstring for each layout). Nothing
    in the file is executed or deserialised. Raises `WeightFileNotFoundError` for a missing path,
    `UnsafeKerasConfigError` for a config that could carry code, and `WeightFileError` for a file that is
    truncated, corrupt, or not a Keras file (each naming the file and the problem).
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileNotFoundError(path)
    if not path.is_file():
        raise WeightFileError(f"{path} is not a file; give a .h5, .weights.h5 or .keras file")
    size = path.stat().st_size
    if size == 0:
        raise WeightFileError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head.startswith(b"PK"):
        return _read_archive(path, size)
    if head == _HDF5_MAGIC:
        return _read_hdf5(str(path), path, size)
    if path.name.endswith(".keras"):
        raise _corrupt(path, "a .keras archive must start with a zip header")
    raise WeightFileError(
        f"{path} is neither HDF5 nor a zip archive (it starts with {head!r}), so not a Keras file"
    )


def iter_arrays(keras_file: KerasFile) -> Iterator[tuple[str, np.ndarray]]:
    """('layer label/weight name', array) for every array of the file, in order (for listings)."""
    for layer in keras_file.layers:
        for name, array in zip(layer.weight_names, layer.weights):
            yield f"{layer.label}/{name}", array
