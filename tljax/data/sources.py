"""Random-access example sources: image folders, in-memory arrays (IDX), tfds data sources.

A source maps an index to `(PIL image in mode "L"/"RGB", label)` and may raise on a bad example; the
pipeline guards the call. Sources know nothing about splits, subsets or preprocessing.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from absl import logging
from PIL import Image

from tljax.data import images as image_io
from tljax.data.report import SkipReport
from tljax.errors import BadImageError, DataError

TRAIN_DIR_NAMES = ("train",)
VAL_DIR_NAMES = ("val", "valid", "validation")
TEST_DIR_NAMES = ("test",)


class Source(Protocol):
    """What the pipeline needs from a source."""

    # True when examples are arrays in memory: decoding is then cheaper than handing work to threads
    # (worker threads would only contend for the GIL).
    in_memory: bool

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray: ...  # int32 [N]

    def load(self, index: int, draft_size: int | None) -> tuple[Image.Image, int]: ...

    def describe(self, index: int) -> str: ...


class FileSource:
    """Image files with integer labels; decoding (with EXIF orientation) happens in `load`."""

    in_memory = False

    def __init__(self, paths: Sequence[str], labels: Sequence[int] | np.ndarray):
        self.paths = list(paths)
        self._labels = np.asarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def load(self, index: int, draft_size: int | None) -> tuple[Image.Image, int]:
        draft = (draft_size, draft_size) if draft_size else None
        return image_io.open_image(self.paths[index], draft_size=draft), int(self._labels[index])

    def describe(self, index: int) -> str:
        return self.paths[index]


class ArraySource:
    """Images already in memory, `uint8 [N, H, W]` or `[N, H, W, C]` (C in 1, 3, 4)."""

    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "array"):
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise ValueError(
                f"{name}: want images [N,H,W(,C)] and labels [N], got {images.shape}, {labels.shape}"
            )
        self.images = images
        self._labels = np.asarray(labels, dtype=np.int32)
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def load(self, index: int, draft_size: int | None) -> tuple[Image.Image, int]:
        image = image_io.to_gray_or_rgb(Image.fromarray(self.images[index]))
        return image, int(self._labels[index])

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


class TfdsSource:
    """A `tfds.data_source` (random access over prepared array_record files) of dict examples.

    Labels are read lazily on first use (stratified carving, few-shot), since tfds decodes whole examples
    and reading every label of a large dataset is not free.
    """

    in_memory = False

    def __init__(self, data_source: Any, image_key: str, label_key: str, name: str):
        self.data_source = data_source
        self.image_key = image_key
        self.label_key = label_key
        self.name = name
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.data_source)

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            logging.info("reading all %d labels of %s", len(self), self.name)
            self._labels = np.asarray(
                [int(self.data_source[i][self.label_key]) for i in range(len(self))], dtype=np.int32
            )
        return self._labels

    def load(self, index: int, draft_size: int | None) -> tuple[Image.Image, int]:
        example = self.data_source[index]
        pixels = np.asarray(example[self.image_key])
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        try:
            image = image_io.to_gray_or_rgb(Image.fromarray(pixels))
        except (TypeError, ValueError) as error:  # an array PIL has no mode for: skip and count
            raise BadImageError(
                f"{self.describe(index)}: image of shape {pixels.shape} and dtype {pixels.dtype} "
                f"is not an image ({error})"
            ) from error
        return image, int(example[self.label_key])

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


def _visible_subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not image_io.is_hidden(p.name))


def _inside(path: str, home: str) -> bool:
    """True when the resolved `path` is `home` or lies under it (both already resolved)."""
    return path == home or path.startswith(home.rstrip(os.sep) + os.sep)


class _Indexer:
    """Walks class folders with symlinks resolved, so that a file is indexed once, under its own class.

    Every file and folder is identified by its resolved path. A file is taken under a class only when it
    resolves inside that class's folder (itself resolved, so a class folder may be a link to elsewhere);
    a link into another class, another split or outside the class is ignored and reported in `ignored`,
    as is a second link to a file already indexed (in any class or split sharing this indexer) and a
    folder already walked (which is what makes link loops finish). Order is that of a sorted top-down
    walk, as `os.walk` gives, so indices are stable.
    """

    def __init__(self, ignored: SkipReport):
        self.ignored = ignored
        self.files: dict[str, str] = {}  # resolved path -> the path it was first indexed as

    def image_files(self, class_dir: Path) -> list[str]:
        """The image files that live in `class_dir` (recursively), hidden ones excluded."""
        home = os.path.realpath(class_dir)
        found: list[str] = []
        walked = {home}
        # Depth first with an explicit stack (no recursion limit on deep trees); a folder is checked
        # when it is popped, so the order and the reports are those of a recursive sorted walk.
        stack: list[tuple[str, str | None]] = [(str(class_dir), None)]
        while stack:
            directory, resolved = stack.pop()
            if resolved is not None:
                if not _inside(resolved, home):
                    self.ignored.add(
                        directory,
                        f"symlink to folder {resolved}, outside its class folder {home}: ignored so "
                        "that no image is labelled with a class it does not live in",
                    )
                    continue
                if resolved in walked:
                    self.ignored.add(
                        directory,
                        f"folder {resolved} already indexed (through another link, or a link loop)",
                    )
                    continue
                walked.add(resolved)
            stack += reversed(self._list(directory, home, found))
        return found

    def _list(self, directory: str, home: str, found: list[str]) -> list[tuple[str, str | None]]:
        """Adds `directory`'s image files to `found`; returns its sub-folders as (path, resolved)."""
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:  # unreadable folder: reported, the rest is indexed
            self.ignored.add(directory, f"cannot list folder ({error.strerror or error})")
            return []
        subdirs: list[tuple[str, str | None]] = []
        for entry in entries:
            if image_io.is_hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
                resolved = os.path.realpath(entry.path, strict=True)
            except OSError as error:  # a dangling link or a link loop (ELOOP)
                if entry.is_symlink():
                    self.ignored.add(entry.path, f"broken symlink ({error.strerror or error})")
                continue
            if is_dir:
                subdirs.append((entry.path, resolved))
            elif not image_io.has_image_extension(entry.name):
                continue
            elif entry.is_file():
                self._add_file(entry.path, resolved, home, found)
            else:  # a FIFO, socket or device named like an image: opening it could block forever
                self.ignored.add(entry.path, "not a regular file")
        return subdirs

    def _add_file(self, path: str, resolved: str, home: str, found: list[str]) -> None:
        if not _inside(resolved, home):
            self.ignored.add(
                path,
                f"symlink to {resolved}, outside its class folder {home}: ignored so that no image is "
                "labelled with a class it does not live in (link the class folder itself instead)",
            )
        elif resolved in self.files:
            self.ignored.add(path, f"same file as {self.files[resolved]}, already indexed")
        else:
            self.files[resolved] = path
            found.append(path)


def _refuse_overlapping_classes(folder: Path, class_dirs: Sequence[Path]) -> None:
    """DataError when class folders resolve to one folder, into each other, or over the root itself
    (links such as `cat -> dog` or `all -> .`): their images would otherwise get two labels."""
    root = os.path.realpath(folder)
    homes = [(d, os.path.realpath(d)) for d in class_dirs]
    problems = []
    for i, (class_dir, home) in enumerate(homes):
        if _inside(root, home):
            problems.append(f"{class_dir} resolves to {home}, which holds the whole image folder")
        for other, other_home in homes[i + 1 :]:
            if _inside(home, other_home) or _inside(other_home, home):
                problems.append(f"{class_dir} and {other} overlap ({home}, {other_home})")
    if problems:
        raise DataError(
            "class folders must be distinct folders (a symlinked class folder may point anywhere "
            f"else): {'; '.join(problems)}. Remove or fix those links."
        )


def detect_split_dirs(root: Path) -> dict[str, Path] | None:
    """{"train": ..., "val": ..., "test": ...} when every visible sub-folder of root is a split name and
    train/ is one of them; None when root's sub-folders are classes (a class called "train" still works
    as long as it has non-split siblings)."""
    subdirs = _visible_subdirs(root)
    names = {p.name.lower(): p for p in subdirs}
    split_names = set(TRAIN_DIR_NAMES + VAL_DIR_NAMES + TEST_DIR_NAMES)
    if not subdirs or not set(names) <= split_names or not set(names) & set(TRAIN_DIR_NAMES):
        return None
    found: dict[str, Path] = {}
    for split, candidates in (
        ("train", TRAIN_DIR_NAMES),
        ("val", VAL_DIR_NAMES),
        ("test", TEST_DIR_NAMES),
    ):
        matches = [names[c] for c in candidates if c in names]
        if len(matches) > 1:
            raise DataError(
                f"{root}: several folders for the {split} split: {[str(m) for m in matches]}"
            )
        if matches:
            found[split] = matches[0]
    return found


def _accepted() -> str:
    return " ".join(image_io.IMAGE_EXTENSIONS) + " (any case)"


def index_class_folders(
    folder: Path,
    *,
    class_names: Sequence[str] | None,
    verify: bool,
    num_workers: int,
    skipped: SkipReport,
    indexed: dict[str, str] | None = None,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Index `folder/<class>/**/<image>` → (paths, labels int32, class names).

    With `class_names` given (val/test of a split layout) the class folders must be a subset of them.
    Files failing the PIL header check are recorded in `skipped` and left out. Symlinks are resolved: a
    file is indexed once and only under the class folder it resolves into; links elsewhere, duplicates
    and loops are recorded in `skipped` and left out (`_Indexer`). `indexed` (resolved path → indexed
    path) is shared by the splits of one dataset so that no file is in two splits. Raises one
    `DataError` (a ValueError) naming every empty class folder, class folders that are one folder, or
    saying no images exist at all, before any training starts.
    """
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    indexer = _Indexer(skipped)
    if indexed is not None:
        indexer.files = indexed
    class_dirs = _visible_subdirs(folder)
    if not class_dirs:
        loose = indexer.image_files(folder)
        hint = (
            f" It holds {len(loose)} loose image(s): put them in one sub-folder per class."
            if loose
            else ""
        )
        raise DataError(f"{folder} has no class sub-folders (want {folder}/<class>/<image>).{hint}")
    if class_names is None:
        class_names = [d.name for d in class_dirs]
    else:
        unknown = [d.name for d in class_dirs if d.name not in class_names]
        if unknown:
            raise DataError(
                f"{folder}: class folders {unknown} do not exist in train (classes: {list(class_names)})"
            )
    label_of = {name: label for label, name in enumerate(class_names)}
    _refuse_overlapping_classes(folder, class_dirs)

    per_class: dict[str, list[str]] = {}
    ignored: dict[str, int] = {}
    for class_dir in class_dirs:
        before = skipped.count
        per_class[class_dir.name] = indexer.image_files(class_dir)
        ignored[class_dir.name] = skipped.count - before
    all_files = [f for files in per_class.values() for f in files]
    bad: dict[str, str] = {}
    if verify and all_files:
        workers = max(1, num_workers)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for path, reason in zip(
                all_files, pool.map(image_io.verify_header, all_files), strict=True
            ):
                if reason is not None:
                    bad[path] = reason
        for path in all_files:  # in index order, so the report's first paths are stable
            if path in bad:
                skipped.add(path, bad[path])

    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for class_dir in class_dirs:
        good = [f for f in per_class[class_dir.name] if f not in bad]
        if not good:
            n_bad, n_ignored = len(per_class[class_dir.name]), ignored[class_dir.name]
            notes = [f"{n_bad} unreadable file(s)"] if n_bad else []
            if n_ignored:
                # The skip report is logged only after indexing succeeds: say here why.
                prefix = str(class_dir) + os.sep
                why = next((f"{p}: {r}" for p, r in skipped.first if p.startswith(prefix)), None)
                notes.append(f"{n_ignored} ignored link(s)" + (f", e.g. {why}" if why else ""))
            empty.append(f"{class_dir}" + (f" ({', '.join(notes)})" if notes else ""))
        paths += good
        labels += [label_of[class_dir.name]] * len(good)
    if not paths:
        unreadable = (
            f" ({len(bad)} file(s) failed the image check, see the skip report)" if bad else ""
        )
        raise DataError(
            f"no images at all under {folder}{unreadable}; accepted extensions: {_accepted()}"
        )
    if empty:
        raise DataError(
            f"empty class folder(s), no readable images: {', '.join(empty)}; "
            f"accepted extensions: {_accepted()}. Remove the folder or add images."
        )
    return paths, np.asarray(labels, dtype=np.int32), list(class_names)


def open_tfds(name: str, split: str, data_dir: str | None) -> Any:
    """`tfds.data_source(name, split=split)`, or one error saying what to install or prepare."""
    try:
        import tensorflow_datasets as tfds  # optional: only this source needs it
    except ImportError as error:
        raise DataError(
            f"data.source='tfds' (dataset {name!r}) needs TensorFlow Datasets, which is not installed: "
            "`pip install tensorflow-datasets array_record` (TensorFlow itself is not needed for "
            "prepared data), then prepare the data once with `tfds build "
            f"{name}` on a machine with network access and point data.root at its data_dir. "
            "Offline, use source='image_folder' or 'fashion_mnist' instead."
        ) from error
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir)
    # tfds raises DatasetNotFoundError, AssertionError, FileNotFoundError... depending on what is missing.
    except Exception as error:
        where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
        raise DataError(
            f"tfds dataset {name!r} split {split!r} is not available in {where} as prepared "
            f"array_record files ({type(error).__name__}: {error}). Prepare it with `tfds build {name} "
            "--file_format=array_record` (needs network and TensorFlow) and set data.root to its data_dir."
        ) from error


def tfds_class_names(data_source: Any, label_key: str) -> list[str] | None:
    """Class names from the dataset's info when it has a ClassLabel feature, else None."""
    try:
        feature = data_source.dataset_info.features[label_key]
        return [str(n) for n in feature.names]
    except (AttributeError, KeyError, TypeError):
        return None
