"""Where the image-optimisation tools get their images: any iterable, files, folders, tljax data
sources and splits (`iterate_images`), and the real photos that install offline (`offline_photo_files`,
`resolve_data` for top-9's `data` key, `foolbox_photos` for feature visualisation's comparison).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from tljax.data.preprocess import NO_WEIGHTS
from tljax.errors import BadImageError
from tljax.imageopt.images import load_image, resize_image
from tljax.imageopt.objective import MeanStd, deprocess

__all__ = ["foolbox_photos", "iterate_images", "offline_photo_files", "resolve_data"]


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
        alpha = array[..., 3:] / 255.0  # composite on white, as images.load_image does for files
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
      `images.load_image`; a file that cannot be decoded (corrupt, truncated, a decompression bomb) is
      skipped, logged and appended to `skipped` as `"path: reason"`, the policy of the training pipeline;
    * a file path or a sequence of paths: read with `images.load_image`; these were named explicitly, so a
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


_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "ihc.png",
)


def _package_dir(name: str) -> Path | None:
    """Where an installed package's files are, without importing it (foolbox's import pulls in eagerpy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def offline_photo_files(which: str = "photos") -> list[Path]:
    """Real photos that install offline: foolbox's 20 ImageNet photos, plus (for 'photos') sample photos
    shipped in scikit-image, scikit-learn and matplotlib wheels. Missing packages are skipped."""
    files: list[Path] = []
    foolbox = _package_dir("foolbox")
    if foolbox is not None:
        files += sorted((foolbox / "data").glob("imagenet_*.jpg"))
    if which == "photos":
        skimage = _package_dir("skimage")
        if skimage is not None:
            files += [
                skimage / "data" / f for f in _SKIMAGE_PHOTOS if (skimage / "data" / f).exists()
            ]
        sklearn = _package_dir("sklearn")
        if sklearn is not None:
            files += sorted((sklearn / "datasets" / "images").glob("*.jpg"))
        matplotlib = _package_dir("matplotlib")
        if matplotlib is not None:
            hopper = matplotlib / "mpl-data" / "sample_data" / "grace_hopper.jpg"
            files += [hopper] if hopper.exists() else []
    if not files:
        raise FileNotFoundError(
            f"no offline photos found for --data={which} (is foolbox installed?)"
        )
    return files


def _photos_with_quadrants(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """Each photo, then its four quadrants: 5× the images, and the quadrants show detail at 2× scale."""
    for path in files:
        image = load_image(path)
        yield image
        h, w = image.shape[0] // 2, image.shape[1] // 2
        for top, left in ((0, 0), (0, w), (h, 0), (h, w)):
            yield image[top : top + h, left : left + w]


def _fashion_mnist_test(preprocessing: Any, input_size: int):
    """tljax.data's Fashion-MNIST test split (Debian `dataset-fashion-mnist`), no augmentation."""
    from tljax import data

    config = data.default_data_config()
    config.source = "fashion_mnist"
    config.image_size = input_size
    config.resize_size = input_size
    config.augment.enabled = False
    return data.build_datasets(config, preprocessing, seed=0).test


def resolve_data(spec: str, preprocessing: Any, input_size: int) -> Any:
    """The `--data` flag → something `topk_patches.scan_top_activations` iterates."""
    if spec == "photos":
        return _photos_with_quadrants(offline_photo_files("photos"))
    if spec == "foolbox":
        return offline_photo_files("foolbox")
    if spec == "fashion_mnist":
        return _fashion_mnist_test(preprocessing, input_size)
    if "," in spec:
        return [Path(p.strip()) for p in spec.split(",") if p.strip()]
    return Path(spec)


def foolbox_photos(hw: tuple[int, int]) -> np.ndarray | None:
    """The 20 ImageNet photos shipped in the foolbox wheel, resized to `hw`: `[20, H, W, 3]`, or None."""
    try:
        files = offline_photo_files("foolbox")
    except FileNotFoundError:
        return None
    return np.stack([resize_image(load_image(f), hw) for f in files])
