"""The strict port of a Keras file into a tljax model, and telling which architecture a Keras file holds.

`port_keras` maps each weighted layer of a `KerasFile` to the model's Keras table
(`tljax.weights.keras_tables`), by positional key (`conv2d_3`) for Keras 3 files and by layer name for
legacy `.h5` (by position, as Keras does, where a Keras 2 file's names differ), gives each array its role from the table (`gamma`, `beta`, …: Keras 3 files store
`vars/0`, `vars/1`, …), and then runs `porting.port_state_dict` for the shape checks, `skip=` and
`include_top=False`. A mismatch names the layers that do not fit before the keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from absl import logging

from tljax import models
from tljax.weights import keras_layouts  # noqa: F401  (registers the Keras-only architectures' tables)
from tljax.weights.keras import KerasFile, read_keras
from tljax.weights.keras_tables import (
    KerasLayerSpec,
    KerasLayoutError,
    file_layer_ids,
    keras_entries,
    keras_layer_table,
    keras_model_names,
    layer_source,
    table_layer_ids,
)
from tljax.weights.porting import PortReport, WeightMismatchError, _full_model, port_state_dict

__all__ = [
    "infer_keras_architecture",
    "keras_arch_of",
    "keras_num_classes",
    "load_keras",
    "port_keras",
]


def _listing(items: Sequence[str], limit: int = 12) -> str:
    more = f", … and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def port_keras(
    keras_file: KerasFile,
    model: nn.Module,
    *,
    skip: Sequence[str] = (),
    init_variables: Mapping | None = None,
    rng: jax.Array | None = None,
    bgr_to_rgb: bool = False,
) -> tuple[dict, PortReport]:
    """Converts a Keras file's weights into `model`'s Flax variables, strictly (see the module docstring).

    `skip`, `init_variables`, `rng` are `porting.port_state_dict`'s. `bgr_to_rgb=True` reverses the
    input channels of the first conv, so a network trained on Keras' 'caffe' preprocessing (BGR) reads
    RGB images: with mean (123.68, 116.779, 103.939) and std 1 in RGB order it computes exactly what
    Keras computes on `preprocess_input`'s BGR array. Raises `WeightMismatchError` naming the layers that
    do not fit (wrong class, a different number of weights, absent from the file or from the model) and
    then every offending key; `KerasLayoutError` if `model` has no Keras layout.
    """
    model_name = type(model).__name__
    table = keras_layer_table(_full_model(model))  # the head's keys count even when it is dropped
    expected = table_layer_ids(keras_file, table)
    wanted = set(table_layer_ids(keras_file, keras_layer_table(model)))
    state: dict[str, np.ndarray] = {}
    notes: list[str] = []
    ids = _legacy_ids_by_position(keras_file, table, keras_layer_table(model)) or file_layer_ids(
        keras_file
    )
    for layer, ident in zip(keras_file.layers, ids):
        spec = expected.get(ident)
        if spec is None:
            for weight_name, array in zip(layer.weight_names, layer.weights):
                state[f"{layer.label}/{weight_name}"] = array
            continue
        if layer.class_name and layer.class_name != spec.class_name:
            notes.append(
                f"{layer.label} is a {layer.class_name} in the file, the model has a {spec.class_name}"
            )
            continue
        if len(layer.weights) != len(spec.weights):
            notes.append(
                f"{layer.label} holds {len(layer.weights)} weights "
                f"({', '.join(layer.weight_names)}); the model's {spec.class_name} has "
                f"{len(spec.weights)} ({', '.join(spec.roles)})"
            )
            continue
        for role, array in zip(spec.roles, layer.weights):
            state[layer_source(spec, role)] = array
    if bgr_to_rgb:
        first = layer_source(table[0], "kernel")
        if first in state:
            state[first] = np.ascontiguousarray(state[first][:, :, ::-1, :])
    try:
        return port_state_dict(
            state,
            model,
            skip=skip,
            init_variables=init_variables,
            rng=rng,
            table_fn=keras_entries,
            source_format="Keras",
        )
    except WeightMismatchError as error:
        extra = [la.label for la, i in zip(keras_file.layers, ids) if i not in expected]
        absent = [i for i in wanted if i not in set(ids)]
        lines = [f"{keras_file.path} ({keras_file.format}) does not fit {model_name}:"]
        if len(ids) != len(wanted):
            lines.append(f"  the file has {len(ids)} weighted layers, the model {len(wanted)}")
        if extra:
            lines.append(f"  layers the model does not have ({len(extra)}): {_listing(extra)}")
        if absent:
            lines.append(f"  layers the file lacks ({len(absent)}): {_listing(sorted(absent))}")
        lines += [f"  {note}" for note in notes]
        if keras_file.positional:
            lines.append(
                "  (a Keras 3 weights file names layers by class and position, `conv2d_3` = the "
                "fourth Conv2D; names in parentheses are the ones the file records)"
            )
        raise WeightMismatchError("\n".join(lines) + "\n" + str(error)) from error


def _legacy_ids_by_position(
    keras_file: KerasFile, *tables: Sequence[KerasLayerSpec]
) -> list[str] | None:
    """The table's layer names for a legacy `.h5` whose names do not fit but whose weighted layers do
    by position (as many, each with its table layer's class and number of weights), else None.

    Keras' own `load_weights(by_name=False)` reads a legacy file by position, and the published
    Keras Applications files need it: saved by Keras 2, they number the layers Keras leaves unnamed
    from 1 (`conv2d_1`, `batch_normalization_1`) where Keras 3, and so the tables, start at `conv2d`.
    The shapes are still checked, name by name, by `port_state_dict`.
    """
    if keras_file.format not in ("h5_weights", "h5_model"):
        return None
    names = [str(layer.name) for layer in keras_file.layers]
    for table in tables:
        if set(names) <= {spec.name for spec in table} or len(names) != len(table):
            continue
        fits = all(
            (layer.class_name in (None, spec.class_name))
            and len(layer.weights) == len(spec.weights)
            for layer, spec in zip(keras_file.layers, table)
        )
        if fits:
            logging.info(
                "%s: layer names differ from the Keras 3 ones (e.g. %s for %s); matched by "
                "position, as Keras' load_weights does for legacy .h5 files",
                keras_file.path,
                next(n for n, spec in zip(names, table) if n != spec.name),
                next(spec.name for n, spec in zip(names, table) if n != spec.name),
            )
            return [spec.name for spec in table]
    return None


def infer_keras_architecture(keras_file: KerasFile) -> tuple[str, bool]:
    """(`tljax.models` name, include_top) of the Keras layout whose weighted layers are exactly the
    file's (by name, or by positional key for Keras 3 files); `WeightMismatchError` if none is."""
    ids = set(file_layer_ids(keras_file))
    for name in keras_model_names():
        for include_top in (True, False):
            try:
                table = keras_layer_table(models.get(name, include_top=include_top))
            except KerasLayoutError:
                continue
            if set(table_layer_ids(keras_file, table)) == ids:
                return name, include_top
    shown = _listing(sorted(ids), 8)
    raise WeightMismatchError(
        f"{keras_file.path}: its layers ({shown}) are not those of any Keras layout tljax knows "
        f"({', '.join(keras_model_names())}); pass model=tljax.models.get(...) (on the command "
        "line: --model) to see which layers do not fit"
    )


def keras_num_classes(keras_file: KerasFile, model: nn.Module) -> int | None:
    """The number of classes of the file's classifier (the layer the table maps to `classifier`)."""
    table = keras_layer_table(_full_model(model))
    ids = table_layer_ids(keras_file, table)
    for layer, ident in zip(keras_file.layers, file_layer_ids(keras_file)):
        spec = ids.get(ident)
        if spec is not None and any(t[1] == "classifier" for _, t, _ in spec.weights):
            return int(layer.weights[-1].shape[-1])
    return None


def load_keras(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    skip: Sequence[str] = (),
    rng: jax.Array | None = None,
    bgr_to_rgb: bool = False,
) -> tuple[dict, nn.Module]:
    """Reads and ports a Keras file: (variables, the model they are for). Without `model` the
    architecture, its top and its number of classes come from the file's layers. A mismatch with a
    given `model` says which architecture the file holds when its layers tell."""
    keras_file = read_keras(path)
    if model is None:
        arch, include_top = infer_keras_architecture(keras_file)
        model = models.get(arch, include_top=include_top)
        model = model.clone(num_classes=keras_num_classes(keras_file, model) or 1000)
    try:
        variables, _ = port_keras(keras_file, model, skip=skip, rng=rng, bgr_to_rgb=bgr_to_rgb)
    except WeightMismatchError as error:
        try:
            held, _ = infer_keras_architecture(keras_file)
        except WeightMismatchError:
            raise error from None
        if keras_arch_of(model) == held:
            raise  # the right architecture: the listed layers and keys are the whole story
        raise WeightMismatchError(
            f"{keras_file.path} holds {held} weights (told by its layers): pass --model={held} "
            f"(tljax.models.get('{held}')). {error}"
        ) from error
    return variables, model


def keras_arch_of(model: nn.Module) -> str | None:
    """The Keras-layout `tljax.models` name whose table `model` has (None if it has no Keras layout)."""
    try:
        table = keras_layer_table(_full_model(model))
    except KerasLayoutError:
        return None
    for name in keras_model_names():
        try:
            if keras_layer_table(_full_model(models.get(name))) == table:
                return name
        except KerasLayoutError:
            continue
    return None
