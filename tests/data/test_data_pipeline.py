"""Pipelines on real Fashion-MNIST: few-shot subsets, seeded order, checkpoint/resume of the iterator,
augmentation hooks, config locking, and the tfds source (missing, unprepared, and a stand-in module)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import tljax.data as data
from tljax.data import augment
from tljax.errors import DataError


@pytest.fixture
def fashion(small_config, preprocessing):
    """Build Fashion-MNIST at 16 px with config overrides."""

    def build(seed: int = 0, **overrides) -> data.Datasets:
        return data.build_datasets(small_config(**overrides), preprocessing, seed=seed)

    return build


def _take(iterator, count: int) -> list[dict[str, np.ndarray]]:
    return [next(iterator) for _ in range(count)]


def _same(first: list[dict], second: list[dict]) -> bool:
    return all(
        np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
        for a, b in zip(first, second, strict=True)
    )


def test_fashion_mnist_batches(fashion) -> None:
    datasets = fashion(train_per_class=3, test_per_class=2)
    assert datasets.class_names == list(data.FASHION_MNIST_CLASSES) and datasets.num_classes == 10
    assert (datasets.train.num_examples, datasets.val, datasets.test.num_examples) == (30, None, 20)
    batch = next(datasets.train.iterator(8, shuffle=True, seed=0))
    assert batch["image"].shape == (8, 16, 16, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    # Gray source replicated to 3 channels.
    np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])
    # Evaluation without augmentation: the 28→16 resize of the real pixels, in index order.
    evaluated = list(datasets.test.iterator(20, epochs=1))
    assert len(evaluated) == 1
    np.testing.assert_array_equal(evaluated[0]["label"], datasets.test.labels)
    images, _ = data.load_idx_split(data.idx.FASHION_MNIST_DIR, "test")
    from PIL import Image

    first = np.asarray(
        Image.fromarray(images[datasets.test.indices[0]]).resize((16, 16), Image.BILINEAR)
    )
    np.testing.assert_allclose(evaluated[0]["image"][0, ..., 1], (first - 127.0) / 128.0, atol=1e-6)


def test_few_shot_is_balanced_seed_stable_and_nested(fashion) -> None:
    five = fashion(seed=7, train_per_class=5)
    np.testing.assert_array_equal(np.bincount(five.train.labels, minlength=10), [5] * 10)
    np.testing.assert_array_equal(
        five.train.indices, fashion(seed=7, train_per_class=5).train.indices
    )
    assert not np.array_equal(five.train.indices, fashion(seed=8, train_per_class=5).train.indices)
    fifty = fashion(seed=7, train_per_class=50)
    np.testing.assert_array_equal(np.bincount(fifty.train.labels, minlength=10), [50] * 10)
    assert set(five.train.indices) <= set(fifty.train.indices)


def test_validation_carved_from_train(fashion) -> None:
    datasets = fashion(seed=1, train_per_class=10, val_per_class=4)
    np.testing.assert_array_equal(np.bincount(datasets.val.labels, minlength=10), [4] * 10)
    assert not set(datasets.val.indices) & set(datasets.train.indices)
    assert datasets.val.source is datasets.train.source
    # The validation set does not depend on the few-shot N.
    np.testing.assert_array_equal(
        datasets.val.indices, fashion(seed=1, train_per_class=20, val_per_class=4).val.indices
    )
    by_fraction = fashion(seed=1, val_fraction=0.1)
    np.testing.assert_array_equal(np.bincount(by_fraction.val.labels, minlength=10), [600] * 10)
    assert by_fraction.train.num_examples == 54000


def test_few_shot_asking_too_much_names_the_class(tmp_path, small_config, preprocessing) -> None:
    from PIL import Image

    for name, count in (("many", 5), ("few", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (4, 4)).save(tmp_path / name / f"{i}.png")
    config = small_config(
        source="image_folder", root=str(tmp_path), test_fraction=0.0, train_per_class=3
    )
    with pytest.raises(ValueError, match="class 'few' has 2 examples"):
        data.build_datasets(config, preprocessing, seed=0)


@pytest.mark.parametrize("augmented", [True, False])
def test_same_seed_same_order_other_seed_other_order(fashion, augmented) -> None:
    split = fashion(train_per_class=4).train
    make = lambda seed: split.iterator(8, shuffle=True, seed=seed, augment=augmented)  # noqa: E731
    first, again, other = _take(make(0), 6), _take(make(0), 6), _take(make(1), 6)
    assert _same(first, again)
    assert not _same(first, other)
    # Epochs are reshuffled: 40 examples, batches 0-4 are epoch 1 and 5-9 epoch 2.
    ten = _take(make(0), 10)
    epoch_one = np.concatenate([b["label"] for b in ten[:5]])
    epoch_two = np.concatenate([b["label"] for b in ten[5:]])
    np.testing.assert_array_equal(np.bincount(epoch_one), [4] * 10)
    assert not np.array_equal(epoch_one, epoch_two)


def test_augmentation_changes_pixels_not_labels(fashion) -> None:
    split = fashion(train_per_class=2).train
    plain = next(split.iterator(20, shuffle=True, seed=0, augment=False))
    augmented = next(split.iterator(20, shuffle=True, seed=0))
    np.testing.assert_array_equal(plain["label"], augmented["label"])
    assert not np.allclose(plain["image"], augmented["image"])


@pytest.mark.parametrize("source", ["fashion", "folder"])
def test_iterator_state_resumes_at_the_same_next_batch(
    fashion, messy_folder, small_config, preprocessing, source
) -> None:
    if source == "fashion":
        split = fashion(train_per_class=3).train  # 30 examples, batch 8: resumes across epoch ends
    else:
        config = small_config(
            source="image_folder", root=str(messy_folder.root), test_fraction=0.0, num_workers=2
        )
        split = data.build_datasets(config, preprocessing, seed=0).train
    iterator = split.iterator(8, shuffle=True, seed=5, drop_remainder=True)
    _take(iterator, 5)
    state = iterator.get_state()
    expected = _take(iterator, 4)
    resumed = split.iterator(8, shuffle=True, seed=5, drop_remainder=True)
    resumed.set_state(state)
    assert _same(_take(resumed, 4), expected)


def test_workers_do_not_change_the_stream(messy_folder, small_config, preprocessing) -> None:
    streams = []
    for workers in (0, 2):
        config = small_config(
            source="image_folder",
            root=str(messy_folder.root),
            test_fraction=0.0,
            num_workers=workers,
        )
        split = data.build_datasets(config, preprocessing, seed=0).train
        streams.append(_take(split.iterator(4, shuffle=True, seed=3), 6))
    assert _same(*streams)


def test_eval_iterator_keeps_the_remainder(fashion) -> None:
    split = fashion(test_per_class=3).test
    sizes = [len(b["label"]) for b in split.iterator(8, epochs=1)]
    assert sizes == [8, 8, 8, 6]
    assert [len(b["label"]) for b in split.iterator(8, epochs=1, drop_remainder=True)] == [8, 8, 8]
    assert sum(len(b["label"]) for b in split.iterator(8, epochs=2)) == 60


def test_batch_and_example_op_hooks(fashion, monkeypatch) -> None:
    def count_ones(augment_config):
        def op(batch, rng):
            return {**batch, "coin": rng.integers(0, 2, size=len(batch["label"]))}

        return op

    def blackout(augment_config):
        return lambda image, rng: np.zeros_like(image)

    monkeypatch.setitem(augment.BATCH_OPS, "coin", count_ones)
    monkeypatch.setitem(augment.EXAMPLE_OPS, "blackout", blackout)
    split = fashion(
        train_per_class=2,
        **{"augment.batch_ops": ("coin",), "augment.example_ops": ("hflip", "blackout")},
    ).train
    first = next(split.iterator(10, shuffle=True, seed=0))
    np.testing.assert_allclose(first["image"], -127.0 / 128.0)  # every image went through blackout
    np.testing.assert_array_equal(
        first["coin"], next(split.iterator(10, shuffle=True, seed=0))["coin"]
    )
    assert "coin" not in next(split.iterator(10, augment=False))
    with pytest.raises(ValueError, match="unknown example op 'nope'"):
        fashion(**{"augment.example_ops": ("nope",)})


def test_hflip_mirrors() -> None:
    config = data.default_data_config().augment
    config.hflip_prob = 1.0
    flip = augment.EXAMPLE_OPS["hflip"](config)
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(flip(image, np.random.default_rng(0)), image[:, ::-1])


def test_random_resized_crop_box_is_inside_and_seeded() -> None:
    from tljax.data import preprocess

    boxes = [
        preprocess.sample_resized_crop_box(40, 30, np.random.default_rng(s)) for s in range(200)
    ]
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 0.08 * 1200 * 0.9 <= (right - left) * (bottom - top) <= 1200
    assert boxes[0] == preprocess.sample_resized_crop_box(40, 30, np.random.default_rng(0))


def test_geometry_follows_preprocessing_with_override(preprocessing) -> None:
    assert data.resolve_geometry(preprocessing, None, None, None) == data.Geometry(
        256, 224, "bilinear"
    )
    assert data.resolve_geometry(preprocessing, 112, None, None) == data.Geometry(
        128, 112, "bilinear"
    )
    assert data.resolve_geometry(preprocessing, 64, 64, "bicubic") == data.Geometry(
        64, 64, "bicubic"
    )
    with pytest.raises(ValueError, match="no image size"):
        data.resolve_geometry(None, None, None, None)


def test_config_is_locked_and_overridable() -> None:
    config = data.default_data_config()
    config.image_size = 96
    config.root = "/somewhere"
    config.augment.hflip_prob = 0.0
    with pytest.raises(AttributeError, match="image_size"):
        config.imgae_size = 96
    with pytest.raises(AttributeError):
        config.augment.mixup = 0.2


def test_unknown_source(small_config, preprocessing) -> None:
    with pytest.raises(ValueError, match="not in"):
        data.build_datasets(small_config(source="csv"), preprocessing, seed=0)


def test_tfds_missing_says_what_to_install(small_config, preprocessing, monkeypatch) -> None:
    # A None entry makes `import tensorflow_datasets` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"pip install tensorflow-datasets.*tfds build cifar10"):
        data.build_datasets(small_config(source="tfds", name="cifar10"), preprocessing, seed=0)


def _fake_tfds(prepared: bool) -> types.ModuleType:
    rng = np.random.default_rng(0)

    class FakeSource:
        class dataset_info:  # noqa: N801 - mimics tfds' attribute
            features = {"label": types.SimpleNamespace(names=["neg", "pos"])}

        def __init__(self, split: str):
            self.examples = [
                {"image": rng.integers(0, 255, (12, 10, 3), dtype=np.uint8), "label": i % 2}
                for i in range(12 if split == "train" else 4)
            ]

        def __len__(self) -> int:
            return len(self.examples)

        def __getitem__(self, index: int) -> dict:
            return self.examples[index]

    def data_source(name: str, *, split: str, data_dir=None):
        if not prepared:
            raise FileNotFoundError(f"no prepared {name}")
        return FakeSource(split)

    module = types.ModuleType("tensorflow_datasets")
    module.data_source = data_source
    return module


def test_tfds_unprepared_says_how_to_prepare(small_config, preprocessing, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(prepared=False))
    with pytest.raises(DataError, match="tfds build cifar10"):
        data.build_datasets(small_config(source="tfds", name="cifar10"), preprocessing, seed=0)


def test_tfds_data_source_adapter(small_config, preprocessing, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(prepared=True))
    config = small_config(source="tfds", name="fake", train_per_class=3, val_per_class=2)
    datasets = data.build_datasets(config, preprocessing, seed=0)
    assert datasets.class_names == ["neg", "pos"]
    sizes = (datasets.train.num_examples, datasets.val.num_examples, datasets.test.num_examples)
    assert sizes == (6, 4, 4)
    batch = next(datasets.test.iterator(4, epochs=1))
    assert batch["image"].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(batch["label"], [0, 1, 0, 1])
