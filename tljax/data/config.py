"""`default_data_config()`: every key the data code reads, with its meaning, locked against typos."""

from __future__ import annotations

import ml_collections

from tljax.data.augment import randaugment

SOURCES = ("fashion_mnist", "mnist", "image_folder", "tfds")


def default_data_config() -> ml_collections.ConfigDict:
    """The data section of a training config, locked: setting an unknown key raises.

    Keys:
      source: one of "fashion_mnist", "mnist", "image_folder", "tfds".
      root: folder of the data. IDX sources: the four (optionally .gz) IDX files, None = the Debian
        Fashion-MNIST folder. image_folder: one sub-folder per class, or train/ [val/] [test/] split
        folders each holding class sub-folders. tfds: the tfds data_dir (None = tfds default).
      name: tfds dataset name (e.g. "cifar10"); train_split / val_split / test_split name tfds splits
        (val_split None = carve from train).
      image_key, label_key: feature names in tfds examples.
      image_size: final square side; None = the weights' crop. resize_size: shorter side before the
        centre crop; None = image_size × the weights' resize/crop ratio (equal to image_size = no crop).
      interpolation: None = the weights' choice ("bilinear", "bicubic", ...).
      classes: None = every class; else a class subset relabelled 0..k-1 (see `tljax.data.classes`):
        comma-separated names or indices ("Trouser,Bag" or "1,8"; new labels in that order), or
        "half:A" / "half:B", a random half drawn with class_seed. Every split follows.
      class_seed: the seed of the "half:" split (the same seed gives the same halves).
      train_per_class: few-shot, N seeded examples per class from train (None = all). Larger N with the
        same seed gives a superset.
      val_per_class / val_fraction: validation carved from train (stratified, seeded) when there is no
        val split; with a val split, val_per_class subsamples it. Both unset = no validation (val None).
      test_fraction: image_folder without split folders: the share carved out as test.
      test_per_class: subsample the test split (None = all; keep None for reported numbers).
      num_workers: decode threads per iterator (threads, not processes: PIL releases the GIL, and
        run-time skips are counted in one shared report). prefetch_batches: batches buffered ahead.
      verify_images: PIL header check of every file at index time (bad files are counted up front).
      augment: training augmentation (see tljax.data.augment); enabled=False trains on centre crops.
        example_ops run per example in the input pipeline (host); batch_ops names host batch ops and the
        on-device "mixup"/"cutmix" (settings in augment.mix, timm's names; label smoothing is
        optim.label_smoothing, folded into the soft targets); image_ops names on-device families run per
        example in the train step, in order: "randaugment" (augment.randaugment: num_ops N, magnitude M
        on the /10 scale, magnitude_std, prob, ops) and "augmix" (augment.augmix: width, depth <= 0 for
        random 1..3, severity, alpha, all_ops, jsd: clean + 2 views with the Jensen-Shannon loss at
        jsd_weight).
    """
    config = ml_collections.ConfigDict()
    config.source = "fashion_mnist"
    config.root = ml_collections.config_dict.placeholder(str)
    config.name = ml_collections.config_dict.placeholder(str)
    config.train_split = "train"
    config.val_split = ml_collections.config_dict.placeholder(str)
    config.test_split = "test"
    config.image_key = "image"
    config.label_key = "label"

    config.image_size = ml_collections.config_dict.placeholder(int)
    config.resize_size = ml_collections.config_dict.placeholder(int)
    config.interpolation = ml_collections.config_dict.placeholder(str)

    config.classes = ml_collections.config_dict.placeholder(str)
    config.class_seed = 0

    config.train_per_class = ml_collections.config_dict.placeholder(int)
    config.val_per_class = ml_collections.config_dict.placeholder(int)
    config.val_fraction = 0.0
    config.test_fraction = 0.2
    config.test_per_class = ml_collections.config_dict.placeholder(int)

    config.num_workers = 2
    config.prefetch_batches = 2
    config.verify_images = True

    config.augment = ml_collections.ConfigDict()
    config.augment.enabled = True
    config.augment.random_resized_crop = True
    config.augment.scale = (0.08, 1.0)
    config.augment.ratio = (3 / 4, 4 / 3)
    config.augment.hflip_prob = 0.5
    config.augment.example_ops = ("hflip",)
    config.augment.batch_ops = ()
    # The JSON of a searched policy (tljax.data.trainable_policy), read by the "searched_policy" op.
    config.augment.policy_file = ""
    config.augment.image_ops = ()
    config.augment.mix = ml_collections.ConfigDict()
    config.augment.mix.mixup_alpha = 0.8
    config.augment.mix.cutmix_alpha = 1.0
    config.augment.mix.prob = 1.0
    config.augment.mix.switch_prob = 0.5
    config.augment.mix.mode = "batch"
    config.augment.randaugment = ml_collections.ConfigDict()
    config.augment.randaugment.num_ops = 2
    config.augment.randaugment.magnitude = 9.0
    config.augment.randaugment.magnitude_std = 0.5
    config.augment.randaugment.prob = 0.5
    config.augment.randaugment.ops = randaugment.STANDARD_OPS
    config.augment.augmix = ml_collections.ConfigDict()
    config.augment.augmix.width = 3
    config.augment.augmix.depth = -1
    config.augment.augmix.severity = 3.0
    config.augment.augmix.alpha = 1.0
    config.augment.augmix.all_ops = False
    config.augment.augmix.jsd = True
    config.augment.augmix.jsd_weight = 12.0

    config.lock()
    return config
