"""Class subsets (`data.classes`): relabelling, counts per class in every split, seeded halves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tljax.data as data
from tljax.data.classes import half_split, resolve_classes
from tljax.errors import ConfigError

NAMES = list(data.FASHION_MNIST_CLASSES)
TRAIN_PER_CLASS, TEST_PER_CLASS = 12, 5


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    """Fashion-MNIST-shaped IDX files whose every pixel is 20 × the original label (so a decoded image
    tells which class it came from), classes interleaved as in the real files."""
    for prefix, count in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        labels = np.tile(np.arange(10, dtype=np.uint8), count)
        images = np.broadcast_to((20 * labels)[:, None, None], (len(labels), 28, 28))
        data.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.ascontiguousarray(images))
        data.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path


def _decoded(split, preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """(original labels read back from the pixels, new labels) of one unaugmented pass."""
    originals, labels = [], []
    for batch in split.iterator(16, epochs=1, augment=False):
        pixels = batch["image"][:, 0, 0, 0] * preprocessing.std[0] + preprocessing.mean[0]
        originals.append(np.rint(pixels / 20).astype(int))
        labels.append(batch["label"])
    return np.concatenate(originals), np.concatenate(labels)


def test_named_classes_are_relabelled_in_order_in_every_split(
    fashion_root, small_config, preprocessing
):
    config = small_config(
        source="fashion_mnist",
        root=str(fashion_root),
        classes="Bag,Trouser,Sneaker",
        val_per_class=3,
        train_per_class=4,
        **{"augment.enabled": False},
    )
    datasets = data.build_datasets(config, preprocessing, seed=0)
    assert datasets.class_names == ["Bag", "Trouser", "Sneaker"]
    original_of_new = np.array([NAMES.index(n) for n in datasets.class_names])
    expected_counts = {"train": 4, "val": 3, "test": TEST_PER_CLASS}
    for name, split in (("train", datasets.train), ("val", datasets.val), ("test", datasets.test)):
        assert np.bincount(split.labels, minlength=3).tolist() == [expected_counts[name]] * 3, name
        originals, labels = _decoded(split, preprocessing)
        np.testing.assert_array_equal(original_of_new[labels], originals)  # right image, new label
    # Validation and train never share an example.
    assert not set(datasets.val.indices) & set(datasets.train.indices)


def test_indices_select_the_same_classes_as_names(fashion_root, small_config, preprocessing):
    def build(classes):
        config = small_config(source="fashion_mnist", root=str(fashion_root), classes=classes)
        return data.build_datasets(config, preprocessing, seed=0)

    by_name, by_index = build("Bag,Trouser"), build("8,1")
    assert by_name.class_names == by_index.class_names == ["Bag", "Trouser"]
    np.testing.assert_array_equal(by_name.test.indices, by_index.test.indices)
    np.testing.assert_array_equal(by_name.test.labels, by_index.test.labels)


def test_halves_are_seeded_disjoint_and_followed_by_the_data(
    fashion_root, small_config, preprocessing
):
    half_a, half_b = half_split(10, seed=3)
    assert (len(half_a), len(half_b)) == (5, 5)
    assert sorted(half_a + half_b) == list(range(10))
    assert half_split(10, seed=3) == (half_a, half_b)  # the same split from the same seed
    assert len({tuple(half_split(10, seed=s)[0]) for s in range(6)}) > 1  # the seed matters
    assert half_split(7, seed=0)[0].__len__() == 4  # A takes the odd class
    datasets = {
        side: data.build_datasets(
            small_config(
                source="fashion_mnist", root=str(fashion_root), classes=f"half:{side}", class_seed=3
            ),
            preprocessing,
            seed=0,
        )
        for side in "AB"
    }
    assert datasets["A"].class_names == [NAMES[i] for i in half_a]
    assert datasets["B"].class_names == [NAMES[i] for i in half_b]
    for side in "AB":
        counts = np.bincount(datasets[side].train.labels, minlength=5).tolist()
        assert counts == [TRAIN_PER_CLASS] * 5


def test_bad_selections_are_one_clear_error():
    with pytest.raises(
        ConfigError, match=r"unknown class 'Sneakers'.*0='T-shirt/top'.*9='Ankle boot'"
    ):
        resolve_classes("Sneaker,Sneakers", NAMES)
    with pytest.raises(ConfigError, match="out of range 0..9"):
        resolve_classes("10", NAMES)
    with pytest.raises(ConfigError, match="more than once"):
        resolve_classes("Bag,8", NAMES)
    with pytest.raises(ConfigError, match="'half:A' or 'half:B'"):
        resolve_classes("half:C", NAMES)
    assert resolve_classes(None, NAMES) == list(range(10))


def test_a_bad_class_name_is_refused_by_config_validation(small_config):
    """Before any data is read (and so before any point of a sweep starts)."""
    from tljax.train.defaults import default_config
    from tljax.train.validate import validate_config

    config = default_config()
    config.data.classes = "Trouser,Sneakers"
    with pytest.raises(ConfigError, match=r"unknown class 'Sneakers'.*7='Sneaker'"):
        validate_config(config)
    config.data.classes = "half:B"
    validate_config(config)
    config.data.source, config.data.root, config.data.classes = "image_folder", "/data", "half:X"
    with pytest.raises(ConfigError, match="'half:A' or 'half:B'"):
        validate_config(config)
    config.data.classes = "cat,dog"  # folder names are only known once the folder is indexed
    validate_config(config)
