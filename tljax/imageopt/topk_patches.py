"""Zeiler–Fergus "top-9" patches: which image regions excite a unit the most (Visualizing and
Understanding Convolutional Networks, 2014, fig. 2).

1. Scan a dataset in fixed-size batches through one jitted function that runs the network to the
   deepest chosen tap and, for every chosen channel, takes each image's strongest response (max over
   positions, with its location) and merges it into a running top-k with `lax.top_k`. The running top-k
   lives on the device; the host only keeps the original pixels of images that are currently in some
   top-k, so a dataset of any size streams through in bounded memory.
2. Map each winning unit `(y, x)` to its receptive field (computed from the architecture by
   `tljax.imageopt.receptive_field`) and crop that box from the ORIGINAL image (full resolution, before
   the resize to the network's input size); parts of the box beyond the image border are gray.
3. Render one grid per layer: a 3×3 block of patches per channel, like the paper's "Layer 1 … Layer 5".

Counting each image at most once per channel (its best position) follows the paper's figure, where the
nine patches of a feature come from nine different images.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tljax.errors import ConfigError
from tljax.imageopt import render
from tljax.imageopt.images import resize_image
from tljax.imageopt.inputs import iterate_images
from tljax.imageopt.objective import MeanStd, check_taps, make_taps_fn
from tljax.imageopt.options import keyword_defaults, tool_config
from tljax.imageopt.receptive_field import ReceptiveField, receptive_fields
from tljax.typing import Config

Array = jax.Array

__all__ = [
    "TopActivations",
    "TopKScan",
    "crop_patch",
    "default_config",
    "layer_figure",
    "render_layers",
    "run_from_config",
    "scan_top_activations",
    "top_patches",
]


@dataclasses.dataclass
class TopActivations:
    """The k strongest responses of each chosen channel of one tap, best first.

    Arrays are `[C, k]` (C = `len(channels)`): the activation `values`, the dataset `image_index`
    (-1 where fewer than k images were seen) and the unit location `y`, `x` in the tap's map.
    """

    tap: str
    channels: np.ndarray
    values: np.ndarray
    image_index: np.ndarray
    y: np.ndarray
    x: np.ndarray
    map_hw: tuple[int, int]


@dataclasses.dataclass
class TopKScan:
    """Result of `scan_top_activations`: per tap its top-k, plus what is needed to crop patches.

    `originals[i]` is image i's pixels (float 0..255, `[H0, W0, 3]`) for every image in some top-k: the
    region that was resized to the network input `input_hw` (the whole image, or its centre crop).
    `trace_count` counts traces of the jitted scan step (1 = compiled once); `skipped` names the files of
    a folder that could not be decoded and were left out.
    """

    tops: dict[str, TopActivations]
    originals: dict[int, np.ndarray]
    input_hw: tuple[int, int]
    num_images: int
    trace_count: int
    skipped: list[str] = dataclasses.field(
        default_factory=list
    )  # "path: reason", folder files only


def _fit_to_input(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crops `image` to the aspect ratio of `input_hw` and resizes it: (network input, original region).

    The returned original region is exactly what was resized, so a box in input coordinates maps to it
    by a pure scale.
    """
    h, w = image.shape[:2]
    th, tw = input_hw
    if h * tw > w * th:  # too tall: crop rows
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    region = image[top : top + ch, left : left + cw]
    if region.shape[:2] == (th, tw):
        return region, region
    resized = resize_image(region, (th, tw))
    return resized, region


# ----------------------------------------------------------------------------------------------------
# The scan


def scan_top_activations(
    model: nn.Module,
    variables: Any,
    data: Any,
    selections: Mapping[str, Sequence[int] | None],
    *,
    input_hw: tuple[int, int] = (224, 224),
    preprocessing: MeanStd | None = None,
    k: int = 9,
    batch_size: int = 16,
    max_images: int = 0,
) -> TopKScan:
    """Streams `data` through `model` and keeps, per tap and chosen channel, the k best images.

    `selections` maps tap names to channel indices (None = every channel). Each image is centre-cropped
    to the aspect of `input_hw`, resized to it and normalised with `preprocessing` (mean/std in 0..255
    units). Bad tap names raise the model's ValueError (listing valid names); channels out of range
    raise ValueError naming the tap's number of channels. `max_images` > 0 stops after that many
    images; unreadable files of a folder are skipped and listed in `TopKScan.skipped`.
    """
    taps = tuple(selections)
    if not taps:
        raise ValueError("no taps selected")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    check_taps(model, taps)
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    taps_fn = make_taps_fn(model, variables, taps, preprocessing=preprocessing)
    shapes = jax.eval_shape(
        taps_fn, jax.ShapeDtypeStruct((batch_size, *input_hw, 3), jnp.float32), variables
    )
    channels: dict[str, np.ndarray] = {}
    for tap in taps:
        shape = shapes[tap].shape
        if len(shape) != 4:
            raise ValueError(
                f"tap {tap!r} has shape {tuple(shape)}; top-k patches need a [B, H, W, C] map"
            )
        selected = selections[tap]
        chosen = (
            np.arange(shape[-1]) if selected is None else np.asarray([int(c) for c in selected])
        )
        bad = [int(c) for c in chosen if not 0 <= c < shape[-1]]
        if bad:
            raise ValueError(
                f"channel(s) {bad} out of range: tap {tap!r} has {shape[-1]} channels (0..{shape[-1] - 1})"
            )
        channels[tap] = chosen

    trace_count = 0

    def update(state, images, valid, first_index, variables):
        nonlocal trace_count
        trace_count += 1  # Python side effect: runs only while tracing
        acts = taps_fn(images, variables)
        new_state = {}
        for tap in taps:
            a = acts[tap][..., jnp.asarray(channels[tap])]  # [B, h, w, C]
            b, h, w, c = a.shape
            flat = a.reshape(b, h * w, c).astype(jnp.float32)
            best = jnp.where(valid[:, None], flat.max(axis=1), -jnp.inf)  # [B, C]
            where = flat.argmax(axis=1).astype(jnp.int32)  # [B, C]
            index = jnp.broadcast_to(first_index + jnp.arange(b, dtype=jnp.int32)[:, None], (b, c))
            values, idx, pos = state[tap]
            all_values = jnp.concatenate([values, best.T], axis=1)  # [C, k + B]
            all_idx = jnp.concatenate([idx, index.T], axis=1)
            all_pos = jnp.concatenate([pos, where.T], axis=1)
            top_values, order = jax.lax.top_k(all_values, k)  # [C, k]
            new_state[tap] = (
                top_values,
                jnp.take_along_axis(all_idx, order, axis=1),
                jnp.take_along_axis(all_pos, order, axis=1),
            )
        return new_state

    step = jax.jit(update, donate_argnums=0)
    state = {
        tap: (
            jnp.full((len(ch), k), -jnp.inf, jnp.float32),
            jnp.full((len(ch), k), -1, jnp.int32),
            jnp.zeros((len(ch), k), jnp.int32),
        )
        for tap, ch in channels.items()
    }
    originals: dict[int, np.ndarray] = {}
    pending: dict[int, np.ndarray] = {}
    batch: list[np.ndarray] = []
    count = 0

    def flush():
        nonlocal state
        n = len(batch)
        images = np.zeros((batch_size, *input_hw, 3), np.float32)  # fixed shape: one compilation
        images[:n] = np.stack(batch)
        valid = np.arange(batch_size) < n
        state = step(state, images, valid, np.int32(count - n), variables)
        # Keep the pixels of current winners only; everything else can be dropped.
        winners = set(
            np.unique(np.concatenate([np.asarray(s[1]).ravel() for s in state.values()])).tolist()
        )
        for i in list(originals):
            if i not in winners:
                del originals[i]
        for i, region in pending.items():
            if i in winners:
                originals[i] = region
        pending.clear()
        batch.clear()

    skipped: list[str] = []
    stream = iterate_images(data, preprocessing, batch_size, skipped=skipped)
    for image in itertools.islice(stream, max_images or None):
        net_input, region = _fit_to_input(image, input_hw)
        batch.append(net_input)
        pending[count] = region
        count += 1
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if count == 0:
        why = f" ({len(skipped)} unreadable file(s) skipped: {skipped[0]} ...)" if skipped else ""
        raise ValueError(f"the dataset yielded no images{why}")

    tops = {}
    for (
        tap
    ) in taps:  # request order (jit returns dicts with sorted keys: blocks.10 before blocks.2)
        values, idx, pos = state[tap]
        w = shapes[tap].shape[2]
        flat_positions = np.asarray(pos)
        tops[tap] = TopActivations(
            tap=tap,
            channels=channels[tap],
            values=np.asarray(values),
            image_index=np.asarray(idx),
            y=flat_positions // w,
            x=flat_positions % w,
            map_hw=(int(shapes[tap].shape[1]), int(w)),
        )
    return TopKScan(tops, originals, input_hw, count, trace_count, skipped)


# ----------------------------------------------------------------------------------------------------
# Patches


def crop_patch(
    original: np.ndarray,
    box: tuple[int, int, int, int],
    input_hw: tuple[int, int],
    fill: float = 128.0,
) -> np.ndarray:
    """Crops input-pixel `box` (top, left, bottom, right; may extend past the border) from `original`.

    `original` is the region that was resized to `input_hw`, so the box scales by its size ratio. The
    result always covers the whole (scaled) box; pixels outside the image are `fill`, which keeps every
    patch of a layer the same size and shows where a field hangs over the border.
    """
    oh, ow = original.shape[:2]
    sy, sx = oh / input_hw[0], ow / input_hw[1]
    top, left = math.floor(box[0] * sy), math.floor(box[1] * sx)
    bottom, right = max(top + 1, math.ceil(box[2] * sy)), max(left + 1, math.ceil(box[3] * sx))
    patch = np.full((bottom - top, right - left, 3), fill, np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, oh), min(right, ow)
    if y1 > y0 and x1 > x0:
        patch[y0 - top : y1 - top, x0 - left : x1 - left] = original[y0:y1, x0:x1]
    return patch


def top_patches(
    scan: TopKScan, fields: Mapping[str, ReceptiveField]
) -> dict[str, list[list[np.ndarray]]]:
    """Per tap, per chosen channel: the k receptive-field patches (float 0..255), best first."""
    out: dict[str, list[list[np.ndarray]]] = {}
    for tap, top in scan.tops.items():
        rf = fields[tap]
        rows = []
        for c in range(len(top.channels)):
            patches = []
            for j in range(top.values.shape[1]):
                index = int(top.image_index[c, j])
                if index < 0:
                    continue
                box = rf.box(int(top.y[c, j]), int(top.x[c, j]), clip=False)
                patches.append(crop_patch(scan.originals[index], box, scan.input_hw))
            rows.append(patches)
        out[tap] = rows
    return out


# ----------------------------------------------------------------------------------------------------
# Figures


def layer_figure(
    patches: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cell: int = 48,
    columns: int | None = None,
) -> np.ndarray:
    """One layer's grid: for each channel a √k×√k block of its patches (each resized to `cell` px)."""
    k = max((len(p) for p in patches), default=1)
    side = math.ceil(math.sqrt(k))
    blocks = [render.patch_block(channel_patches, side, cell) for channel_patches in patches]
    return render.grid(blocks, labels, columns=columns, gap=6, caption=12, title=title)


def render_layers(
    scan: TopKScan,
    fields: Mapping[str, ReceptiveField],
    *,
    cell: int = 48,
    columns: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-tap figures (title "Layer i: tap, field N px") and all of them stacked, first layer on top."""
    patches = top_patches(scan, fields)
    figures = {}
    for i, (tap, rows) in enumerate(patches.items(), start=1):
        rf = fields[tap]
        title = (
            f"Layer {i}: {tap}  (receptive field {rf.size[0]}x{rf.size[1]} px, stride {rf.jump[0]})"
        )
        labels = [f"ch {int(c)}" for c in scan.tops[tap].channels]
        figures[tap] = layer_figure(rows, labels, title=title, cell=cell, columns=columns)
    width = max(f.shape[1] for f in figures.values())
    stacked = np.concatenate(
        [
            np.pad(f, ((0, 0), (0, width - f.shape[1]), (0, 0)), constant_values=255)
            for f in figures.values()
        ],
        axis=0,
    )
    return figures, stacked


# ----------------------------------------------------------------------------------------------------
# Config form (`python -m tljax.visualize`, configs/top9_*.py)


# `scan_top_activations` arguments that are not run options (objects; the size is `input_size`).
_NOT_OPTIONS = ("preprocessing", "input_hw")


def default_config() -> Config:
    """The top-9 run config: I/O keys plus `scan_top_activations`' keyword arguments.

    `technique="top9"` (what `python -m tljax.visualize` dispatches on), `model`, `weights`, `taps` (one
    figure row block each), `channels` (a tuple; channels past a tap's width are dropped for that tap),
    `data` ("photos": foolbox's 20 ImageNet photos plus the scikit-image / scikit-learn / matplotlib
    sample photos, each also as four quadrant crops; "foolbox"; "fashion_mnist", tljax.data's test split;
    a folder; or comma-separated files), `input_size` (the square network input), `seed`, `out` (also
    writes `<out stem>_<tap><suffix>` per layer); then every keyword argument of `scan_top_activations`
    with its default (`k`, `batch_size`, `max_images`), taken from its signature so an option is defined
    once there. `configs/top9_lite0.py` is the README's run.
    """
    io: dict[str, Any] = dict(technique="top9", model="efficientnet_lite0", weights="default")
    io.update(taps=("blocks.0", "blocks.2", "blocks.4", "blocks.6", "blocks.8"))
    io.update(channels=tuple(range(8)), data="photos", input_size=224, seed=0, out="top9.png")
    return tool_config(io, keyword_defaults(scan_top_activations, exclude=_NOT_OPTIONS))


def run_from_config(config: Config) -> dict[str, Any]:
    """Scans `config.data`, writes one figure per tap and the stacked "Layer 1 … Layer n" figure.

    Returns {"scan": TopKScan, "fields": receptive fields, "paths": {"all" | tap: written path}}.
    """
    from pathlib import Path

    from tljax.imageopt import backbone, images, inputs

    out = Path(config.out)
    taps = tuple(config.taps)
    layer_paths = {
        tap: out.with_name(f"{out.stem}_{tap.replace('.', '_')}{out.suffix}") for tap in taps
    }
    for path in (out, *layer_paths.values()):
        images.check_writable(path)
    model, variables, preprocessing = backbone.from_config(config)
    data = config.data
    if isinstance(data, str):
        data = inputs.resolve_data(data, preprocessing, config.input_size)
    check_taps(model, taps)
    hw = (config.input_size, config.input_size)
    shapes = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, taps=taps),
        variables,
        jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32),
    )
    selections = {}
    for tap in taps:
        width = shapes[tap].shape[-1]
        chosen = [c for c in config.channels if c < width]
        if not chosen:
            raise ConfigError(
                f"none of channels {list(config.channels)} exist in tap {tap!r} ({width} channels)"
            )
        selections[tap] = chosen
    options = {name: config[name] for name in keyword_defaults(scan_top_activations, _NOT_OPTIONS)}
    scan = scan_top_activations(
        model, variables, data, selections, input_hw=hw, preprocessing=preprocessing, **options
    )
    fields = receptive_fields(model, taps, hw)
    figures, stacked = render_layers(scan, fields)
    paths = {"all": images.save_image(out, stacked)}
    for tap, figure in figures.items():
        paths[tap] = images.save_image(layer_paths[tap], figure)
    skipped = f"; skipped {len(scan.skipped)} unreadable file(s)" if scan.skipped else ""
    print(
        f"scanned {scan.num_images} images (trace count {scan.trace_count}){skipped}; "
        f"wrote {Path(paths['all']).resolve()}"
    )
    return {"scan": scan, "fields": fields, "paths": paths}
