"""Symlinks in image folders (issue 8 item 1): each file indexed once by its resolved path, never in two
splits, never under a class it does not live in; loops finish; what was ignored is in the skip report."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tljax.data as data
from tljax.data.report import SkipReport
from tljax.data.sources import index_class_folders
from tljax.errors import DataError, UserError


def _images(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        paths.append(folder / f"{i}.png")
        Image.new("RGB", (8, 8), (i, 0, 0)).save(paths[-1])
    return paths


def _index(root: Path) -> tuple[dict[str, list[str]], SkipReport]:
    """{class: sorted resolved paths} and the report, indexed in a thread so that a hang fails the test."""
    skipped = SkipReport()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            index_class_folders, root, class_names=None, verify=True, num_workers=1, skipped=skipped
        )
        paths, labels, names = future.result(timeout=30)
    by_class: dict[str, list[str]] = {name: [] for name in names}
    for path, label in zip(paths, labels.tolist(), strict=True):
        by_class[names[label]].append(os.path.realpath(path))
    return {k: sorted(v) for k, v in by_class.items()}, skipped


def _resolved(paths: list[Path]) -> list[str]:
    return sorted(os.path.realpath(p) for p in paths)


def _ignored(skipped: SkipReport, root: Path) -> dict[str, str]:
    return {Path(p).relative_to(root).as_posix(): reason for p, reason in skipped.first}


def test_link_to_dot_indexes_each_file_once(tmp_path: Path) -> None:
    cats, dogs = _images(tmp_path / "cat", 3), _images(tmp_path / "dog", 2)
    os.symlink(".", tmp_path / "cat" / "again")
    os.symlink(".", tmp_path / "cat" / "and_again")  # two self-links: os.walk never finished
    os.symlink("..", tmp_path / "dog" / "up")  # other classes' images must not become dogs
    found, skipped = _index(tmp_path)
    assert found == {"cat": _resolved(cats), "dog": _resolved(dogs)}
    ignored = _ignored(skipped, tmp_path)
    assert set(ignored) == {"cat/again", "cat/and_again", "dog/up"}
    assert "already indexed" in ignored["cat/again"]
    assert "outside its class folder" in ignored["dog/up"]


def test_symlink_loops_finish_and_are_reported(tmp_path: Path) -> None:
    cats = _images(tmp_path / "cat", 2)
    _images(tmp_path / "dog", 1)
    os.symlink("b", tmp_path / "cat" / "a")  # a -> b -> a: ELOOP
    os.symlink("a", tmp_path / "cat" / "b")
    os.symlink("nowhere.png", tmp_path / "cat" / "dangling.png")
    os.mkfifo(tmp_path / "cat" / "pipe.png")  # opening it would block the indexer forever
    (tmp_path / "cat" / "deep").mkdir()
    os.symlink("../..", tmp_path / "cat" / "deep" / "root")  # a cycle through the root
    found, skipped = _index(tmp_path)
    assert found["cat"] == _resolved(cats)
    ignored = _ignored(skipped, tmp_path)
    assert set(ignored) == {"cat/a", "cat/b", "cat/dangling.png", "cat/deep/root", "cat/pipe.png"}
    assert ignored["cat/pipe.png"] == "not a regular file"
    assert all("broken symlink" in ignored[k] for k in ("cat/a", "cat/b", "cat/dangling.png"))


def test_file_links_into_another_class_or_outside_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cats, dogs = _images(root / "cat", 2), _images(root / "dog", 2)
    (outside,) = _images(tmp_path / "elsewhere", 1)
    os.symlink(dogs[0], root / "cat" / "a_dog.png")  # absolute link into the dog class
    os.symlink("../../elsewhere/0.png", root / "cat" / "outside.png")
    os.symlink("1.png", root / "dog" / "same_dog.png")  # a second name for a dog already indexed
    (root / "cat" / "sub").mkdir()
    os.symlink("../0.png", root / "cat" / "sub" / "inside.png")  # stays in its class: a duplicate
    found, skipped = _index(root)
    assert found == {"cat": _resolved(cats), "dog": _resolved(dogs)}
    ignored = _ignored(skipped, root)
    assert set(ignored) == {
        "cat/a_dog.png",
        "cat/outside.png",
        "dog/same_dog.png",
        "cat/sub/inside.png",
    }
    assert str(outside) in ignored["cat/outside.png"]
    assert "already indexed" in ignored["dog/same_dog.png"]


def test_a_class_folder_may_be_a_link_but_classes_may_not_overlap(tmp_path: Path) -> None:
    elsewhere = _images(tmp_path / "store" / "cats", 3)
    root = tmp_path / "root"
    dogs = _images(root / "dog", 2)
    os.symlink(tmp_path / "store" / "cats", root / "cat")  # a folder farm: fine
    found, skipped = _index(root)
    assert found == {"cat": _resolved(elsewhere), "dog": _resolved(dogs)} and skipped.count == 0

    os.symlink("dog", root / "puppy")  # the same images under two labels: refused
    with pytest.raises(DataError, match=r"puppy.*overlap") as caught:
        _index(root)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    os.unlink(root / "puppy")
    os.symlink(".", root / "all")  # a class holding every class
    with pytest.raises(DataError, match=r"all resolves to .*holds the whole image folder"):
        _index(root)


def test_split_folders_never_share_a_file(tmp_path: Path, small_config, preprocessing) -> None:
    train_x, train_y = _images(tmp_path / "train/x", 4), _images(tmp_path / "train/y", 3)
    test_x = _images(tmp_path / "test/x", 2, start=10)
    test_y = _images(tmp_path / "test/y", 1, start=10)
    # Links that would put training images into test: a file, and a whole folder.
    os.symlink("../../train/x/0.png", tmp_path / "test/x/leak.png")
    os.symlink("../../train/y", tmp_path / "test/y/leak_folder")
    config = small_config(source="image_folder", root=str(tmp_path))
    datasets = data.build_datasets(config, preprocessing, seed=0)

    def members(split: data.Split) -> list[str]:
        return sorted(os.path.realpath(split.source.describe(int(i))) for i in split.indices)

    assert datasets.val is None
    assert members(datasets.train) == _resolved(train_x + train_y)
    assert members(datasets.test) == _resolved(test_x + test_y)
    np.testing.assert_array_equal(np.bincount(datasets.test.labels), [2, 1])
    assert {Path(p).relative_to(tmp_path).as_posix() for p in datasets.skipped.paths} == {
        "test/x/leak.png",
        "test/y/leak_folder",
    }

    # A test class folder that is a link to the train one: every file is already in train, so the
    # test class is empty (refused before training) rather than a copy of train.
    for path in test_y:
        path.unlink()
    os.unlink(tmp_path / "test/y/leak_folder")
    (tmp_path / "test/y").rmdir()
    os.symlink("../train/y", tmp_path / "test/y")
    with pytest.raises(DataError, match=r"empty class.*test/y \(3 ignored link"):
        data.build_datasets(config, preprocessing, seed=0)


def test_carved_splits_of_one_folder_never_share_a_file(
    tmp_path: Path, small_config, preprocessing
) -> None:
    cats, dogs = _images(tmp_path / "cat", 10), _images(tmp_path / "dog", 10)
    for i in range(5):  # every file twice more: a link and a linked folder
        os.symlink(f"{i}.png", tmp_path / "cat" / f"copy{i}.png")
    os.symlink(".", tmp_path / "dog" / "mirror")
    config = small_config(
        source="image_folder", root=str(tmp_path), test_fraction=0.3, val_fraction=0.2
    )
    datasets = data.build_datasets(config, preprocessing, seed=0)
    splits = [datasets.train, datasets.val, datasets.test]
    resolved = [[os.path.realpath(s.source.describe(int(i))) for i in s.indices] for s in splits]
    everything = [p for paths in resolved for p in paths]
    assert sorted(everything) == _resolved(cats + dogs)  # 20 files, each exactly once
    assert datasets.skipped.count == 6
    assert "6 path(s) skipped" in datasets.skipped.summary()
