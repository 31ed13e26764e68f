"""ImageFolder on a messy folder: only good images come out, bad ones are counted exactly, empty
classes and empty roots fail early with a clear message; split folder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tljax.data as data
from tests.assets import write_bomb_png
from tljax import cli
from tljax.errors import DataError


def _epoch(split: data.Split, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch in split.iterator(batch_size, epochs=1, augment=False):
        images.append(batch["image"])
        labels.append(batch["label"])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_messy_folder_yields_only_good_images(
    messy_folder, small_config, preprocessing, num_workers
) -> None:
    config = small_config(
        source="image_folder",
        root=str(messy_folder.root),
        test_fraction=0.0,
        num_workers=num_workers,
    )
    datasets = data.build_datasets(config, preprocessing, seed=0)
    assert datasets.class_names == ["cat", "dog"] and datasets.num_classes == 2
    assert datasets.val is None and datasets.test is None
    # Index time: everything but the truncated JPEG (which passes the header check) is already out.
    assert datasets.skipped.count == len(messy_folder.bad) - 1
    assert datasets.train.num_examples == len(messy_folder.good) + 1

    images, labels = _epoch(datasets.train)
    assert images.dtype == np.float32 and images.shape == (len(messy_folder.good), 16, 16, 3)
    assert labels.dtype == np.int32
    # Run time: the truncated JPEG failed to decode, was skipped and counted; nothing crashed.
    assert datasets.skipped.count == len(messy_folder.bad)
    root = str(messy_folder.root)
    assert sorted(Path(p).relative_to(root).as_posix() for p in datasets.skipped.paths) == sorted(
        messy_folder.bad
    )
    assert all(reason for _, reason in datasets.skipped.first)
    assert str(len(messy_folder.bad)) in datasets.skipped.summary()

    # Normalised with the weights' mean/std, and each good image is there with its colour and class.
    assert images.min() >= -127 / 128 - 1e-6 and images.max() <= 1.0 + 1e-6
    colours = images.mean(axis=(1, 2)) * 128.0 + 127.0
    expected = sorted((["cat", "dog"].index(cls), rgb) for _, cls, rgb in messy_folder.good)
    got = sorted(zip(labels.tolist(), colours.tolist(), strict=True), key=lambda t: (t[0], t[1]))
    # Match each expected (class, colour) to one produced image (JPEG/CMYK round trips are within a few levels).
    unmatched = list(got)
    for label, rgb in expected:
        distances = [
            np.abs(np.asarray(c) - rgb).max() if lab == label else np.inf for lab, c in unmatched
        ]
        best = int(np.argmin(distances))
        assert distances[best] < 6, (label, rgb, unmatched)
        unmatched.pop(best)
    assert not unmatched


def test_messy_folder_trains_with_augmentation(messy_folder, small_config, preprocessing) -> None:
    config = small_config(source="image_folder", root=str(messy_folder.root), test_fraction=0.0)
    datasets = data.build_datasets(config, preprocessing, seed=0)
    iterator = datasets.train.iterator(4, shuffle=True, seed=0, drop_remainder=True)
    batches = [next(iterator) for _ in range(12)]  # several epochs, repeating forever
    assert all(b["image"].shape == (4, 16, 16, 3) for b in batches)
    assert datasets.skipped.count == len(messy_folder.bad)  # counted once, not once per epoch


def test_empty_class_folder_is_an_error(messy_folder, small_config, preprocessing) -> None:
    (messy_folder.root / "bird").mkdir()
    (messy_folder.root / "bird" / "readme.txt").write_text("todo")
    config = small_config(source="image_folder", root=str(messy_folder.root))
    with pytest.raises(ValueError, match=r"empty class folder.*bird.*accepted extensions.*\.jpg"):
        data.build_datasets(config, preprocessing, seed=0)


def test_class_of_only_broken_files_is_an_error(
    tmp_path: Path, small_config, preprocessing
) -> None:
    (tmp_path / "ok").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ok" / "a.png")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_bytes(b"nope")
    config = small_config(source="image_folder", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"broken \(1 unreadable file"):
        data.build_datasets(config, preprocessing, seed=0)


def test_no_images_at_all_is_an_error(tmp_path: Path, small_config, preprocessing) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".DS_Store").write_bytes(b"x")
    config = small_config(source="image_folder", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"no images at all under .*accepted extensions"):
        data.build_datasets(config, preprocessing, seed=0)


def test_loose_images_without_class_folders(tmp_path: Path, small_config, preprocessing) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    config = small_config(source="image_folder", root=str(tmp_path))
    with pytest.raises(ValueError, match="no class sub-folders.*1 loose image"):
        data.build_datasets(config, preprocessing, seed=0)


def _tree(root: Path, layout: dict[str, int]) -> None:
    for rel, count in layout.items():
        (root / rel).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / rel / f"{i}.png")


def test_split_folders(tmp_path: Path, small_config, preprocessing) -> None:
    _tree(tmp_path, {"train/x": 5, "train/y": 4, "train/z": 3, "val/x": 2, "val/y": 1, "test/z": 2})
    config = small_config(source="image_folder", root=str(tmp_path))
    datasets = data.build_datasets(config, preprocessing, seed=0)
    assert datasets.class_names == ["x", "y", "z"]
    np.testing.assert_array_equal(datasets.train.labels, [0] * 5 + [1] * 4 + [2] * 3)
    np.testing.assert_array_equal(datasets.val.labels, [0, 0, 1])
    np.testing.assert_array_equal(datasets.test.labels, [2, 2])


def test_split_folder_with_unknown_class(tmp_path: Path, small_config, preprocessing) -> None:
    _tree(tmp_path, {"train/x": 2, "test/w": 1})
    with pytest.raises(ValueError, match=r"\['w'\] do not exist in train"):
        data.build_datasets(
            small_config(source="image_folder", root=str(tmp_path)), preprocessing, seed=0
        )


def test_class_named_train_is_still_a_class(tmp_path: Path, small_config, preprocessing) -> None:
    _tree(tmp_path, {"train": 2, "bus": 2})
    datasets = data.build_datasets(
        small_config(source="image_folder", root=str(tmp_path), test_fraction=0.0),
        preprocessing,
        seed=0,
    )
    assert datasets.class_names == ["bus", "train"]


def test_single_folder_is_carved_stratified(tmp_path: Path, small_config, preprocessing) -> None:
    _tree(tmp_path, {"x": 10, "y": 20})
    config = small_config(
        source="image_folder", root=str(tmp_path), test_fraction=0.2, val_fraction=0.1
    )
    first = data.build_datasets(config, preprocessing, seed=3)
    np.testing.assert_array_equal(np.bincount(first.test.labels), [2, 4])
    np.testing.assert_array_equal(np.bincount(first.val.labels), [1, 2])
    np.testing.assert_array_equal(np.bincount(first.train.labels), [7, 14])
    parts = [set(s.indices.tolist()) for s in (first.train, first.val, first.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(set.union(*parts)) == 30
    again = data.build_datasets(config, preprocessing, seed=3)
    np.testing.assert_array_equal(first.test.indices, again.test.indices)
    other = data.build_datasets(config, preprocessing, seed=4)
    assert not np.array_equal(first.test.indices, other.test.indices)


def test_all_examples_failing_raises_instead_of_spinning(
    tmp_path: Path, small_config, preprocessing
) -> None:
    # Truncated JPEGs pass the header check; with epochs=None a pipeline filtering every example would
    # loop forever, so the split gives up once every example has failed.
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG"
    )
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "t.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    config = small_config(
        source="image_folder", root=str(tmp_path), test_fraction=0.0, prefetch_batches=0
    )
    datasets = data.build_datasets(config, preprocessing, seed=0)
    with pytest.raises(DataError, match="every one of 2 examples failed"):
        next(datasets.train.iterator(2))


@pytest.mark.parametrize("verify", [True, False])
def test_bombs_and_broken_files_are_skipped_and_counted(
    messy_folder, small_config, preprocessing, verify
) -> None:
    # One decompression bomb per range (PIL warns below 2x its limit, raises above): skipped and
    # counted like the other broken files, at index time (header check) or at run time (no check).
    write_bomb_png(messy_folder.root / "cat" / "warn.png", 12_000, 8_000)
    write_bomb_png(messy_folder.root / "dog" / "bomb.png", 60_000, 60_000)
    bad = sorted([*messy_folder.bad, "cat/warn.png", "dog/bomb.png"])
    config = small_config(
        source="image_folder",
        root=str(messy_folder.root),
        test_fraction=0.0,
        verify_images=verify,
    )
    datasets = data.build_datasets(config, preprocessing, seed=0)
    if not verify:
        assert datasets.skipped.count == 0
        assert datasets.train.num_examples == len(messy_folder.good) + len(bad)
    images, labels = _epoch(datasets.train)
    assert len(images) == len(labels) == len(messy_folder.good)
    assert datasets.skipped.count == len(bad)
    root = str(messy_folder.root)
    assert sorted(Path(p).relative_to(root).as_posix() for p in datasets.skipped.paths) == bad
    reasons = dict(datasets.skipped.first)
    warn, bomb = (str(messy_folder.root / rel) for rel in ("cat/warn.png", "dog/bomb.png"))
    assert reasons[warn].startswith("12000x8000 = 96000000 pixels is over the decompression-bomb")
    assert "DecompressionBombError" in reasons[bomb]
    # The report line names the path; the reason does not repeat it.
    assert warn not in reasons[warn]


def test_bad_data_roots_are_one_line_user_errors(
    tmp_path: Path, small_config, preprocessing
) -> None:
    (tmp_path / "a_file.png").write_bytes(b"x")
    for root, message in (
        (tmp_path / "missing", "is not a folder"),
        (tmp_path / "a_file.png", "is not a folder"),
        ("", "needs data.root"),
    ):
        config = small_config(source="image_folder", root=str(root))
        with pytest.raises(DataError, match=message) as caught:
            data.build_datasets(config, preprocessing, seed=0)
        assert cli.describe(caught.value) == str(caught.value)  # printed whole, on one line
