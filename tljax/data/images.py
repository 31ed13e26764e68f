"""The one image decoder: any common file → 8-bit gray or RGB, the way a messy folder needs.

Every tool reads images here (training pipeline, `predict`, style transfer, DeepDream, top-9 patches), so
the same file gives the same pixels everywhere. The one policy that truly differs between tools is what
transparency means, and it is an explicit argument (`alpha`):

* `"drop"` (training, `predict`): the colour channels as stored, alpha discarded, as torchvision's
  `convert("RGB")` does, so accuracy matches the weights' published numbers.
* `"white"` (image optimisation): composited on a white background; transparent areas are almost always
  background, and the colour hidden under alpha 0 (often black) would paint edges the optimiser amplifies.

Everything else is shared: EXIF orientation applied; palette expanded; CMYK/YCbCr converted by PIL;
16-bit integer gray scaled by `>> 8` (65535 → 255, not clipped); 32-bit `I` shifted the same way when its
values exceed 255; float `F` taken as 0..1 (×255) unless its values exceed 1.

Kept apart from the pipeline so it can be tested on single files with known answers (EXIF rotation,
16-bit scaling) and so the index-time header check and the run-time decode share one definition of
"an image we accept".
"""

from __future__ import annotations

import os
import struct
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from tljax.errors import BadImageError

# Lower-case suffixes we try to read; anything else in a class folder is ignored without counting
# (README.txt, .csv labels, Thumbs.db are normal in real folders).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

_EXIF_ORIENTATION = 0x0112

# What PIL and its plugins raise for a file they cannot decode (UnidentifiedImageError and "image file is
# truncated" are OSErrors; some plugins raise SyntaxError, struct.error or EOFError on a corrupt header).
# The decompression-bomb warning counts as a failure too: a file past PIL.Image.MAX_IMAGE_PIXELS is
# refused, not decoded with a warning.
_DECODE_ERRORS = (
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
)

Alpha = Literal["drop", "white"]
ALPHA_POLICIES = ("drop", "white")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def is_hidden(name: str) -> bool:
    """Dot files (.DS_Store, AppleDouble `._x.jpg`) and tool folders (`__MACOSX`) are never data."""
    return name.startswith(".") or name.startswith("__")


def has_image_extension(name: str) -> bool:
    """Case-insensitive extension check, so `IMG_0001.JPG` from a camera counts."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def verify_header(path: str) -> str | None:
    """Cheap index-time check: None if PIL can identify the file and `verify()` passes, else the reason.

    `verify` reads the header (and for PNG the chunk CRCs) without decoding pixels; a truncated JPEG still
    passes and is caught by the run-time guard instead.
    """
    try:
        with Image.open(path) as image:
            too_big = _bomb_reason(image)
            if too_big is not None:
                return too_big
            image.verify()
    except Exception as error:  # PIL raises many types (SyntaxError, OSError, struct.error, ...)
        return f"{type(error).__name__}: {error}"
    return None


def _bomb_reason(image: Image.Image) -> str | None:
    """Why `image` is refused as a decompression bomb (its header declares more pixels than
    `PIL.Image.MAX_IMAGE_PIXELS`), or None.

    PIL only warns between 1x and 2x the limit, and a warning is not caught by the skip-and-count guards;
    checking the declared size here (before any pixel is decoded) makes the policy the same everywhere.
    """
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is None or width * height <= limit:
        return None
    return (
        f"{width}x{height} = {width * height} pixels is over the decompression-bomb limit of "
        f"{limit} (PIL.Image.MAX_IMAGE_PIXELS); raise that limit only for files you trust"
    )


def _sixteen_bit_to_gray8(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float gray to 8 bits; PIL's own convert("L") clips at 255 instead."""
    array = np.asarray(image)
    if image.mode == "F":
        # Floats in 0..1 are the usual convention; anything larger is taken as already 0..255.
        scale = 255.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 1.0
        array8 = np.clip(np.nan_to_num(array) * scale, 0, 255).round()
    elif image.mode.startswith("I;16") or int(array.max(initial=0)) > 255:
        array8 = np.clip(array.astype(np.int64) >> 8, 0, 255)
    else:  # mode "I" whose values already fit in 8 bits
        array8 = np.clip(array, 0, 255)
    return Image.fromarray(array8.astype(np.uint8), mode="L")


def to_gray_or_rgb(image: Image.Image, *, alpha: Alpha = "drop") -> Image.Image:
    """Return `image` in mode "L" or "RGB": palette expanded, CMYK/YCbCr converted, alpha per `alpha`.

    Gray stays one channel here because resizing one channel is 3× cheaper; it is replicated to 3 channels
    after the resize. `alpha` is the transparency policy of the module docstring. Raises ValueError for
    modes PIL cannot convert (the caller skips and counts).
    """
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"alpha={alpha!r}; expected one of {ALPHA_POLICIES}")
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        # Palette with transparency must go through RGBA, else PIL warns and may pick a wrong colour.
        if "transparency" not in image.info:
            return image.convert("RGB")
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        if alpha == "white":
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            composited = Image.alpha_composite(white, rgba)
            return composited.convert("L" if mode in ("LA", "La") else "RGB")
        if mode in ("LA", "La"):
            return image.convert("L")
        return image.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _sixteen_bit_to_gray8(image)
    try:
        return image.convert("RGB")  # RGBX, CMYK, YCbCr, LAB, HSV
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot convert mode {mode} to RGB: {error}") from error


def open_image(
    path: str, *, draft_size: tuple[int, int] | None = None, alpha: Alpha = "drop"
) -> Image.Image:
    """Fully decode `path`, apply its EXIF orientation and return it in mode "L" or "RGB".

    `alpha` is the transparency policy ("drop" or "white", see the module docstring).
    `draft_size` lets JPEG decode at a reduced scale (a power-of-two DCT shortcut) when the picture is
    much larger than what the pipeline keeps; PIL never goes below the requested size. Raises
    `BadImageError` (naming the file and the cause) for every file that cannot be decoded: missing or
    unreadable, not an image, truncated, corrupt, a decompression bomb, an unconvertible mode. Callers
    that skip and count catch exactly that.
    """
    if alpha not in ALPHA_POLICIES:  # a caller's bug, not a bad file: checked before the guard
        raise ValueError(f"alpha={alpha!r}; expected one of {ALPHA_POLICIES}")
    try:
        with Image.open(path) as image:
            too_big = _bomb_reason(image)
            if too_big is not None:
                raise BadImageError(f"{path}: {too_big}")
            if draft_size is not None and image.format == "JPEG":
                # The draft must stay ≥ the target after a possible 90° EXIF rotation: ask for the square.
                side = max(draft_size)
                image.draft("RGB" if image.mode != "L" else "L", (side, side))
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                return to_gray_or_rgb(ImageOps.exif_transpose(image), alpha=alpha)
            return to_gray_or_rgb(image, alpha=alpha)
    except BadImageError:
        raise  # already names the file and the reason
    except _DECODE_ERRORS as error:
        raise BadImageError(
            f"{path}: cannot read as an image ({type(error).__name__}: {error})"
        ) from error


def load_image(path: str, *, alpha: Alpha = "drop") -> np.ndarray:
    """Decode `path` to `uint8 [H, W, 3]` RGB (gray replicated), EXIF orientation applied.

    `alpha`: "drop" (the stored colours) or "white" (composited on white); see the module docstring.
    """
    image = open_image(path, alpha=alpha)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array
