"""IDX files (the MNIST / Fashion-MNIST format) and the two datasets stored in it.

IDX layout: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per dimension,
then the values in C order, big-endian. Files may be gzip-compressed; we sniff the gzip magic instead of
trusting the extension.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
from pathlib import Path

import numpy as np

from tljax.errors import DataError

# IDX type code → big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
# Split name → file prefix used by both datasets.
_PREFIXES = {"train": "train", "test": "t10k"}


# deflate cannot expand data more than ~1032x: a header declaring more than that is a lie, refused
# before any allocation.
_MAX_GZIP_RATIO = 1100


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a native-endian numpy array of the stored shape and type.

    Raises `DataError` (a ValueError) naming the file when the magic, the type code or the size does not
    match the header, so a truncated download is reported rather than silently reshaped. The data is
    decompressed in a stream and never past the size the header declares, so a gzip bomb (a small file
    that inflates to gigabytes) is refused after reading one byte more than that size, not inflated whole.
    """
    with open(path, "rb") as raw_file:
        compressed = raw_file.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (magic {head.hex()!r}, want 0000TTNN)")
            type_code, ndim = head[2], head[3]
            if type_code not in _IDX_DTYPES:
                raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}")
            dims = stream.read(4 * ndim)
            if len(dims) != 4 * ndim:
                raise DataError(f"{path}: the file ends inside its {ndim}-dimension header")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
            dtype = _IDX_DTYPES[type_code]
            expected = math.prod(shape) * dtype.itemsize
            if compressed:
                if expected > _MAX_GZIP_RATIO * os.path.getsize(path):
                    raise DataError(
                        f"{path}: header declares {expected} bytes of data, more than a gzip file of "
                        f"{os.path.getsize(path)} bytes can hold; refused before inflating it"
                    )
                payload = stream.read(expected + 1)  # one byte more tells a longer stream
                got = len(payload)
            else:
                got = os.path.getsize(path) - 4 - 4 * ndim
                payload = stream.read(expected) if got == expected else b""
            if got != expected:
                held = f"more than {expected}" if compressed and got > expected else str(got)
                raise DataError(
                    f"{path}: header says shape {shape} of {dtype.name} ({expected} bytes) but the "
                    f"file holds {held} bytes of data"
                )
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataError(
            f"{path}: cannot read the IDX file ({type(error).__name__}: {error})"
        ) from error
    data = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip when the path ends in .gz); used by tests and tiny fixtures."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(_IDX_DTYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    Path(path).write_bytes(payload)


def _find(root: Path, stem: str) -> Path:
    """`root/stem.gz` or `root/stem` (Debian ships .gz; a user's own copy is often unpacked)."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"no {stem}[.gz] in {root}. Fashion-MNIST: `apt-get install dataset-fashion-mnist` "
        f"(installs {FASHION_MNIST_DIR}) or set data.root to a folder holding the four IDX files."
    )


def load_idx_split(root: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images `uint8 [N, H, W]` and labels `int32 [N]` of split "train" or "test" from an MNIST-style folder.

    The arrays are cached per (file, modification time) and read-only: building the datasets twice in one
    process (a sweep, the tests) does not gunzip 30 MB again.
    """
    if split not in _PREFIXES:
        raise ValueError(f"IDX datasets have splits {sorted(_PREFIXES)}, not {split!r}")
    root = Path(root)
    prefix = _PREFIXES[split]
    image_path = _find(root, f"{prefix}-images-idx3-ubyte")
    label_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    return _load_pair(
        str(image_path),
        image_path.stat().st_mtime_ns,
        str(label_path),
        label_path.stat().st_mtime_ns,
    )


@functools.lru_cache(maxsize=4)
def _load_pair(
    image_path: str, _image_mtime: int, label_path: str, _label_mtime: int
) -> tuple[np.ndarray, np.ndarray]:
    root = Path(image_path).parent
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{root}: images {images.shape} and labels {labels.shape} do not pair up (want [N, H, W] and [N])"
        )
    images, labels = images.astype(np.uint8, copy=False), labels.astype(np.int32)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
