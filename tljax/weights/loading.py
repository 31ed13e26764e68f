"""`load(name_or_path, model)`: resolve a weight file, read it safely, port it, return Flax variables.

Accepts a registered name (`"resnet50"`, `"efficientnet_lite0"`, `"keras.resnet50"`), a PyTorch `.pth` /
`.safetensors` file, a Keras `.h5` / `.weights.h5` / `.keras` file (`tljax.weights.keras`), or a
directory written by `python -m tljax.convert` (an orbax checkpoint that needs no torch).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.traverse_util import flatten_dict, unflatten_dict

from tljax import models
from tljax.fileio import atomic_write_json
from tljax.models.common import init_size
from tljax.rng import make_key
from tljax.weights.keras import is_keras_file
from tljax.weights.keras_port import keras_arch_of, load_keras
from tljax.weights.porting import (
    WeightMismatchError,
    abstract_variables,
    mismatch_message,
    name_table,
    port_state_dict,
)
from tljax.weights.readers import WeightFileError, read_state_dict
from tljax.weights.registry import get_spec, list_weights
from tljax.weights.store import resolve

CONVERTED_METADATA = "tljax_weights.json"


def infer_architecture(state_dict: dict[str, np.ndarray]) -> str:
    """Best guess of the tljax architecture a torchvision/Lite state_dict was saved from."""
    keys = set(state_dict)
    if "_conv_stem.weight" in keys:
        blocks = {k.split(".")[1] for k in keys if k.startswith("_blocks.")}
        head = state_dict.get("_conv_head.weight")
        width = (
            head.shape[1] if head is not None and head.ndim == 4 else None
        )  # last block's channels
        by_shape: dict[tuple[int, int | None], int] = {
            (16, 320): 0,
            (23, 320): 1,
            (23, 352): 2,
            (26, 384): 3,
            (30, 448): 4,
        }
        variant = by_shape.get((len(blocks), width))
        if variant is None:
            raise WeightMismatchError(
                f"unrecognised EfficientNet-Lite layout: {len(blocks)} blocks, head in {width}"
            )
        return f"efficientnet_lite{variant}"
    if "inception3a.branch1.conv.weight" in keys:
        return "googlenet"
    if "Mixed_5b.branch1x1.conv.weight" in keys:
        return "inception_v3"
    if "features.0.0.weight" in keys:  # torchvision MobileNet: Conv2dNormActivation stem
        residuals = len({k.split(".")[1] for k in keys if k.startswith("features.")}) - 2
        if "features.1.conv.0.0.weight" in keys and residuals == 17:
            return "mobilenet_v2"
        by_count = {15: "mobilenet_v3_large", 11: "mobilenet_v3_small"}
        if "features.1.block.0.0.weight" in keys and residuals in by_count:
            return by_count[residuals]
        raise WeightMismatchError(f"unrecognised MobileNet layout: {residuals} inverted residuals")
    if "features.0.weight" in keys:
        convs = [
            k
            for k in keys
            if k.startswith("features.") and k.endswith(".weight") and state_dict[k].ndim == 4
        ]
        bn = any(k.endswith("running_mean") for k in keys)
        return f"vgg{len(convs) + 3}{'_bn' if bn else ''}"
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        counts = tuple(
            len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.")}) for i in range(1, 5)
        )
        bottleneck = "layer1.0.conv3.weight" in keys
        depths: dict[tuple[tuple[int, ...], bool], int] = {
            ((2, 2, 2, 2), False): 18,
            ((3, 4, 6, 3), False): 34,
            ((3, 4, 6, 3), True): 50,
            ((3, 4, 23, 3), True): 101,
            ((3, 8, 36, 3), True): 152,
        }
        depth = depths.get((counts, bottleneck))
        if depth is None:
            raise WeightMismatchError(
                f"unrecognised ResNet layout: blocks per layer {counts}, bottleneck={bottleneck}"
            )
        return f"resnet{depth}"
    raise WeightMismatchError(
        "cannot tell which architecture this state_dict belongs to; pass "
        "model=tljax.models.get(...) (on the command line: --model)"
    )


def num_classes_in(state_dict: dict[str, np.ndarray]) -> int | None:
    # VGG's classifier.6 before MobileNetV3's classifier.3 (VGG's fc7 is also classifier.3).
    for key in (
        "fc.bias",
        "classifier.6.bias",
        "_fc.bias",
        "classifier.3.bias",
        "classifier.1.bias",
    ):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return None


def load(
    name_or_path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    skip: Sequence[str] = (),
    rng: jax.Array | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    bgr_to_rgb: bool | None = None,
) -> dict:
    """Flax variables (`{'params', 'batch_stats'}`) for `model` from a registered name, file or directory,
    or a finished training run (`"run:WORKDIR"`: its final variables; `"run:WORKDIR#best"`: its best).

    Without `model`, the architecture comes from the registry entry (or is inferred from the file) with the
    file's number of classes. `skip` lists regexes of Flax paths (e.g. `classifier/.*`) kept from a fresh
    init instead of loaded: a backbone with a new head. Every other key must match exactly.
    `bgr_to_rgb` (Keras files): fold Keras' 'caffe' BGR input order into the first conv so the model
    reads RGB; by default on for registered 'caffe' weights and off for files given by path.
    """
    if str(name_or_path).startswith("run:"):
        from tljax.weights.runs import load_run  # runs.py reuses this module's checks

        return load_run(str(name_or_path), model, skip=skip, rng=rng)
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        return load_converted(path, model, skip=skip, rng=rng)
    # resolve first: a path that does not exist is "no such file", not an unknown registered name.
    resolved = resolve(name_or_path, cache_dir=cache_dir, download=download)
    spec = None if path.exists() else get_spec(str(name_or_path))
    arch = spec.arch if spec is not None else None
    if is_keras_file(resolved):
        if bgr_to_rgb is None:
            bgr_to_rgb = spec is not None and spec.keras_mode == "caffe"
        if model is None and arch is not None:
            model = models.get(arch)
        variables, _ = load_keras(resolved, model, skip=skip, rng=rng, bgr_to_rgb=bgr_to_rgb)
        return variables
    state_dict = read_state_dict(resolved)
    if model is None:
        arch = arch or infer_architecture(state_dict)
        model = models.get(arch, num_classes=num_classes_in(state_dict) or 1000)
    try:
        variables, _ = port_state_dict(state_dict, model, skip=skip, rng=rng)
    except WeightMismatchError as error:
        raise _with_architecture_hint(error, state_dict, model, resolved) from error
    return variables


def _with_architecture_hint(
    error: WeightMismatchError, state_dict: dict[str, np.ndarray], model: nn.Module, path: Path
) -> WeightMismatchError:
    """`error`, led by the architecture the file holds when its keys say it is another model's."""
    try:
        file_arch = infer_architecture(state_dict)
    except WeightMismatchError:
        return error
    fits = models.get(file_arch, num_classes=num_classes_in(state_dict) or 1000)
    if {e.source for e in name_table(model)} <= {e.source for e in name_table(fits)}:
        return error  # the same architecture (maybe headless): the listed keys are the whole story
    return WeightMismatchError(
        f"{path} holds {file_arch} weights (told by its keys), not weights for this "
        f"{type(model).__name__}: pass --model={file_arch} (tljax.models.get('{file_arch}')). {error}"
    )


def save_converted(
    variables: dict,
    out_dir: str | os.PathLike,
    *,
    arch: str,
    weights: str,
    num_classes: int,
    include_top: bool = True,
) -> Path:
    """Writes `variables` as an orbax checkpoint plus a small JSON of what they are."""
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out or delete it")
    out.mkdir(parents=True, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(out / "variables", jax.tree_util.tree_map(np.asarray, variables))
    ckptr.wait_until_finished()
    # Atomic, and written after the orbax save completed: its presence marks a whole directory.
    meta = {"arch": arch, "weights": weights, "num_classes": num_classes}
    if not include_top:  # a headless Keras file (include_top=False)
        meta["include_top"] = False
    atomic_write_json(out / CONVERTED_METADATA, meta)
    return out


def load_converted(
    directory: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    skip: Sequence[str] = (),
    rng: jax.Array | None = None,
) -> dict:
    """Reads a `python -m tljax.convert` directory (no torch needed), checking shapes against `model`."""
    directory = Path(directory).resolve()
    meta_path = directory / CONVERTED_METADATA
    if not meta_path.exists():
        raise WeightFileError(
            f"{directory} is not a tljax converted-weights directory "
            f"(no {CONVERTED_METADATA}); write one with `python -m tljax.convert`"
        )
    meta = json.loads(meta_path.read_text())
    model = model or models.get(
        meta["arch"], num_classes=meta["num_classes"], include_top=meta.get("include_top", True)
    )
    restored = ocp.StandardCheckpointer().restore(directory / "variables")
    return strict_merge(restored, model, skip=skip, rng=rng)


def strict_merge(
    restored: dict, model: nn.Module, *, skip: Sequence[str] = (), rng: jax.Array | None = None
) -> dict:
    """`restored` Flax variables checked against `model`'s: every key and shape must match, except the
    paths (without the collection, e.g. `classifier/.*`) that full-match a `skip` regex, which come from
    `model.init(rng)` instead. Missing, unexpected and mis-shaped keys raise `WeightMismatchError`."""
    got, want = flatten_dict(restored, sep="/"), flatten_dict(abstract_variables(model), sep="/")

    def skipped(p: str) -> bool:
        return any(re.fullmatch(s, p.split("/", 1)[1]) for s in skip)

    missing = [k for k in want if k not in got and not skipped(k)]
    unexpected = [k for k in got if k not in want and not skipped(k)]
    mis_shaped = [
        f"{k}: file {got[k].shape} vs model {want[k].shape}"
        for k in want
        if k in got and not skipped(k) and got[k].shape != want[k].shape
    ]
    if missing or unexpected or mis_shaped:
        raise WeightMismatchError(
            mismatch_message(type(model).__name__, missing, unexpected, mis_shaped)
        )
    if any(skipped(k) for k in want):
        size = init_size(model)
        init = jax.jit(model.init)(
            rng if rng is not None else make_key(0), np.zeros((1, size, size, 3), np.float32)
        )
        init_flat = flatten_dict(dict(init), sep="/")
        got = {k: (init_flat[k] if skipped(k) else got[k]) for k in want}
    # One device_put of the whole tree: jnp.asarray per leaf compiles a small program per shape.
    return jax.device_put(unflatten_dict({tuple(k.split("/")): got[k] for k in want}))


def convert(weights_name_or_path: str, out: str, arch: str | None = None) -> Path:
    """Reads a PyTorch weight file (or registered name), ports it and writes a Flax checkpoint directory
    that `load` reads without torch; returns the directory. The architecture comes from `arch`, the
    registry, or the file's keys."""
    path = Path(weights_name_or_path).expanduser()
    resolved = resolve(weights_name_or_path)
    if is_keras_file(resolved):
        spec = None if path.exists() else get_spec(weights_name_or_path)
        arch = arch or (spec.arch if spec is not None else None)
        variables, model = load_keras(
            resolved,
            models.get(arch) if arch else None,
            bgr_to_rgb=spec is not None and spec.keras_mode == "caffe",
        )
        return save_converted(
            variables,
            Path(out).expanduser(),
            arch=str(arch or keras_arch_of(model)),
            weights=str(weights_name_or_path),
            num_classes=int(getattr(model, "num_classes", 1000)),
            include_top=bool(getattr(model, "include_top", True)),
        )
    state_dict = read_state_dict(resolved)
    if arch is None:
        arch = (
            infer_architecture(state_dict) if path.exists() else get_spec(weights_name_or_path).arch
        )
    num_classes = num_classes_in(state_dict) or 1000
    model = models.get(arch, num_classes=num_classes)
    try:
        variables, _ = port_state_dict(state_dict, model)
    except WeightMismatchError as error:
        raise _with_architecture_hint(error, state_dict, model, path) from error
    return save_converted(
        variables,
        Path(out).expanduser(),
        arch=arch,
        weights=str(weights_name_or_path),
        num_classes=num_classes,
    )


__all__ = [
    "convert",
    "load",
    "strict_merge",
    "save_converted",
    "load_converted",
    "infer_architecture",
    "list_weights",
]
