"""IDX reader: hand-written bytes with known values, gzip sniffing, size checks, the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tljax.data as data
from tljax.data import idx
from tljax.errors import DataError

# ubyte, 3 dims [2, 2, 3], values 0..11.
UBYTE_FILE = b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" * 2 + b"\x00\x00\x00\x03" + bytes(range(12))
# big-endian int16, 1 dim [3]: 258, -2, 32767.
INT16_FILE = b"\x00\x00\x0b\x01" + b"\x00\x00\x00\x03" + b"\x01\x02" + b"\xff\xfe" + b"\x7f\xff"


def test_read_idx_known_bytes(tmp_path: Path) -> None:
    (tmp_path / "u8").write_bytes(UBYTE_FILE)
    (tmp_path / "i16").write_bytes(INT16_FILE)
    np.testing.assert_array_equal(
        data.read_idx(tmp_path / "u8"), np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    )
    int16 = data.read_idx(tmp_path / "i16")
    assert int16.dtype == np.int16 and int16.dtype.isnative
    np.testing.assert_array_equal(int16, [258, -2, 32767])


def test_read_idx_gzip_is_sniffed_not_named(tmp_path: Path) -> None:
    # gzip content under a plain name and raw content under a .gz name both read.
    (tmp_path / "plain_name").write_bytes(gzip.compress(UBYTE_FILE))
    (tmp_path / "raw.gz").write_bytes(UBYTE_FILE)
    expected = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "plain_name"), expected)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "raw.gz"), expected)


def test_read_idx_rejects_truncated_and_foreign(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(UBYTE_FILE[:-1])
    with pytest.raises(ValueError, match="11 bytes"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "png")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    array = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    data.write_idx(tmp_path / "a.idx.gz", array)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx.gz"), array)


def test_mnist_folder_of_unpacked_files(tmp_path: Path, small_config, preprocessing) -> None:
    images = np.arange(4 * 28 * 28, dtype=np.int64).reshape(4, 28, 28) % 256
    for prefix, count in (("train", 4), ("t10k", 2)):
        data.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images[:count].astype(np.uint8))
        data.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(count, dtype=np.uint8))
    datasets = data.build_datasets(
        small_config(source="mnist", root=str(tmp_path)), preprocessing, seed=0
    )
    assert datasets.class_names == [str(d) for d in range(10)]
    assert (datasets.train.num_examples, datasets.test.num_examples) == (4, 2)
    np.testing.assert_array_equal(datasets.test.labels, [0, 1])


def test_mnist_without_root_says_so(small_config, preprocessing) -> None:
    with pytest.raises(ValueError, match="data.root"):
        data.build_datasets(small_config(source="mnist"), preprocessing, seed=0)


def test_real_fashion_mnist_files() -> None:
    train_images, train_labels = data.load_idx_split(idx.FASHION_MNIST_DIR, "train")
    test_images, test_labels = data.load_idx_split(idx.FASHION_MNIST_DIR, "test")
    assert train_images.shape == (60000, 28, 28) and train_images.dtype == np.uint8
    assert test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test_labels, minlength=10), [1000] * 10)
    # Real pictures, not zeros: the mean Fashion-MNIST pixel is about 72.9.
    assert 70 < train_images.mean() < 76
    assert len(data.FASHION_MNIST_CLASSES) == 10 and data.FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_gzip_bomb_and_lying_headers_are_refused_without_inflating(tmp_path: Path) -> None:
    # 64 MiB of zeros gzip to ~64 kB; the header says 16 bytes: refused after reading 17.
    header = bytes([0, 0, 0x08, 1]) + (16).to_bytes(4, "big")
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(header + bytes(64 << 20), mtime=0))
    # A header declaring 2**64 bytes (four dims of 2**16) in a tiny gzip file.
    huge = bytes([0, 0, 0x08, 4]) + (2**16).to_bytes(4, "big") * 4
    (tmp_path / "huge.gz").write_bytes(gzip.compress(huge + bytes(10), mtime=0))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"\(16 bytes\) but the file holds more than 16 bytes"):
            data.read_idx(tmp_path / "bomb.gz")
        with pytest.raises(DataError, match=r"declares 18446744073709551616 bytes.*refused before"):
            data.read_idx(tmp_path / "huge.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak
    (tmp_path / "cut.gz").write_bytes(gzip.compress(UBYTE_FILE, mtime=0)[:-12])
    with pytest.raises(DataError, match="cut.gz"):
        data.read_idx(tmp_path / "cut.gz")


def test_missing_idx_files_say_where_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no train-images-idx3-ubyte\[\.gz\] in .*apt-get install"):
        idx.load_idx_split(tmp_path, "train")
