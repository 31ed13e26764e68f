import json
import os

import numpy as np
import pytest

from tljax import fileio


def test_atomic_write_replaces_whole(tmp_path):
    target = tmp_path / "results.json"
    fileio.atomic_write_json(target, {"a": 1})
    fileio.atomic_write_json(target, {"a": 2, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left behind


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_path_keeps_suffix_for_format_sniffing_writers(tmp_path):
    target = tmp_path / "cache.npz"
    with fileio.atomic_path(target) as tmp:
        assert tmp.endswith(".npz")
        np.savez(tmp, x=np.arange(3))
    np.testing.assert_array_equal(np.load(target)["x"], np.arange(3))
