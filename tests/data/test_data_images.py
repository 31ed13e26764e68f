"""Single-file decoding: EXIF orientation, 16-bit scaling, mode conversions, header check."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tljax.data as data
from tests.assets import write_bomb_png
from tljax.data import images
from tljax.errors import BadImageError, UserError


def _left_red_right_blue() -> Image.Image:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    return image


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    # Orientation 6: the camera was turned, the viewer rotates 90° clockwise, so the stored left half
    # (red) ends up on top of a 20-wide, 40-tall picture.
    exif = Image.Exif()
    exif[0x0112] = 6
    _left_red_right_blue().save(tmp_path / "turned.jpg", quality=95, exif=exif)
    pixels = data.load_image(str(tmp_path / "turned.jpg")).astype(int)
    assert pixels.shape == (40, 20, 3)
    np.testing.assert_allclose(pixels[5, 10], (255, 0, 0), atol=12)
    np.testing.assert_allclose(pixels[35, 10], (0, 0, 255), atol=12)
    # Without the tag the same file stays as stored.
    _left_red_right_blue().save(tmp_path / "plain.jpg", quality=95)
    assert data.load_image(str(tmp_path / "plain.jpg")).shape == (20, 40, 3)


def test_exif_rotation_reaches_the_pipeline(tmp_path: Path, small_config, preprocessing) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _left_red_right_blue().save(tmp_path / name / "turned.jpg", quality=95, exif=exif)
    config = small_config(source="image_folder", root=str(tmp_path), test_fraction=0.0)
    datasets = data.build_datasets(config, preprocessing, seed=0)
    batch = next(datasets.train.iterator(2, epochs=1, augment=False))
    pixels = batch["image"][0] * 128.0 + 127.0  # back to 0..255
    # 20×40 → resize 16×32 → centre crop rows 8..24: the upper half of the crop is red.
    np.testing.assert_allclose(pixels[2, 8], (255, 0, 0), atol=16)
    np.testing.assert_allclose(pixels[13, 8], (0, 0, 255), atol=16)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0..65535
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    pixels = data.load_image(str(tmp_path / "ramp.png"))
    np.testing.assert_array_equal(pixels[..., 0], np.arange(256).reshape(16, 16))
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def test_float_and_int32_gray() -> None:
    as_float = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    assert images.to_gray_or_rgb(as_float).getpixel((0, 0)) == 128
    as_int = Image.fromarray(np.full((4, 4), 200, dtype=np.int32))
    assert images.to_gray_or_rgb(as_int).getpixel((0, 0)) == 200


def test_gray_is_replicated_to_three_channels(tmp_path: Path) -> None:
    Image.new("L", (5, 3), 42).save(tmp_path / "g.png")
    pixels = data.load_image(str(tmp_path / "g.png"))
    assert pixels.shape == (3, 5, 3) and pixels.dtype == np.uint8
    assert (pixels == 42).all()


def test_extension_and_hidden_rules() -> None:
    assert images.has_image_extension("IMG_0001.JPG") and images.has_image_extension("x.Png")
    assert not images.has_image_extension("notes.txt") and not images.has_image_extension("jpg")
    assert (
        images.is_hidden(".DS_Store")
        and images.is_hidden("._a.jpg")
        and images.is_hidden("__MACOSX")
    )
    assert not images.is_hidden("cat.jpg")


def test_verify_header_reports_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"hello")
    Image.new("RGB", (2, 2)).save(tmp_path / "good.png")
    assert images.verify_header(str(tmp_path / "good.png")) is None
    assert "UnidentifiedImageError" in images.verify_header(str(tmp_path / "bad.png"))


def _truncated(kind: str) -> bytes:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, kind)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# Each kind of undecodable file, as (file name, how to make it in a folder, the cause the error names).
_BAD_FILES = {
    "garbage": (
        "noise.png",
        lambda p: p.write_bytes(b"\x00not an image" * 20),
        "UnidentifiedImage",
    ),
    "empty": ("empty.jpg", lambda p: p.write_bytes(b""), "UnidentifiedImage"),
    "truncated_jpeg": ("cut.jpg", lambda p: p.write_bytes(_truncated("JPEG")), "truncated"),
    "truncated_png": ("cut.png", lambda p: p.write_bytes(_truncated("PNG")), "Error"),
    "missing": ("missing.png", lambda p: None, "FileNotFoundError"),
    "directory": ("folder.png", lambda p: p.mkdir(), "IsADirectoryError"),
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS: refused all the same.
    "bomb_warning_range": (
        "warn.png",
        lambda p: write_bomb_png(p, 12_000, 8_000),
        "decompression-bomb limit",
    ),
    "bomb_error_range": (
        "bomb.png",
        lambda p: write_bomb_png(p, 60_000, 60_000),
        "DecompressionBombError",
    ),
}


@pytest.mark.parametrize("kind", sorted(_BAD_FILES))
def test_every_decode_failure_is_one_bad_image_error(tmp_path: Path, kind: str) -> None:
    name, make, cause = _BAD_FILES[kind]
    path = tmp_path / name
    make(path)
    with pytest.raises(BadImageError, match=cause) as caught:
        images.open_image(str(path))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, UserError)  # so a CLI prints it as one line


def test_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # 96 M pixels declared (288 MB of RGB if decoded): the refusal happens at the header.
    path = write_bomb_png(tmp_path / "warn.png", 12_000, 8_000)
    tracemalloc.start()
    try:
        with pytest.raises(BadImageError, match="96000000 pixels"):
            images.open_image(str(path))
        assert "decompression-bomb limit" in images.verify_header(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, peak


def test_a_tfds_example_that_is_not_an_image_is_a_bad_image_error() -> None:
    from tljax.data.sources import TfdsSource

    examples = [
        {"image": np.full((4, 4, 3), 9, np.uint8), "label": 0},
        {"image": np.zeros((4, 4, 5), np.uint8), "label": 1},  # five channels: no PIL mode
    ]
    source = TfdsSource(examples, "image", "label", name="tfds:fake:train")
    image, label = source.load(0, None)
    assert image.mode == "RGB" and label == 0 and image.getpixel((0, 0)) == (9, 9, 9)
    with pytest.raises(BadImageError, match=r"tfds:fake:train\[1\].*\(4, 4, 5\)"):
        source.load(1, None)
