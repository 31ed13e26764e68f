"""Input pipeline throughput: tljax's ImageFolder grain pipeline vs a PyTorch DataLoader, same work.

    python bench/input_pipeline.py                    # 320 real JPEGs, batch 32, 2 workers, 224²
    python bench/input_pipeline.py --workers=8 --images=2000 --step=efficientnet_lite0
    python bench/input_pipeline.py --smoke            # seconds: a plumbing check, numbers meaningless

The folder is made of real photos that install offline (scikit-image, scikit-learn, matplotlib and the
foolbox ImageNet JPEGs, see OFFLINE.md): random crops with a short side of 256–480 px, re-encoded as JPEG
(quality 90), in 4 class folders — ImageNet-like files. Both loaders decode, take an Inception-style
random-resized crop (scale 0.08–1) resized to 224², flip with p = 0.5, normalise with the ImageNet
mean/std and batch to float32 `[B, 224, 224, 3]` (torch: `[B, 3, 224, 224]`), with the same number of
workers (tljax: grain threads; torch: DataLoader worker processes) and the same batch size. tljax decodes
JPEGs in PIL's draft mode (DCT-domain downscaling to at least the resize size); torch is measured both as
the standard torchvision recipe (full decode) and with the same draft decode, so the ratio is reported
against both. Images/s is over all batches after the first (which includes start-up).

`--step=MODEL` adds the step-time breakdown: a jitted train step of MODEL fed through
`tljax.parallel.DeviceFeeder` (batches copied to the devices ahead of the step), with and without
prefetch: per step, the time the loop waited for data and the time of the step itself.
"""

from __future__ import annotations

import argparse
import json
import os
import site
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _photo_paths() -> list[Path]:
    """Real photos shipped inside installed wheels (none is downloaded)."""
    roots = [Path(p) for p in site.getsitepackages()]
    patterns = [
        "skimage/data/astronaut.png", "skimage/data/chelsea.png", "skimage/data/coffee.png",
        "skimage/data/rocket.jpg", "skimage/data/motorcycle_left.png", "skimage/data/hubble_deep_field.jpg",
        "skimage/data/retina.jpg", "skimage/data/brick.png", "skimage/data/grass.png",
        "skimage/data/gravel.png", "sklearn/datasets/images/china.jpg",
        "sklearn/datasets/images/flower.jpg", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "foolbox/data/imagenet_*.jpg",
    ]  # fmt: skip
    found = sorted({p for root in roots for pattern in patterns for p in root.glob(pattern)})
    if len(found) < 4:
        raise SystemExit("too few offline photos: pip install scikit-image (see launch/setup.sh)")
    return found


def make_folder(root: Path, count: int, seed: int = 0) -> Path:
    """`root/<class>/*.jpg`: `count` JPEGs cut from the offline photos (skipped if already there)."""
    if root.is_dir() and len(list(root.glob("*/*.jpg"))) == count:
        return root
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in _photo_paths()]
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        short = int(rng.integers(256, 481))
        # Upscale small photos (the 224² ImageNet ones) so every file has the short side drawn above.
        factor = max(short / min(width, height), 1.0) * float(rng.uniform(1.0, 1.5))
        scaled = photo.resize((round(width * factor), round(height * factor)), Image.BICUBIC)
        aspect = float(rng.uniform(1.0, 1.5))
        crop_w, crop_h = (
            (round(short * aspect), short) if rng.random() < 0.5 else (short, round(short * aspect))
        )
        crop_w, crop_h = min(crop_w, scaled.width), min(crop_h, scaled.height)
        left = int(rng.integers(0, scaled.width - crop_w + 1))
        top = int(rng.integers(0, scaled.height - crop_h + 1))
        folder = root / f"class{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        scaled.crop((left, top, left + crop_w, top + crop_h)).save(
            folder / f"{index:05d}.jpg", quality=90
        )
    return root


def _rate(batches, batch_size: int) -> tuple[float, int]:
    """Images/s over the batches after the first, and the number of images seen."""
    iterator = iter(batches)
    next(iterator)
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += batch_size
        del batch
    return seen / max(time.perf_counter() - start, 1e-9), seen


def tljax_split(root: Path, workers: int, size: int):
    from tljax.data.config import default_data_config
    from tljax.data.pipeline import build_datasets

    config = default_data_config()
    config.source = "image_folder"
    config.root = str(root)
    config.image_size = size
    config.resize_size = round(size * 256 / 224)
    config.test_fraction = 0.0
    config.num_workers = workers
    config.prefetch_batches = 2
    config.verify_images = False
    config.augment.enabled = True
    config.augment.random_resized_crop = True
    config.augment.scale = (0.08, 1.0)

    class Preprocessing:
        mean, std, resize, crop, interpolation = MEAN, STD, config.resize_size, size, "bilinear"

    return build_datasets(config, Preprocessing(), seed=0).train


def tljax_rate(root: Path, batch: int, workers: int, size: int, epochs: int) -> float:
    split = tljax_split(root, workers, size)
    iterator = split.iterator(batch, shuffle=True, seed=0, epochs=epochs, drop_remainder=True)
    return _rate(iterator, batch)[0]


def torch_rate(root: Path, batch: int, workers: int, size: int, epochs: int, draft: bool) -> float:
    import torch
    import torchvision
    from torchvision import transforms

    torch.set_num_threads(1)  # the workers do the work; as in a real training script's loader

    def loader(path: str) -> Image.Image:
        image = Image.open(path)
        if draft:
            image.draft("RGB", (round(size * 256 / 224),) * 2)
        return image.convert("RGB")

    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
            transforms.ConvertImageDtype(torch.float32),
            transforms.Normalize([m / 255 for m in MEAN], [s / 255 for s in STD]),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(str(root), transform=transform, loader=loader)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=len(dataset) * epochs)
    data = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )  # fmt: skip
    return _rate(data, batch)[0]


def step_breakdown(root: Path, model_name: str, batch: int, workers: int, size: int, steps: int):
    """Per-step data wait and step time (medians, ms) with prefetch 2 and 0 (DeviceFeeder)."""
    import jax
    import optax

    from tljax import models, optim, parallel
    from tljax.train import TrainState, make_train_step

    placement = parallel.Placement.from_config({})
    model = models.get(model_name, num_classes=4)
    variables = jax.device_get(
        jax.jit(model.init)(jax.random.key(0), np.zeros((1, size, size, 3), np.float32))
    )
    tx = optax.sgd(0.01)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    state, shardings = placement.create_state(
        lambda p, b: TrainState.create(p, b, tx.init(p), 0), params, params, batch_stats
    )
    paths = optim.assign_groups(params, [(".*", {})]).trainable_paths()
    step = make_train_step(
        model, tx, paths, state_sharding=shardings, batch_sharding=placement.batch
    )
    split = tljax_split(root, workers, size)
    rows = {}
    for prefetch in (2, 0):
        iterator = split.iterator(batch, shuffle=True, seed=0, epochs=None, drop_remainder=True)
        feeder = parallel.DeviceFeeder(iterator, placement.batch, prefetch)
        waits, computes = [], []
        for index in range(steps + 1):
            start = time.perf_counter()
            data, _ = next(feeder)
            jax.block_until_ready(data)
            waited = time.perf_counter() - start
            state, metrics = step(state, data)
            jax.block_until_ready(metrics)
            if index:  # the first includes compilation
                waits.append(waited)
                computes.append(time.perf_counter() - start - waited)
        rows[prefetch] = {
            "wait_ms": 1e3 * float(np.median(waits)),
            "step_ms": 1e3 * float(np.median(computes)),
        }
        del iterator, feeder
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; best of each")
    parser.add_argument("--step", default=None, help="a tljax model name for the step breakdown")
    parser.add_argument("--step_batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where to make the JPEG folder")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.batch, args.size, args.epochs, args.repeats = 16, 4, 64, 2, 1
        args.step_batch, args.steps = 4, 2
    folder = Path(
        args.folder or os.path.join(tempfile.gettempdir(), f"tljax-bench-jpegs-{args.images}")
    )
    make_folder(folder, args.images)
    work = dict(batch=args.batch, workers=args.workers, size=args.size, epochs=args.epochs)
    rates: dict[str, list[float]] = {"tljax": [], "torch": [], "torch_draft": []}
    for _ in range(args.repeats):
        rates["tljax"].append(tljax_rate(folder, **work))
        rates["torch"].append(torch_rate(folder, **work, draft=False))
        rates["torch_draft"].append(torch_rate(folder, **work, draft=True))
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"{args.images} JPEGs ({folder}), batch {args.batch}, {args.workers} workers, {args.size}², "
        f"{args.epochs} epochs, best of {args.repeats}"
    )
    print("| loader | images/s | tljax / loader |\n|---|---|---|")
    for name, label in (
        ("tljax", "tljax ImageFolder (grain)"),
        ("torch", "torch DataLoader + torchvision"),
        ("torch_draft", "torch DataLoader + torchvision, draft decode"),
    ):
        print(f"| {label} | {best[name]:.1f} | {best['tljax'] / best[name]:.2f}× |")
    out = {"args": vars(args), "rates": rates, "best": best}
    if args.step:
        rows = step_breakdown(
            folder, args.step, args.step_batch, args.workers, args.size, args.steps
        )
        print(
            f"\nstep-time breakdown, {args.step} train step, batch {args.step_batch} (median ms/step)"
        )
        print("| prefetch | waiting for data | step |\n|---|---|---|")
        for prefetch, row in rows.items():
            print(f"| {prefetch} | {row['wait_ms']:.1f} | {row['step_ms']:.1f} |")
        out["breakdown"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
