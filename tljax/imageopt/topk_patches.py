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
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tljax.data.preprocess import NO_WEIGHTS
from tljax.errors import BadImageError
from tljax.imageopt.core import MeanStd, check_taps, deprocess, load_image, make_taps_fn
from tljax.imageopt.receptive_field import ReceptiveField, receptive_fields

Array = jax.Array

__all__ = [
    "TopActivations",
    "TopKScan",
    "crop_patch",
    "iterate_images",
    "layer_figure",
    "render_layers",
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


# ----------------------------------------------------------------------------------------------------
# Input: any iterable of images, files, a tljax data Source, or a tljax data Split.


def _as_rgb(image: Any, where: str) -> np.ndarray:
    """Any `[H, W]`, `[H, W, 1|3|4]` array (uint8 or float 0..255) → float32 `[H, W, 3]`."""
    array = np.asarray(image, np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: expected an [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] image, got {array.shape}"
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        alpha = array[..., 3:] / 255.0  # composite on white, as core.load_image does for files
        array = array[..., :3] * alpha + 255.0 * (1.0 - alpha)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{where}: empty image {array.shape}")
    return array


def iterate_images(
    data: Any,
    preprocessing: MeanStd | None = None,
    batch_size: int = 32,
    *,
    skipped: list[str] | None = None,
) -> Iterator[np.ndarray]:
    """Yields float32 `[H, W, 3]` 0..255 images, in order, from any supported kind of `data`.

    * a directory: its image files (by extension, hidden files ignored, sorted), read with
      `core.load_image`; a file that cannot be decoded (corrupt, truncated, a decompression bomb) is
      skipped, logged and appended to `skipped` as `"path: reason"`, the policy of the training pipeline;
    * a file path or a sequence of paths: read with `core.load_image`; these were named explicitly, so a
      missing one raises FileNotFoundError and an unreadable one `BadImageError` (a ValueError), both
      naming the file;
    * a tljax data `Source` (`len` + `load(index, draft_size)`): every example, in index order;
    * a tljax data `Split` (has `.iterator`): its batches in order, without shuffling or augmentation,
      mapped back to pixels with `preprocessing` (the batches are normalised);
    * any iterable of arrays `[H, W(, C)]` in 0..255.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            yield from _iterate_folder(path, skipped)
            return
        data = [path]
    if hasattr(data, "iterator") and callable(data.iterator):
        yield from _iterate_split(data, preprocessing, batch_size)
        return
    if hasattr(data, "load") and hasattr(data, "__len__"):
        for index in range(len(data)):
            image, _label = data.load(index, None)
            yield _as_rgb(
                np.asarray(image.convert("RGB") if hasattr(image, "convert") else image),
                f"source item {index}",
            )
        return
    for i, item in enumerate(data):
        if isinstance(item, (str, os.PathLike)):
            yield load_image(item)
        else:
            yield _as_rgb(item, f"image {i}")


def _iterate_folder(folder: Path, skipped: list[str] | None) -> Iterator[np.ndarray]:
    from tljax.data.images import has_image_extension, is_hidden

    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not is_hidden(p.name) and has_image_extension(p.name)
    )
    if not files:
        raise FileNotFoundError(f"no image files in directory {str(folder)!r}")
    for path in files:
        try:
            image = load_image(path)
        except BadImageError as err:
            logging.warning("skipping %s: %s", path, err)
            if skipped is not None:
                skipped.append(f"{path}: {err}")
            continue
        yield image


def _iterate_split(
    split: Any, preprocessing: MeanStd | None, batch_size: int
) -> Iterator[np.ndarray]:
    try:
        it = split.iterator(
            batch_size, shuffle=False, epochs=1, drop_remainder=False, augment=False
        )
    except TypeError:  # a split type without the augment switch
        it = split.iterator(batch_size, shuffle=False, epochs=1, drop_remainder=False)
    try:
        for batch in it:
            images = np.asarray(batch["image"], np.float32)
            # Without weights' preprocessing, tljax.data scales pixels to [-1, 1] (`NO_WEIGHTS`).
            pixels = np.asarray(deprocess(images, preprocessing or NO_WEIGHTS))
            for image in np.clip(pixels, 0.0, 255.0):
                yield image
    finally:  # stop grain's prefetch threads now if the caller stopped early (--max_images)
        close = getattr(it, "close", None)
        if callable(close):
            close()


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
    # PIL rather than core.resize_image: jax.image.resize compiles once per distinct photo size.
    from PIL import Image

    pil = Image.fromarray(np.clip(region, 0, 255).round().astype(np.uint8))
    resized = np.asarray(pil.resize((tw, th), Image.BICUBIC), np.float32)
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
) -> TopKScan:
    """Streams `data` through `model` and keeps, per tap and chosen channel, the k best images.

    `selections` maps tap names to channel indices (None = every channel). Each image is centre-cropped
    to the aspect of `input_hw`, resized to it and normalised with `preprocessing` (mean/std in 0..255
    units). Bad tap names raise the model's ValueError (listing valid names); channels out of range
    raise ValueError naming the tap's number of channels.
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
        chosen = selections[tap]
        chosen = np.arange(shape[-1]) if chosen is None else np.asarray([int(c) for c in chosen])
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
    for image in iterate_images(data, preprocessing, batch_size, skipped=skipped):
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
        pos = np.asarray(pos)
        tops[tap] = TopActivations(
            tap=tap,
            channels=channels[tap],
            values=np.asarray(values),
            image_index=np.asarray(idx),
            y=pos // w,
            x=pos % w,
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
    """One layer's grid: for each channel a √k×√k block of its patches (each resized to `cell` px).

    Patches are resized with nearest-neighbour when enlarged (early layers' fields are a few pixels; the
    blocks should show those pixels, not a blur) and area-averaged when shrunk.
    """
    from PIL import Image, ImageDraw

    n = len(patches)
    k = max((len(p) for p in patches), default=1)
    side = math.ceil(math.sqrt(k))
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    inner, gap = 1, 6
    block = side * cell + (side - 1) * inner
    caption = 12 if labels else 0
    header = 18 if title else 0
    canvas = Image.new(
        "RGB",
        (columns * (block + gap) + gap, header + rows * (block + caption + gap) + gap),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 3), title, fill=(0, 0, 0))
    for i, channel_patches in enumerate(patches):
        r, c = divmod(i, columns)
        x0, y0 = gap + c * (block + gap), header + gap + r * (block + caption + gap)
        if labels:
            draw.text((x0, y0), str(labels[i]), fill=(0, 0, 0))
        y0 += caption
        draw.rectangle((x0, y0, x0 + block - 1, y0 + block - 1), fill=(60, 60, 60))
        for j, patch in enumerate(channel_patches):
            pr, pc = divmod(j, side)
            pil = Image.fromarray(np.clip(patch, 0, 255).round().astype(np.uint8))
            resample = Image.NEAREST if max(patch.shape[:2]) <= cell else Image.BOX
            pil = pil.resize((cell, cell), resample)
            canvas.paste(pil, (x0 + pc * (cell + inner), y0 + pr * (cell + inner)))
    return np.asarray(canvas)


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


def layer_fields(
    model: nn.Module, taps: Iterable[str], input_hw: tuple[int, int]
) -> dict[str, ReceptiveField]:
    """Receptive fields of `taps` at `input_hw` (a thin alias kept next to its only consumer)."""
    return receptive_fields(model, tuple(taps), input_hw)
