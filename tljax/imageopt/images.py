"""Image files for the image-optimisation tools: read through the one decoder, written atomically.

`load_image` is `tljax.data.images.load_image` with the transparency policy `alpha="white"` (see that
module), as float32 for optimisation; `save_image` writes 8-bit files through `tljax.fileio.atomic_path`
(whole or not at all); `check_writable` tells before a long optimisation whether `--out` can be written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from tljax import errors
from tljax.fileio import atomic_path

Array = jax.Array

__all__ = ["check_writable", "fit_max_side", "load_image", "resize_image", "save_image"]


def load_image(path: str | os.PathLike, *, max_side: int | None = None) -> np.ndarray:
    """Reads an image file as float32 RGB `[H, W, 3]` in 0..255, optionally resized to `max_side`.

    Decoded by the one decoder, `tljax.data.images.load_image`, with the transparency policy
    `alpha="white"`: transparent areas are composited on white (they are almost always background, and
    black would paint hard edges the optimiser then amplifies). Everything else (gray, palette, CMYK,
    16-bit, EXIF orientation) gives exactly the pixels the training pipeline and `predict` see. A missing
    file raises `tljax.errors.ImageNotFoundError` (a `FileNotFoundError`), a file that cannot be decoded
    `tljax.errors.BadImageError` (a `ValueError`), both naming the path.
    """
    from tljax.data import images

    path = Path(path)
    if not path.exists():
        raise errors.ImageNotFoundError(f"image file not found: {str(path)!r}")
    if path.is_dir():
        raise errors.BadImageError(f"expected an image file, got a directory: {str(path)!r}")
    try:
        rgb = images.load_image(str(path), alpha="white").astype(np.float32)
    except errors.BadImageError as err:
        cause = err.__cause__ or err  # the decoder's message starts with the path; say it once
        raise errors.BadImageError(
            f"cannot read {str(path)!r}: {type(cause).__name__}: {cause}"
        ) from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise errors.BadImageError(f"image {str(path)!r} is empty ({rgb.shape[1]}×{rgb.shape[0]})")
    if max_side is not None:
        rgb = fit_max_side(rgb, max_side)
    return rgb


def save_image(path: str | os.PathLike, image: Array | np.ndarray) -> Path:
    """Writes `[H, W, 3]` (or `[1, H, W, 3]`) 0..255 pixels as an 8-bit image (format from the suffix).

    Written atomically (`tljax.fileio.atomic_path`): an interrupted run never leaves half a PNG where a
    previous result was. Missing parent directories are created.
    """
    from PIL import Image

    pixels = np.asarray(image, np.float32)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {pixels.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.nan_to_num(pixels), 0.0, 255.0).round().astype(np.uint8)
    # The temporary name keeps the suffix, but PIL is told the format so ".tmp.png" cannot confuse it.
    file_format = Image.registered_extensions().get(path.suffix.lower())
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=file_format)
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Raises `tljax.errors.UserError` now if an output file cannot be written at `path`.

    Called before the optimisation, so a typo in `--out` (a parent that is a regular file, a read-only
    directory, an unknown image suffix) costs seconds, not the whole run. Creates missing parent
    directories (as `save_image` would) and removes its probe file.
    """
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise errors.UserError(
            f"--out {str(path)!r} is a directory: give a file name such as out.png"
        )
    if path.suffix.lower() not in Image.registered_extensions():
        raise errors.UserError(
            f"--out {str(path)!r}: unknown image suffix {path.suffix!r}; use .png or .jpg"
        )
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists() and not ancestor.is_dir():
            raise errors.UserError(
                f"--out {str(path)!r}: {str(ancestor)!r} is a file, not a directory; choose another path"
            )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tljax-write-check."):
            pass
    except OSError as err:
        raise errors.UserError(
            f"--out {str(path)!r} is not writable ({err.strerror or err}): choose a writable location"
        ) from None
    return path


def resize_image(image: Array | np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resizes `[H, W, 3]` pixels to `hw` with the one resize (`tljax.data.preprocess.resize`, bicubic,
    antialiased when shrinking), float32 numpy."""
    from tljax.data.preprocess import resize

    image = np.asarray(image, np.float32)
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    return resize(image, hw, "bicubic")


def fit_max_side(image: Array | np.ndarray, max_side: int) -> np.ndarray:
    """Resizes so the longer side is `max_side`, keeping the aspect ratio (neural-style's -image_size)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    return resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))
