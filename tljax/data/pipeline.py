"""`build_datasets`: config → sources → seeded subsets → grain pipelines with checkpointable iterators.

Pipeline of one split (grain):
  range(N) → shuffle(seed) → repeat(epochs) → decode + crop (+ example ops, per-example seeded RNG)
  → to_iter_dataset(worker threads, element prefetch) → batch → normalise (+ batch ops) → thread prefetch.
Shuffling and per-example randomness are index-based, so the stream depends on the seed only (not on
the number of threads), and grain's iterator state (`get_state()`/`set_state()`) is a few integers that
the trainer stores in its checkpoint to resume at exactly the next batch.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import logging
from grain.experimental import ThreadPrefetchIterDataset

from tljax.data import augment as augment_lib
from tljax.data import classes as classes_lib
from tljax.data import idx as idx_lib
from tljax.data import preprocess, subsets
from tljax.data import sources as sources_lib
from tljax.data.config import SOURCES
from tljax.data.report import SkipReport
from tljax.errors import BadImageError, DataError
from tljax.typing import Config


def _derive_seed(seed: int, stream: int) -> int:
    """A 32-bit seed for one purpose (shuffle, example augment, batch augment) from the user's seed."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, stream]).generate_state(1)[0])


class Split:
    """One split (train, val or test): a source, the chosen indices and how to turn them into batches.

    `augment_by_default` is True for train: `iterator(...)` then applies the random-resized-crop, the
    example ops and the batch ops unless `augment=False` is passed (feature extraction, linear probes).
    """

    def __init__(
        self,
        name: str,
        source: sources_lib.Source,
        indices: np.ndarray,
        *,
        geometry: preprocess.Geometry,
        normalizer: preprocess.Normalizer,
        augment_config: Config,
        augment_by_default: bool,
        num_workers: int,
        prefetch_batches: int,
        skipped: SkipReport,
    ):
        self.name = name
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.geometry = geometry
        self.normalizer = normalizer
        self.augment_config = augment_config
        self.augment_by_default = augment_by_default
        self.num_workers = int(num_workers)
        self.prefetch_batches = int(prefetch_batches)
        self.skipped = skipped
        self._failed_positions: set[int] = set()
        self._failed_lock = threading.Lock()
        # Built once: ops are pure functions of (image, rng).
        self._example_ops = (
            augment_lib.build_example_ops(augment_config) if augment_config.enabled else []
        )
        self._batch_ops = (
            augment_lib.build_batch_ops(augment_config) if augment_config.enabled else []
        )

    @property
    def num_examples(self) -> int:
        """Examples in the split as indexed (files failing only at decode time are still included)."""
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        """`int32 [num_examples]`, in index order (the order of an unshuffled iterator)."""
        return self.source.labels[self.indices]

    def _load(
        self, position: int, rng: np.random.Generator | None, augment: bool
    ) -> dict[str, Any] | None:
        """One example → `{"image": uint8 [S, S, 3], "label": int32}`, or None (skipped and counted)."""
        position = position % len(self.indices)
        index = int(self.indices[position])
        try:
            image, label = self.source.load(index, self.geometry.resize)
        except BadImageError as error:  # one bad file never stops an epoch; anything else is a bug
            self._record_failure(position, index, error)
            return None
        config = self.augment_config
        if not augment:
            pixels = preprocess.center_crop(image, self.geometry)
        elif rng is None:
            raise ValueError(f"split {self.name!r}: augmenting an example needs a random generator")
        else:
            if config.random_resized_crop:
                pixels = preprocess.random_resized_crop(
                    image, self.geometry, rng, scale=tuple(config.scale), ratio=tuple(config.ratio)
                )
            else:
                pixels = preprocess.center_crop(image, self.geometry)
            for op in self._example_ops:
                pixels = op(pixels, rng)
        # `pixels` may be a strided view (a flip); batching copies it anyway.
        return {"image": pixels, "label": np.int32(label)}

    def _record_failure(self, position: int, index: int, error: Exception) -> None:
        # The report line already names the path: keep the cause (PIL's error) or the decoder's reason.
        where = self.source.describe(index)
        cause = error.__cause__
        reason = (
            f"{type(cause).__name__}: {cause}" if cause else str(error).removeprefix(f"{where}: ")
        )
        self.skipped.add(where, reason, runtime=True)
        with self._failed_lock:
            self._failed_positions.add(position)
            everything_failed = len(self._failed_positions) >= len(self.indices)
        if everything_failed:
            # Otherwise an infinite repeat would spin forever filtering out failures.
            raise DataError(
                f"{self.name}: every one of {len(self.indices)} examples failed to decode (see the "
                "skipped paths logged above); fix or replace the image files"
            )

    def _normalize(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            **batch,
            "image": self.normalizer(batch["image"]),
            "label": batch["label"].astype(np.int32),
        }

    def dataset(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epochs: int | None = None,
        drop_remainder: bool = False,
        augment: bool | None = None,
        process_index: int = 0,
        process_count: int = 1,
        pad_remainder: bool = False,
    ) -> grain.IterDataset:
        """The grain `IterDataset` behind `iterator` (for callers that add their own stages).

        With `process_count > 1`, `batch_size` is this process's share of a global batch of
        `batch_size · process_count`, and the process reads only its rows of each global batch
        (`tljax.parallel.shard_for_process`). `pad_remainder` (finite streams, evaluation) completes the
        last global batch with zero images and adds a `mask` (1 real, 0 padding or undecodable).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be None (forever) or >= 1, got {epochs}")
        augment = self.augment_by_default if augment is None else augment
        augment = augment and bool(self.augment_config.enabled)

        dataset = grain.MapDataset.range(len(self.indices))
        if shuffle:
            dataset = dataset.shuffle(seed=_derive_seed(seed, 0))
        if epochs != 1:
            # Reshuffles and re-draws augmentation each epoch, deterministically.
            dataset = dataset.repeat(epochs)
        if augment:
            dataset = dataset.random_map(
                lambda position, rng: self._load(position, rng, True), seed=_derive_seed(seed, 1)
            )
        else:
            dataset = dataset.map(lambda position: self._load(position, None, False))
        if process_count > 1 or pad_remainder:
            from tljax.parallel.data import shard_for_process

            crop = int(self.geometry.crop)
            dataset = shard_for_process(
                dataset,
                batch_size,
                process_index,
                process_count,
                pad=(
                    (lambda: {"image": np.zeros((crop, crop, 3), np.uint8), "label": np.int32(0)})
                    if pad_remainder
                    else None
                ),
            )
        # In-memory arrays decode in microseconds: worker threads would only fight over the GIL. The
        # batch-level thread prefetch below still moves the whole pipeline off the training thread.
        threads = 0 if self.source.in_memory else self.num_workers
        read_options = grain.ReadOptions(
            num_threads=threads,
            prefetch_buffer_size=max(threads, batch_size * max(1, self.prefetch_batches))
            if threads
            else 0,
        )
        # allow_nones=False drops the examples whose decode failed.
        stream = dataset.to_iter_dataset(read_options, allow_nones=False)
        stream = stream.batch(batch_size, drop_remainder=drop_remainder).map(self._normalize)
        if augment:
            for number, op in enumerate(self._batch_ops):
                stream = stream.random_map(op, seed=_derive_seed(seed, 2 + number))
        if self.prefetch_batches > 0:
            stream = ThreadPrefetchIterDataset(stream, prefetch_buffer_size=self.prefetch_batches)
        return stream

    def iterator(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epochs: int | None = None,
        drop_remainder: bool = False,
        augment: bool | None = None,
        process_index: int = 0,
        process_count: int = 1,
        pad_remainder: bool = False,
    ) -> grain.DatasetIterator:
        """A checkpointable iterator of `{"image": float32 [B, S, S, 3], "label": int32 [B]}`.

        `epochs=None` repeats forever (each epoch reshuffled); `augment=None` means "yes for train".
        Save the position with `it.get_state()` and resume with `it.set_state(state)` on a fresh
        iterator built with the same arguments: the next batch is the one that would have come.
        `process_index`, `process_count` and `pad_remainder` are those of `dataset`.
        """
        return iter(
            self.dataset(
                batch_size,
                shuffle=shuffle,
                seed=seed,
                epochs=epochs,
                drop_remainder=drop_remainder,
                augment=augment,
                process_index=process_index,
                process_count=process_count,
                pad_remainder=pad_remainder,
            )
        )

    def __repr__(self) -> str:
        return f"Split({self.name!r}, num_examples={self.num_examples}, size={self.geometry.crop})"


@dataclasses.dataclass
class Datasets:
    """What the trainer consumes: the splits, the class names and the shared skip report."""

    train: Split
    val: Split | None
    test: Split | None
    class_names: list[str]
    skipped: SkipReport

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass
class _RawSplits:
    """Sources and index arrays per split, before few-shot subsetting."""

    sources: dict[str, sources_lib.Source]
    indices: dict[str, np.ndarray]
    class_names: list[str]


def _all(source: sources_lib.Source) -> np.ndarray:
    return np.arange(len(source), dtype=np.int64)


def _idx_raw(config: Config) -> _RawSplits:
    if config.source == "fashion_mnist":
        root, class_names = (
            config.root or idx_lib.FASHION_MNIST_DIR,
            list(idx_lib.FASHION_MNIST_CLASSES),
        )
    else:
        if not config.root:
            raise ValueError(
                "data.source='mnist' needs data.root: a folder with the MNIST IDX files"
            )
        root, class_names = config.root, list(idx_lib.MNIST_CLASSES)
    found: dict[str, sources_lib.Source] = {}
    for split in ("train", "test"):
        images, labels = idx_lib.load_idx_split(root, split)
        found[split] = sources_lib.ArraySource(images, labels, name=f"{config.source}:{split}")
    return _RawSplits(found, {k: _all(v) for k, v in found.items()}, class_names)


def _folder_raw(config: Config, seed: int, skipped: SkipReport) -> _RawSplits:
    if not config.root:
        raise DataError("data.source='image_folder' needs data.root (a folder of class folders)")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} is not a folder (it does not exist, or is a file)")
    # One `indexed` map (resolved path → indexed path) for every split: a file linked into two splits is
    # indexed in the first only (train, then val, then test) and reported for the others.
    index = functools.partial(
        sources_lib.index_class_folders,
        verify=bool(config.verify_images),
        num_workers=int(config.num_workers),
        skipped=skipped,
        indexed={},
    )
    split_dirs = sources_lib.detect_split_dirs(root)
    found: dict[str, sources_lib.Source] = {}
    if split_dirs is None:
        paths, labels, class_names = index(root, class_names=None)
        source = sources_lib.FileSource(paths, labels)
        test, train = subsets.take_fraction(
            labels, _all(source), float(config.test_fraction), seed, subsets.SALT_TEST
        )
        indices = {"train": train, "test": test} if len(test) else {"train": train}
        return _RawSplits({k: source for k in indices}, indices, class_names)
    paths, labels, class_names = index(split_dirs["train"], class_names=None)
    found["train"] = sources_lib.FileSource(paths, labels)
    for split in ("val", "test"):
        if split in split_dirs:
            paths, labels, _ = index(split_dirs[split], class_names=class_names)
            found[split] = sources_lib.FileSource(paths, labels)
    return _RawSplits(found, {k: _all(v) for k, v in found.items()}, class_names)


def _tfds_raw(config: Config) -> _RawSplits:
    if not config.name:
        raise DataError("data.source='tfds' needs data.name (e.g. 'cifar10')")
    found: dict[str, sources_lib.Source] = {}
    class_names = None
    wanted = {"train": config.train_split, "val": config.val_split, "test": config.test_split}
    for split, tfds_split in wanted.items():
        if not tfds_split:
            continue
        data_source = sources_lib.open_tfds(config.name, tfds_split, config.root)
        found[split] = sources_lib.TfdsSource(
            data_source, config.image_key, config.label_key, name=f"tfds:{config.name}:{tfds_split}"
        )
        class_names = class_names or sources_lib.tfds_class_names(data_source, config.label_key)
    if class_names is None:
        class_names = [str(i) for i in range(int(found["train"].labels.max()) + 1)]
    return _RawSplits(found, {k: _all(v) for k, v in found.items()}, class_names)


def _carve(raw: _RawSplits, config: Config, seed: int) -> None:
    """Validation from train when missing, then few-shot train and per-class subsampling, in place.

    Validation is carved before the few-shot pick so that the validation set does not depend on N.
    """
    train_labels = raw.sources["train"].labels
    names = raw.class_names
    if "val" not in raw.sources:
        taken = None
        if config.val_per_class:
            taken, rest = subsets.take_per_class(
                train_labels,
                raw.indices["train"],
                int(config.val_per_class),
                seed,
                subsets.SALT_VAL,
                class_names=names,
                what="validation carved from train",
            )
        elif config.val_fraction:
            taken, rest = subsets.take_fraction(
                train_labels,
                raw.indices["train"],
                float(config.val_fraction),
                seed,
                subsets.SALT_VAL,
            )
        if taken is not None:
            raw.sources["val"] = raw.sources["train"]
            raw.indices["val"], raw.indices["train"] = taken, rest
    elif config.val_per_class:
        raw.indices["val"], _ = subsets.take_per_class(
            raw.sources["val"].labels,
            raw.indices["val"],
            int(config.val_per_class),
            seed,
            subsets.SALT_SUBSAMPLE,
            class_names=names,
            what="val_per_class",
        )
    if config.train_per_class:
        raw.indices["train"], _ = subsets.take_per_class(
            train_labels,
            raw.indices["train"],
            int(config.train_per_class),
            seed,
            subsets.SALT_FEW_SHOT,
            class_names=names,
            what="train_per_class",
        )
    if config.test_per_class and "test" in raw.sources:
        raw.indices["test"], _ = subsets.take_per_class(
            raw.sources["test"].labels,
            raw.indices["test"],
            int(config.test_per_class),
            seed,
            subsets.SALT_SUBSAMPLE,
            class_names=names,
            what="test_per_class",
        )


def build_datasets(data_config: Config, preprocessing: Any, *, seed: int) -> Datasets:
    """Build train/val/test splits from `data_config` (see `default_data_config`) for given weights.

    `preprocessing` is the weights' `tljax.weights.Preprocessing` (any object with `mean, std` in 0..255
    units, `resize`, `crop`, optional `interpolation`); None means no pretrained weights: pixels scaled to
    [-1, 1] at `data.image_size`. `seed` fixes every carved subset (validation, test, few-shot); the order
    and augmentation of batches are seeded separately in `Split.iterator`. Bad images are counted in
    `Datasets.skipped` and logged once here; empty classes or no images raise before training starts.
    """
    if data_config.source not in SOURCES:
        raise ValueError(f"data.source {data_config.source!r} not in {SOURCES}")
    geometry = preprocess.resolve_geometry(
        preprocessing, data_config.image_size, data_config.resize_size, data_config.interpolation
    )
    if preprocessing is None:
        mean, std = (127.5,) * 3, (127.5,) * 3
    else:
        mean, std = tuple(preprocessing.mean), tuple(preprocessing.std)
    normalizer = preprocess.Normalizer(mean, std)
    skipped = SkipReport()

    if data_config.source in ("fashion_mnist", "mnist"):
        raw = _idx_raw(data_config)
    elif data_config.source == "image_folder":
        raw = _folder_raw(data_config, seed, skipped)
    else:
        raw = _tfds_raw(data_config)
    # Class subset first, so validation carving and few-shot picks count the kept classes only.
    raw.sources, raw.indices, raw.class_names = classes_lib.select_classes(
        raw.sources, raw.indices, raw.class_names, data_config.classes, data_config.class_seed
    )
    _carve(raw, data_config, seed)

    def make(name: str) -> Split | None:
        if name not in raw.sources:
            return None
        return Split(
            name,
            raw.sources[name],
            raw.indices[name],
            geometry=geometry,
            normalizer=normalizer,
            augment_config=data_config.augment,
            augment_by_default=name == "train",
            num_workers=data_config.num_workers,
            prefetch_batches=data_config.prefetch_batches,
            skipped=skipped,
        )

    train = make("train")
    if train is None:  # every source yields a train split; this guards the type, not user input
        raise ValueError(f"data source {data_config.source!r} produced no train split")
    datasets = Datasets(train, make("val"), make("test"), raw.class_names, skipped)
    # Logged once, here; a warning when something was left out so it shows in a quiet log.
    logging.log(
        logging.WARNING if skipped.count else logging.INFO,
        "data %s: %d classes, train %d, val %s, test %s, %dx%d (resize %d); %s",
        data_config.source,
        datasets.num_classes,
        datasets.train.num_examples,
        datasets.val.num_examples if datasets.val else None,
        datasets.test.num_examples if datasets.test else None,
        geometry.crop,
        geometry.crop,
        geometry.resize,
        skipped.summary(),
    )
    return datasets
