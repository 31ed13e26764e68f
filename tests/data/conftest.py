"""Shared fixtures for the data tests: a Preprocessing look-alike and a generated messy image folder."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

import tljax.data as data


@dataclasses.dataclass(frozen=True)
class FakePreprocessing:
    """Same fields as `tljax.weights.Preprocessing`, so these tests do not depend on the weights package."""

    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"


@pytest.fixture
def preprocessing() -> FakePreprocessing:
    return FakePreprocessing()


def solid(mode: str, colour, size=(24, 18)) -> Image.Image:
    return Image.new(mode, size, colour)


@dataclasses.dataclass
class MessyFolder:
    root: Path
    # (relative path, class, expected RGB after decoding) for every image that must come out.
    good: list[tuple[str, str, tuple[int, int, int]]]
    # relative paths that must be skipped and counted.
    bad: list[str]


def make_messy_folder(root: Path) -> MessyFolder:
    """Two classes holding every awkward kind of file a real folder has; good images are solid colours
    (so each one's identity survives decoding, resizing and cropping)."""
    good: list[tuple[str, str, tuple[int, int, int]]] = []
    bad: list[str] = []
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)

    def keep(rel: str, image: Image.Image, rgb: tuple[int, int, int], **save) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **save)
        good.append((rel, rel.split("/")[0], rgb))

    # cat: colour kinds.
    keep("cat/rgb.jpg", solid("RGB", (200, 30, 40)), (200, 30, 40), quality=95)
    keep("cat/gray.png", solid("L", 77), (77, 77, 77))
    keep("cat/rgba.png", solid("RGBA", (10, 220, 30, 90)), (10, 220, 30))
    palette = solid("RGB", (40, 50, 210)).convert("P", palette=Image.Palette.ADAPTIVE)
    keep("cat/palette.gif", palette, (40, 50, 210))
    keep("cat/palette_transparent.png", palette, (40, 50, 210), transparency=1)
    cmyk = solid("CMYK", (10, 200, 30, 40))
    keep("cat/cmyk.jpg", cmyk, cmyk.convert("RGB").getpixel((0, 0)), quality=95)
    # 16-bit gray: 0x8040 is 128 in 8 bits (PIL's own convert("L") would clip it to 255).
    sixteen = Image.fromarray(np.full((18, 24), 0x8000 + 0x40, dtype=np.uint16))
    assert sixteen.mode == "I;16"
    keep("cat/sixteen.png", sixteen, (128, 128, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated camera picture
    keep("cat/rotated.jpg", solid("RGB", (90, 160, 20)), (90, 160, 20), quality=95, exif=exif)
    keep("cat/UPPER.JPG", solid("RGB", (250, 250, 10)), (250, 250, 10), format="JPEG", quality=95)
    # dog: more kinds, one nested folder.
    keep("dog/UPPER.PNG", solid("RGB", (5, 100, 100)), (5, 100, 100), format="PNG")
    keep("dog/bilevel.bmp", solid("1", 1), (255, 255, 255))
    keep("dog/gray_alpha.png", solid("LA", (60, 128)), (60, 60, 60))
    keep("dog/photo.tiff", solid("RGB", (120, 0, 240)), (120, 0, 240))
    keep("dog/album/nested.webp", solid("RGB", (33, 66, 99)), (33, 66, 99), lossless=True)

    # Ignored without counting: hidden files and folders, non-image extensions.
    solid("RGB", (1, 2, 3)).save(root / "cat/.hidden.jpg")
    (root / "cat/._rgb.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "cat/.DS_Store").write_bytes(b"Bud1\x00\x00")
    (root / "cat/notes.txt").write_text("not an image")
    (root / "dog/labels.csv").write_text("file,label\n")
    (root / "dog/.ipynb_checkpoints").mkdir()
    solid("RGB", (1, 2, 3)).save(root / "dog/.ipynb_checkpoints/copy.png")

    # Bad: skipped and counted.
    def broken(rel: str, payload: bytes) -> None:
        (root / rel).write_bytes(payload)
        bad.append(rel)

    broken("cat/text.jpg", b"this is a text file with an image extension\n")
    broken("dog/empty.png", b"")
    broken("dog/noise.png", os.urandom(300))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("png", "jpg"):
        buffer = io.BytesIO()
        noisy.save(buffer, "PNG" if fmt == "png" else "JPEG")
        # A truncated PNG fails the header check; a truncated JPEG passes it and fails at decode time.
        broken(f"dog/truncated.{fmt}", buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return MessyFolder(root, good, bad)


@pytest.fixture
def messy_folder(tmp_path: Path) -> MessyFolder:
    return make_messy_folder(tmp_path / "messy")


def _small_config(**overrides) -> ml_collections.ConfigDict:
    """A data config for tiny images: 16 px, no crop, no workers (fast and deterministic); keys with dots
    ("augment.enabled") reach nested fields."""
    config = data.default_data_config()
    config.image_size = 16
    config.resize_size = 16
    config.num_workers = 0
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


@pytest.fixture
def small_config():
    """The `_small_config(**overrides)` factory (fixtures, not imports: tests/ is not a package)."""
    return _small_config
