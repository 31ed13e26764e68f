"""Data: sources (image folders, IDX, tfds), seeded few-shot subsets, preprocessing and augmentation,
and grain pipelines with checkpointable iterators. Entry point: `build_datasets`."""

from tljax.data import augment
from tljax.data.config import SOURCES, default_data_config
from tljax.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_idx_split, read_idx, write_idx
from tljax.data.images import IMAGE_EXTENSIONS, load_image
from tljax.data.pipeline import Datasets, Split, build_datasets
from tljax.data.preprocess import Geometry, Normalizer, resolve_geometry
from tljax.data.report import SkipReport

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASSES",
    "SOURCES",
    "Datasets",
    "Geometry",
    "Normalizer",
    "SkipReport",
    "Split",
    "augment",
    "build_datasets",
    "default_data_config",
    "load_idx_split",
    "load_image",
    "read_idx",
    "resolve_geometry",
    "write_idx",
]
