"""Safe readers for PyTorch ``.pth`` and ``.safetensors`` weight files, without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. These readers
never run arbitrary code: a restricted ``pickle.Unpickler`` resolves only the handful of globals a
plain state dict needs (tensor rebuild functions, storage classes, dtypes, ``OrderedDict``) to inert
placeholders, and the tensor bytes are then copied out with numpy after checking every offset and
stride against the storage size. Anything else in the pickle is refused with
:class:`UnsafePickleError` before it can be called.

Both ``.pth`` layouts are read:

* the zip layout (torch >= 1.6): ``<prefix>/data.pkl`` plus one raw record per storage under
  ``<prefix>/data/<key>``, with the byte order in ``<prefix>/byteorder`` (little if absent);
* the legacy stream (torch < 1.6 or ``_use_new_zipfile_serialization=False``): five pickles
  (magic number, protocol version, system info, the object, the sorted storage keys), then for each
  storage a little-endian int64 element count followed by its little-endian bytes.

bfloat16 and float8 tensors come back as ``ml_dtypes`` arrays (ml_dtypes ships with jax), never
silently upcast, so a round trip is bit exact; call ``.astype(np.float32)`` where float32 is wanted.
"""

from __future__ import annotations

import collections
import errno
import io
import json
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from tljax.errors import UserError

__all__ = [
    "UnsafePickleError",
    "WeightFileError",
    "WeightFileNotFoundError",
    "read_state_dict",
    "unwrap_state_dict",
]


class WeightFileError(ValueError, UserError):
    """A weight file is truncated, corrupt, or not in a format tljax can read."""


class UnsafePickleError(ValueError, UserError):
    """A ``.pth`` pickle names a global outside the tensor-only allow-list."""


class WeightFileNotFoundError(FileNotFoundError, UserError):
    """A weight file path that does not exist (a FileNotFoundError, printed by the CLIs as one line)."""

    def __init__(self, path: str | os.PathLike[str], hint: str = ""):
        super().__init__(errno.ENOENT, f"no such file: {path}{hint}", os.fspath(path))

    def __str__(self) -> str:
        return self.strerror or super().__str__()


# The legacy format starts with this pickled int (torch.serialization.MAGIC_NUMBER).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Keys under which training scripts commonly nest the model's state dict, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}

# torch dtypes pickle as globals ``torch.<name>`` (they appear in _rebuild_tensor_v3 calls).
_TORCH_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "int64": np.dtype(np.int64),
    "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
}


# ----------------------------------------------------------------------------------------------
# Inert placeholders returned by the restricted unpickler. __slots__ (no __dict__, no
# __setstate__) makes a pickle BUILD opcode on them fail instead of mutating them.


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype):
        self.name = name
        self.dtype = dtype  # element dtype; UntypedStorage counts bytes (uint8)


class _TorchDtype:
    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


class _StorageRef:
    """A storage named by the pickle; its bytes are fetched after unpickling."""

    __slots__ = ("key", "dtype", "numel", "view_offset", "view_numel")

    def __init__(
        self,
        key: str,
        dtype: np.dtype,
        numel: int,
        view_offset: int = 0,
        view_numel: int | None = None,
    ):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        # Legacy files may alias a window [view_offset, view_offset + view_numel) of a root storage.
        self.view_offset = view_offset
        self.view_numel = numel if view_numel is None else view_numel


class _TensorRef:
    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(
        self,
        storage: _StorageRef,
        offset: int,
        size: tuple[int, ...],
        stride: tuple[int, ...],
        dtype: np.dtype,
    ):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype = dtype


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise WeightFileError(f"tensor {what} is not a tuple of ints: {value!r}")
    return value


def _make_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, dtype: np.dtype | None = None
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise WeightFileError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise WeightFileError(f"bad tensor storage offset {storage_offset!r}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise WeightFileError(f"bad tensor size {size} / stride {stride}")
    return _TensorRef(storage, storage_offset, size, stride, dtype or storage.dtype)


# The callables the allow-list hands to REDUCE. Each only records its arguments.
def _rebuild_tensor(storage, storage_offset, size, stride):  # torch < 0.4
    return _make_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _make_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    # v3 is used for dtypes without a legacy typed storage (uint16, float8, ...): the storage is
    # untyped (bytes) and the element dtype comes as a separate argument.
    if not isinstance(dtype, _TorchDtype):
        raise WeightFileError(f"_rebuild_tensor_v3 dtype is {dtype!r}, not a torch dtype")
    return _make_tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _TensorRef):
        raise WeightFileError(f"parameter rebuilt from {type(data).__name__}, not a tensor")
    return data


_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    # state_dict() returns an OrderedDict (with a plain-dict `_metadata` attribute).
    ("collections", "OrderedDict"): collections.OrderedDict,
}


def _refusal(module: str, name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"refused to load global '{module}.{name}': this .pth pickle asks for more than tensors "
        "and could run code, so the file may be malicious (or it stores a whole model or other "
        "Python objects rather than a state dict). tljax never unpickles such files. If the file "
        "comes from a source you trust, convert it on a machine with torch: "
        "`sd = torch.load(path, weights_only=True)` (use `weights_only=False` only if you trust "
        "it and it is a full checkpoint, then take its state_dict()), then "
        "`safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "
        "'weights.safetensors')` and load the .safetensors file."
    )


# Pickle opcodes by their one-character code (pickletools' public table).
_OPCODES = {op.code: op for op in pickletools.opcodes}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler resolving only tensor-rebuild globals; storages come through persistent_load."""

    def __init__(self, file: BinaryIO, persistent_load_fn=None):
        super().__init__(file, encoding="utf-8")
        self._persistent_load_fn = persistent_load_fn

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_CALLABLES.get((module, name))
        if allowed is not None:
            return allowed
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module in ("torch", "torch.storage") and name == "UntypedStorage":
            return _StorageType(name, np.dtype(np.uint8))
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(_TORCH_DTYPES[name])
        raise _refusal(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load_fn is None:
            raise WeightFileError(f"unexpected persistent id {pid!r}")
        return self._persistent_load_fn(pid)


# A state dict's pickle holds only names and tensor metadata, ~125 bytes a tensor (torchvision's
# ResNet-152, 932 entries: 115 kB), so this allows >100k tensors. A pickle, or one object in it,
# declared larger is refused unread; it also bounds what the objects a pickle builds (lists of
# repeated memo references, ~4 bytes of memory per pickle byte) can take.
_MAX_PICKLE_BYTES = 16 << 20

# Width in bytes of the length prefix of each counted pickle argument (pickletools' encoding of "n").
_LENGTH_PREFIX = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _check_pickle_sizes(stream: BinaryIO, end: int, what: str) -> int:
    """Walk one pickle's opcodes from the stream's position to its STOP without building anything and
    return the position after STOP (the stream is left there).

    The stock unpickler allocates whatever a pickle declares before reading it: a bytes, str or
    bytearray length, a long's byte count, a frame size, a memo index (the memo table is grown to it).
    Here each declared size must fit in the bytes that follow (up to `end`) and in `_MAX_PICKLE_BYTES`,
    and each memo index must be at most the number of memo entries so far (what a pickler writes), so
    a crafted or truncated pickle is a `WeightFileError` naming the declared size, with nothing
    allocated. `what` names the pickle in messages.
    """
    start = stream.tell()
    limit = min(end, start + _MAX_PICKLE_BYTES)
    memo_entries = 0

    def refuse(detail: str) -> WeightFileError:
        return WeightFileError(f"{what}: {detail}; refused before allocating anything")

    def read_exact(count: int, op: str) -> bytes:
        data = stream.read(count)
        if len(data) != count:
            raise refuse(f"the pickle ends inside {op}")
        return data

    while True:
        position = stream.tell()
        if position >= limit:
            if limit < end:
                raise refuse(f"the pickle is longer than {_MAX_PICKLE_BYTES} bytes")
            raise refuse("the pickle ends before its STOP opcode (truncated)")
        code = stream.read(1)
        op = _OPCODES.get(code.decode("latin-1"))
        if op is None:
            raise refuse(f"unknown pickle opcode {code!r} at offset {position - start}")
        arg = op.arg
        value: int | None = None
        if arg is None:
            pass
        elif arg.n >= 0:
            data = read_exact(arg.n, op.name)
            if arg.name.startswith("uint"):
                value = int.from_bytes(data, "little")
        elif arg.n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if arg.name.endswith("_pair") else 1):
                line = stream.readline(limit - stream.tell())
                if not line.endswith(b"\n"):
                    raise refuse(f"{op.name} at offset {position - start} has no end of line")
            if op.name == "PUT":
                value = int(line) if line.strip().isdigit() else None
        else:
            width, signed = _LENGTH_PREFIX[arg.n]
            size = int.from_bytes(read_exact(width, op.name), "little", signed=signed)
            remaining = limit - stream.tell()
            if size < 0 or size > remaining:
                kind = op.name if size < 0 else f"a {arg.name} object of {size} bytes ({op.name})"
                raise refuse(
                    f"the pickle declares {kind} at offset {position - start} but only "
                    f"{remaining} bytes can follow"
                )
            stream.seek(size, os.SEEK_CUR)
        if op.name == "FRAME" and value is not None and value > limit - stream.tell():
            raise refuse(
                f"the pickle declares a frame of {value} bytes but only "
                f"{limit - stream.tell()} bytes can follow"
            )
        if op.name in _MEMO_PUTS:
            if value is None or value > memo_entries:
                raise refuse(f"{op.name} to memo index {value} after {memo_entries} entries")
            memo_entries += value == memo_entries
        elif op.name == "MEMOIZE":
            memo_entries += 1
        elif op.name == "STOP":
            return stream.tell()


def _load_checked(
    stream: BinaryIO, end: int, what: str | Path, persistent_load_fn: Any = None
) -> Any:
    """Unpickle the pickle at the stream's position with `_RestrictedUnpickler`, after
    `_check_pickle_sizes` has bounded every size it declares."""
    start = stream.tell()
    _check_pickle_sizes(stream, end, f"{what}: pickle at offset {start}" if start else str(what))
    stream.seek(start)
    return _RestrictedUnpickler(stream, persistent_load_fn).load()


def _decode(value: Any) -> Any:
    # Python 2 era files store some ids as bytes.
    return value.decode("ascii") if isinstance(value, bytes) else value


def _parse_storage_pid(pid: Any, legacy: bool) -> _StorageRef:
    if not isinstance(pid, tuple) or not pid:
        raise WeightFileError(f"bad persistent id {pid!r}")
    typename = _decode(pid[0])
    if typename == "module":
        raise UnsafePickleError(
            "this legacy .pth stores a whole nn.Module (with its source code), not a state dict; "
            "tljax refuses to unpickle it. On a trusted machine with torch, load it and save "
            "model.state_dict() with safetensors.torch.save_file, then load that file."
        )
    expected = 6 if legacy else 5
    if typename != "storage" or len(pid) != expected:
        raise WeightFileError(f"unsupported persistent id {pid!r}")
    storage_type, key, _location, numel = pid[1:5]
    key = _decode(key)
    if not isinstance(storage_type, _StorageType):
        raise WeightFileError(f"persistent id names {storage_type!r}, not a torch storage type")
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise WeightFileError(f"bad storage id {pid!r}")
    ref = _StorageRef(key, storage_type.dtype, numel)
    if legacy and pid[5] is not None:
        view = pid[5]
        if not (
            isinstance(view, tuple)
            and len(view) == 3
            and all(isinstance(v, (int, str, bytes)) for v in view)
        ):
            raise WeightFileError(f"bad storage view {view!r}")
        _view_key, view_offset, view_numel = view
        if (
            not isinstance(view_offset, int)
            or not isinstance(view_numel, int)
            or (view_offset < 0 or view_numel < 0 or view_offset + view_numel > numel)
        ):
            raise WeightFileError(f"storage view {view!r} outside its storage of {numel} elements")
        ref = _StorageRef(key, storage_type.dtype, numel, view_offset, view_numel)
    return ref


# ----------------------------------------------------------------------------------------------
# Materialising tensors from storage bytes.


def _from_bytes(window: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
    """View raw storage bytes as a flat array of ``dtype`` in native byte order (no copy if
    the file's order is native)."""
    if dtype.itemsize == 1 or byteorder == _NATIVE_ORDER:
        return np.frombuffer(window, dtype=dtype, count=len(window) // dtype.itemsize)
    if dtype.kind == "V":
        # ml_dtypes (bfloat16, float8) cannot carry a byte order: swap as unsigned ints, then view.
        carrier = np.dtype(f"u{dtype.itemsize}")
        swapped = np.frombuffer(
            window, dtype=carrier.newbyteorder("S"), count=len(window) // dtype.itemsize
        )
        return swapped.astype(carrier).view(dtype)
    other = np.frombuffer(
        window, dtype=dtype.newbyteorder("S"), count=len(window) // dtype.itemsize
    )
    return other.astype(dtype)


_NATIVE_ORDER = "little" if np.little_endian else "big"
# A stride-0 (expanded) tensor can describe far more elements than its storage holds; refuse
# absurd ones up front rather than let a crafted file exhaust memory.
_MAX_EXPANSION_BYTES = 1 << 30


def _materialise(tensor: _TensorRef, raw: bytes, byteorder: str) -> np.ndarray:
    """Copy one tensor out of its storage's raw bytes, after checking every access is in bounds."""
    storage = tensor.storage
    # A view/window into the storage, measured in the storage's own element size.
    start = storage.view_offset * storage.dtype.itemsize
    stop = start + storage.view_numel * storage.dtype.itemsize
    if stop > len(raw):
        raise WeightFileError(
            f"storage '{storage.key}' holds {len(raw)} bytes but the pickle expects {stop}"
        )
    flat = _from_bytes(raw[start:stop], tensor.dtype, byteorder)
    count = flat.shape[0]
    numel = math.prod(tensor.size)
    if numel == 0:
        return np.zeros(tensor.size, dtype=tensor.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    # as_strided does no bounds checks: this check is what keeps reads inside the buffer.
    if last >= count:
        raise WeightFileError(
            f"tensor (offset {tensor.offset}, size {tensor.size}, stride {tensor.stride}) "
            f"reaches element {last} of storage '{storage.key}' which has {count}"
        )
    if numel > count and numel * tensor.dtype.itemsize > _MAX_EXPANSION_BYTES:
        raise WeightFileError(f"tensor of size {tensor.size} expands its storage implausibly")
    strides = tuple(s * flat.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset :], shape=tensor.size, strides=strides, writeable=False
    )
    # An owned C-contiguous copy: releases the storage buffer and detaches shared views.
    return np.array(view, order="C", copy=True)


def _collect_tensors(obj: Any, found: list[_TensorRef], depth: int = 0) -> None:
    if depth > 20:
        raise WeightFileError("object nesting too deep for a checkpoint")
    if isinstance(obj, _TensorRef):
        found.append(obj)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _collect_tensors(value, found, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _collect_tensors(value, found, depth + 1)


def _replace_tensors(obj: Any, arrays: dict[int, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return arrays[id(obj)]
    if isinstance(obj, Mapping):
        return {key: _replace_tensors(value, arrays) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_replace_tensors(value, arrays) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_replace_tensors(value, arrays) for value in obj)
    return obj


def _corrupt(path: Path, detail: str) -> WeightFileError:
    return WeightFileError(
        f"{path}: the file is truncated or corrupt ({detail}). If it was downloaded or cached, "
        "delete it and download it again; if it is an installed package file, reinstall the "
        "package."
    )


# ----------------------------------------------------------------------------------------------
# The two .pth layouts.


# torch writes storage records uncompressed. A compressed one may expand at most this much (plus 1 MiB)
# before it is refused unread: float weights barely compress, and deflate reaches ~1000x only on
# constant data, which is how a zip bomb makes a small file declare gigabytes.
_MAX_COMPRESSION_RATIO = 64


def _check_storage_record(
    path: Path, info: zipfile.ZipInfo, storage: _StorageRef, archive_size: int
) -> None:
    """Refuse a storage record before decompressing it unless the file can really hold its bytes."""
    declared = storage.numel * storage.dtype.itemsize
    where = f"storage record '{info.filename}'"
    if info.file_size != declared:
        # torch writes exactly the storage's bytes; anything else is damaged or crafted.
        raise _corrupt(
            path,
            f"{where} holds {info.file_size} bytes but the pickle declares "
            f"{storage.numel} x {storage.dtype.itemsize} = {declared}",
        )
    if info.header_offset + info.compress_size > archive_size:
        raise _corrupt(path, f"{where} ends past the end of the file")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise _corrupt(
                path, f"{where} is stored with {info.compress_size} bytes, not {declared}"
            )
    elif info.file_size > _MAX_COMPRESSION_RATIO * info.compress_size + (1 << 20):
        raise WeightFileError(
            f"{path}: {where} expands from {info.compress_size} to {info.file_size} bytes, more "
            f"than {_MAX_COMPRESSION_RATIO}x (a zip bomb?); refused before decompressing it. torch "
            "writes storages uncompressed: if you trust the file, re-save it with torch.save"
        )


def _read_zip_pth(path: Path) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _corrupt(path, f"not a readable zip archive: {err}") from err
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _corrupt(path, f"expected one '<prefix>/data.pkl' record, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise _corrupt(path, f"unknown byte order {byteorder!r}")

        archive_size = path.stat().st_size
        storages: dict[str, _StorageRef] = {}

        def persistent_load(pid: Any) -> _StorageRef:
            ref = _parse_storage_pid(pid, legacy=False)
            storages.setdefault(ref.key, ref)
            return ref

        declared = archive.getinfo(pickles[0]).file_size
        if declared > _MAX_PICKLE_BYTES:
            raise WeightFileError(
                f"{path}: '{pickles[0]}' declares {declared} bytes, more than a state dict's pickle "
                f"holds (limit {_MAX_PICKLE_BYTES}); refused before reading it"
            )
        try:
            with archive.open(pickles[0]) as record:
                pickled = record.read(_MAX_PICKLE_BYTES + 1)
            obj = _load_checked(
                io.BytesIO(pickled), len(pickled), f"{path}: '{pickles[0]}'", persistent_load
            )
            tensors: list[_TensorRef] = []
            _collect_tensors(obj, tensors)
            raw: dict[str, bytes] = {}
            arrays: dict[int, np.ndarray] = {}
            for tensor in tensors:
                key = tensor.storage.key
                if key not in raw:
                    record_name = f"{prefix}data/{key}"
                    if record_name not in names:
                        raise _corrupt(path, f"missing storage record '{record_name}'")
                    _check_storage_record(
                        path, archive.getinfo(record_name), tensor.storage, archive_size
                    )
                    raw[key] = archive.read(record_name)
                arrays[id(tensor)] = _materialise(tensor, raw[key], byteorder)
        except (UnsafePickleError, WeightFileError):
            raise
        except Exception as err:  # zlib/CRC/short reads/malformed pickle opcodes
            raise _corrupt(path, f"{type(err).__name__}: {err}") from err
    return _replace_tensors(obj, arrays)


def _read_legacy_pth(path: Path) -> Any:
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        try:
            # The header pickles may contain no globals at all.
            try:
                magic = _load_checked(stream, file_size, path)
            except WeightFileError as err:
                raise WeightFileError(
                    f"{path}: not a PyTorch file (no zip archive, and it does not start with a "
                    f"pickle: {err}); tljax reads torch .pth files and .safetensors"
                ) from err
            if magic != _LEGACY_MAGIC:
                raise WeightFileError(
                    f"{path}: not a PyTorch file (no zip archive, no legacy magic number); "
                    "tljax reads torch .pth files and .safetensors"
                )
            protocol = _load_checked(stream, file_size, path)
            if protocol != _LEGACY_PROTOCOL:
                raise _corrupt(path, f"unsupported legacy protocol version {protocol!r}")
            # System info (endianness, type sizes): storage bytes in this format are always
            # written little-endian whatever the writer's order, so it changes nothing here.
            _load_checked(stream, file_size, path)

            storages: dict[str, _StorageRef] = {}

            def persistent_load(pid: Any) -> _StorageRef:
                ref = _parse_storage_pid(pid, legacy=True)
                root = storages.setdefault(ref.key, ref)
                if root.dtype != ref.dtype or root.numel != ref.numel:
                    raise WeightFileError(f"storage '{ref.key}' declared twice differently")
                return ref

            obj = _load_checked(stream, file_size, path, persistent_load)
            keys = _load_checked(stream, file_size, path)
            if not isinstance(keys, list) or not all(isinstance(_decode(k), str) for k in keys):
                raise _corrupt(path, "bad storage key list")

            raw: dict[str, bytes] = {}
            for key in map(_decode, keys):
                header = stream.read(8)
                if len(header) != 8:
                    raise _corrupt(path, f"file ends before storage '{key}'")
                (numel,) = struct.unpack("<q", header)
                ref = storages.get(key)
                if ref is None:
                    raise _corrupt(path, f"storage '{key}' is not used by the pickle")
                if numel != ref.numel:
                    raise _corrupt(
                        path, f"storage '{key}' has {numel} elements, pickle says {ref.numel}"
                    )
                nbytes = numel * ref.dtype.itemsize
                if stream.tell() + nbytes > file_size:  # don't even try to allocate it
                    raise _corrupt(path, f"storage '{key}' needs {nbytes} bytes past the end")
                data = stream.read(nbytes)
                if len(data) != nbytes:
                    raise _corrupt(
                        path, f"storage '{key}' cut short ({len(data)} of {nbytes} bytes)"
                    )
                raw[key] = data
            tensors: list[_TensorRef] = []
            _collect_tensors(obj, tensors)
            arrays = {}
            for tensor in tensors:
                if tensor.storage.key not in raw:
                    raise _corrupt(path, f"storage '{tensor.storage.key}' missing from the file")
                arrays[id(tensor)] = _materialise(tensor, raw[tensor.storage.key], "little")
        except (UnsafePickleError, WeightFileError):
            raise
        except Exception as err:  # EOFError, UnpicklingError, malformed opcodes ...
            raise _corrupt(path, f"{type(err).__name__}: {err}") from err
    return _replace_tensors(obj, arrays)


# ----------------------------------------------------------------------------------------------
# safetensors


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    # The header (little-endian u64 length + JSON) gives the tensors' physical order in the file;
    # safe_open.keys() is sorted by name instead.
    try:
        with open(path, "rb") as stream:
            (header_len,) = struct.unpack("<Q", stream.read(8))
            # safetensors' own limit; and never read (allocate) more than the file holds.
            if header_len > min(100_000_000, path.stat().st_size - 8):
                raise ValueError(
                    f"header declares {header_len} bytes in a file of {path.stat().st_size}"
                )
            header = json.loads(stream.read(header_len))
        if not isinstance(header, dict):
            raise TypeError(f"header is a JSON {type(header).__name__}, not an object")
        order = sorted(
            (k for k in header if k != "__metadata__"),
            key=lambda k: header[k]["data_offsets"][0],
        )
        out: dict[str, np.ndarray] = {}
        with safe_open(os.fspath(path), framework="np") as handle:
            for key in order:
                # ml_dtypes.bfloat16 for BF16 (safetensors >= 0.5); copy so the arrays are owned
                # and writeable rather than views of a closed memory map.
                out[key] = np.array(handle.get_tensor(key), copy=True)
        return out
    except RecursionError as err:  # json.loads of a deeply nested header
        raise _corrupt(path, "header nested too deeply to be a safetensors header") from err
    except (SafetensorError, ValueError, KeyError, TypeError, struct.error, OSError) as err:
        raise _corrupt(path, f"{type(err).__name__}: {err}") from err


# ----------------------------------------------------------------------------------------------
# Public API


def unwrap_state_dict(obj: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """Find the state dict in a loaded checkpoint object and normalise its keys.

    The rule: a mapping whose values are all tensors (numpy arrays) is a state dict. Otherwise, if
    ``obj`` is a mapping, the first of the keys ``state_dict, model_state_dict, model, module,
    net, network`` that holds such a mapping is used (recursively, so ``{"model": {"state_dict":
    ...}}`` works) and everything else in the checkpoint (optimizer state, epoch, ...) is ignored.
    Finally, if every key starts with ``module.`` (what ``nn.DataParallel`` / DDP add), that prefix
    is stripped. Raises ``WeightFileError`` naming the top-level keys when no state dict is found.
    """

    def is_state_dict(value: Any) -> bool:
        return (
            isinstance(value, Mapping)
            and bool(value)
            and all(isinstance(v, np.ndarray) for v in value.values())
        )

    current, depth = obj, 0
    while not is_state_dict(current):
        if not isinstance(current, Mapping) or depth > 3:
            break
        nested = next(
            (current[k] for k in _WRAPPER_KEYS if k in current and isinstance(current[k], Mapping)),
            None,
        )
        if nested is None:
            break
        current, depth = nested, depth + 1
    if not is_state_dict(current):
        described = (
            f"a mapping with keys {list(current)[:20]}"
            if isinstance(current, Mapping)
            else f"a {type(current).__name__}"
        )
        raise WeightFileError(
            f"{source}: expected a state dict (a mapping of names to tensors), or a checkpoint "
            f"holding one under one of {list(_WRAPPER_KEYS)}, but found {described}"
        )
    state = {str(k): v for k, v in current.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``.pth`` (zip or legacy) or ``.safetensors`` file into a dict of numpy arrays.

    No pickle code is ever executed and torch is not imported: see the module docstring for the
    allow-list. Returns the tensors in file order, as owned C-contiguous arrays in native byte
    order with their own dtype (bfloat16/float8 as ``ml_dtypes`` types). A checkpoint wrapping the
    state dict is unwrapped and a ``module.`` prefix stripped as described in
    :func:`unwrap_state_dict`. Raises ``UnsafePickleError`` for pickles asking for anything but
    tensors, ``WeightFileError`` for truncated/corrupt/unknown files, ``WeightFileNotFoundError`` (a
    ``FileNotFoundError``) if the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise WeightFileNotFoundError(path)
    if not path.is_file():
        raise WeightFileError(f"{path} is not a file; give a .pth or .safetensors file")
    if path.stat().st_size == 0:
        raise WeightFileError(
            f"{path} is empty (0 bytes), typically an interrupted download or copy; delete it and "
            "fetch or copy it again"
        )
    with open(path, "rb") as stream:
        head = stream.read(8)
    if path.suffix == ".safetensors" or (head[:1] != b"\x80" and _looks_like_safetensors(path)):
        return _read_safetensors(path)
    if head.startswith(b"PK"):
        obj = _read_zip_pth(path)
    else:
        # Anything else is treated as a legacy pickle stream: the restricted unpickler then either
        # finds the magic number or reports the file as corrupt / unsafe.
        obj = _read_legacy_pth(path)
    return unwrap_state_dict(obj, source=str(path))


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as stream:
        head = stream.read(9)
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000
