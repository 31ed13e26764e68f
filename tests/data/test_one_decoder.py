"""One decoder everywhere: the same awkward file gives the same pixels through `predict`, the training
pipeline and style transfer, or differs exactly as the documented alpha policy says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tljax.data as data
from tljax import errors
from tljax.data import images
from tljax.data.preprocess import load_eval_image
from tljax.imageopt import images as imageopt_images

SIDE = 8


@dataclasses.dataclass(frozen=True)
class Identity:
    """Mean 0, std 1 and no resize: every path hands back the decoded pixels themselves."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: int = SIDE
    crop: int = SIDE
    interpolation: str = "bilinear"


IDENTITY = Identity()


def _awkward_files(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name → (expected pixels with alpha dropped, expected pixels with alpha on white), independent
    NumPy references computed from the arrays that were written."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (SIDE, SIDE, 1), dtype=np.uint8)
    alpha[0, 0], alpha[0, 1] = 0, 255
    on_white = rgb * (alpha / 255.0) + 255.0 * (1 - alpha / 255.0)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(folder / "rgba.png")
    out["rgba.png"] = (rgb, on_white)

    palette = Image.fromarray(rgb).quantize(16)
    palette.save(folder / "palette.png")
    as_rgb = np.asarray(palette.convert("RGB"))
    out["palette.png"] = (as_rgb, as_rgb)

    transparent = palette.copy()
    transparent.info["transparency"] = 3  # palette index 3 is fully transparent
    transparent.save(folder / "palette_alpha.png", transparency=3)
    index = np.asarray(transparent)
    white = np.where((index == 3)[..., None], 255, as_rgb)
    out["palette_alpha.png"] = (as_rgb, white)

    deep = rng.integers(0, 65536, (SIDE, SIDE), dtype=np.uint16)
    Image.fromarray(deep).save(folder / "sixteen.png")
    assert Image.open(folder / "sixteen.png").mode.startswith("I;16")
    gray = np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, -1)
    out["sixteen.png"] = (gray, gray)

    wide = rng.integers(0, 2**20, (SIDE, SIDE), dtype=np.int32)
    Image.fromarray(wide, "I").save(folder / "int32.tif")
    assert Image.open(folder / "int32.tif").mode == "I"
    gray = np.repeat(np.clip(wide >> 8, 0, 255).astype(np.uint8)[..., None], 3, -1)
    out["int32.tif"] = (gray, gray)

    cmyk = rng.integers(0, 256, (SIDE, SIDE, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(folder / "cmyk.tif")
    # PIL's CMYK → RGB (no colour profile): each channel is (255 - ink)·(255 - black)/255, rounded.
    ink, black = cmyk[..., :3].astype(int), cmyk[..., 3:].astype(int)
    want = np.round((255 - ink) * (255 - black) / 255).astype(np.uint8)
    out["cmyk.tif"] = (want, want)
    return out


def test_same_pixels_through_predict_pipeline_and_style(tmp_path: Path, small_config) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    expected = _awkward_files(folder)
    # The pipeline reads a class folder: one class per file, so each batch item is known.
    root = tmp_path / "classes"
    for name in expected:
        (root / name.replace(".", "_")).mkdir(parents=True)
        (root / name.replace(".", "_") / name).write_bytes((folder / name).read_bytes())
    config = small_config(
        source="image_folder",
        root=str(root),
        test_fraction=0.0,
        image_size=SIDE,
        resize_size=SIDE,
    )
    datasets = data.build_datasets(config, IDENTITY, seed=0)
    assert datasets.skipped.count == 0
    batch = next(datasets.train.iterator(len(expected), epochs=1, augment=False))
    classes = datasets.class_names
    for name, (dropped, on_white) in expected.items():
        path = str(folder / name)
        decoded = images.load_image(path)
        np.testing.assert_array_equal(decoded, dropped, err_msg=name)
        np.testing.assert_array_equal(load_eval_image(path, IDENTITY), dropped, err_msg=name)
        position = list(batch["label"]).index(classes.index(name.replace(".", "_")))
        np.testing.assert_array_equal(batch["image"][position], dropped, err_msg=name)
        # Style transfer: alpha on white (PIL rounds the composite: within one level), else identical.
        style_pixels = imageopt_images.load_image(path)
        assert style_pixels.dtype == np.float32
        np.testing.assert_allclose(style_pixels, on_white, atol=1.0, err_msg=name)
        if np.array_equal(dropped, on_white):
            np.testing.assert_array_equal(style_pixels, dropped, err_msg=name)


def test_alpha_policy_is_explicit_and_checked(tmp_path: Path) -> None:
    Image.new("LA", (3, 2), (10, 0)).save(tmp_path / "la.png")
    assert (images.load_image(str(tmp_path / "la.png"), alpha="drop") == 10).all()
    assert (images.load_image(str(tmp_path / "la.png"), alpha="white") == 255).all()
    with pytest.raises(ValueError, match="alpha='black'"):
        images.load_image(str(tmp_path / "la.png"), alpha="black")  # type: ignore[arg-type]


def test_bomb_and_corrupt_files_are_bad_images(tmp_path: Path, monkeypatch) -> None:
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 × 1000: a "bomb"
    with pytest.raises(errors.BadImageError, match="big.png"):
        imageopt_images.load_image(tmp_path / "big.png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(errors.BadImageError, match="cut.png"):
        imageopt_images.load_image(tmp_path / "cut.png")
    with pytest.raises(errors.ImageNotFoundError, match="missing.png"):
        imageopt_images.load_image(tmp_path / "missing.png")
