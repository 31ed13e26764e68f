"""The one grid renderer behind every figure of the image-optimisation tools.

`grid` lays equal-sized tiles out in rows on a white canvas, each with an optional caption above it and
an optional title on top; feature visualisation tiles one image per channel, top-9 one block of patches
per channel (`patch_block`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["grid", "patch_block"]

TITLE_HEIGHT = 18  # pixels above the first row when there is a title


def grid(
    tiles: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    gap: int = 4,
    caption: int = 14,
    title: str | None = None,
) -> np.ndarray:
    """Tiles `[N, h, w, 3]` uint8 images into one `[H, W, 3]` uint8 picture (row-major, `gap` pixels apart).

    `columns` defaults to ⌈√N⌉; each tile gets a `caption`-pixel strip above it holding its label when
    `labels` is given (no strip otherwise), and `title` a strip above everything.
    """
    from PIL import Image, ImageDraw

    tiles = [np.asarray(t, np.uint8) for t in tiles]
    if not tiles:
        raise ValueError("nothing to render: no tiles")
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise ValueError(f"grid tiles must share one size, got {sorted({t.shape for t in tiles})}")
    n = len(tiles)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    caption = caption if labels is not None else 0
    header = TITLE_HEIGHT if title else 0
    canvas = Image.new(
        "RGB",
        (columns * (w + gap) + gap, header + rows * (h + caption + gap) + gap),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 3), title, fill=(0, 0, 0))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x0 = gap + c * (w + gap)
        y0 = header + gap + r * (h + caption + gap)
        if labels is not None:
            draw.text((x0, y0), str(labels[i]), fill=(0, 0, 0))
        canvas.paste(Image.fromarray(tile), (x0, y0 + caption))
    return np.asarray(canvas)


def patch_block(patches: Sequence[np.ndarray], side: int, cell: int, inner: int = 1) -> np.ndarray:
    """A `side`×`side` block of patches (float 0..255, any sizes), each resized to `cell` pixels, on gray.

    Patches are resized with nearest-neighbour when enlarged (early layers' fields are a few pixels; the
    block should show those pixels, not a blur) and area-averaged when shrunk.
    """
    from PIL import Image

    size = side * cell + (side - 1) * inner
    block = Image.new("RGB", (size, size), (60, 60, 60))
    for j, patch in enumerate(patches):
        pr, pc = divmod(j, side)
        pil = Image.fromarray(np.clip(patch, 0, 255).round().astype(np.uint8))
        resample = (
            Image.Resampling.NEAREST if max(patch.shape[:2]) <= cell else Image.Resampling.BOX
        )
        block.paste(pil.resize((cell, cell), resample), (pc * (cell + inner), pr * (cell + inner)))
    return np.asarray(block)
