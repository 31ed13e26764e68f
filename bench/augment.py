"""Augmentation throughput: tljax's on-device RandAugment and AugMix vs timm and torchvision, same images.

    PYTHONPATH=$PWD .venv/bin/python bench/augment.py               # 224², batch 64 (the README numbers)
    PYTHONPATH=$PWD .venv/bin/python bench/augment.py --smoke       # seconds: 32², batch 4, 1 repeat
    PYTHONPATH=$PWD .venv/bin/python bench/augment.py --figure      # also bench/figures/augment_ops.png

Images: real photos (scikit-image's astronaut, chelsea, coffee, rocket, ...) resized to the size and
repeated to the batch. tljax: one jitted call on the whole uint8-derived float batch `[B, S, S, 3]`,
timed after a warm-up (compilation excluded and reported apart), `block_until_ready`. timm 1.0.31
(`pip install timm==1.0.31`, bench only; `rand-m9-n2-mstd0.5-inc1`, `augmix-m3-w3`) and torchvision
(`v2.RandAugment(2, 9)`, `v2.AugMix(severity=3)`) run per image, as their data loaders do, on PIL images
(timm) and uint8 CHW tensors (torchvision), in this process (one worker). Reported: images/s of each and
the ratio tljax / reference. Settings match where the libraries allow (timm applies each RandAugment op
with probability 0.5, as tljax's default; torchvision always applies).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from tljax.data.augment import augmix, mix, ops, randaugment

FIGURES = Path(__file__).with_name("figures")


def photos(size: int, batch: int) -> np.ndarray:
    """`batch` real photos, uint8 `[B, size, size, 3]` (scikit-image's samples, cycled)."""
    import skimage.data

    sources = [
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.rocket(),
        skimage.data.immunohistochemistry(),
        np.stack([skimage.data.camera()] * 3, -1),
    ]
    resized = [np.asarray(Image.fromarray(s).resize((size, size), Image.BILINEAR)) for s in sources]
    return np.stack([resized[i % len(resized)] for i in range(batch)])


def _rate(fn, batch: int, repeats: int) -> float:
    """Images per second of `fn()` (which processes `batch` images), best of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return batch / best


def bench_tljax(images: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    unit = jax.device_put(images.astype(np.float32) / 255.0)
    programs = {
        "randaugment": jax.jit(
            lambda k, x: randaugment.randaugment(k, x, randaugment.RandAugmentConfig())
        ),
        "augmix": jax.jit(lambda k, x: augmix.augmix(k, x, augmix.AugMixConfig())),
    }
    results = {}
    for name, program in programs.items():
        start = time.perf_counter()
        program(jax.random.key(0), unit).block_until_ready()
        compile_s = time.perf_counter() - start
        keys = iter(jax.random.split(jax.random.key(1), repeats))
        rate = _rate(
            lambda p=program, k=keys: p(next(k), unit).block_until_ready(), len(images), repeats
        )
        results[name] = {"images_per_s": rate, "compile_s": compile_s}
    return results


def bench_torchvision(images: np.ndarray, repeats: int) -> dict[str, float]:
    import torch
    from torchvision.transforms import v2

    tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) for image in images]
    transforms = {
        "randaugment": v2.RandAugment(num_ops=2, magnitude=9),
        "augmix": v2.AugMix(severity=3),
    }
    return {
        name: _rate(lambda t=t: [t(x) for x in tensors], len(images), repeats)
        for name, t in transforms.items()
    }


def bench_timm(images: np.ndarray, repeats: int) -> dict[str, float] | None:
    try:
        from timm.data.auto_augment import augment_and_mix_transform, rand_augment_transform
    except ImportError:
        return None
    size = images.shape[1]
    hparams = {"translate_const": int(size * 0.45), "img_mean": (128, 128, 128)}
    pils = [Image.fromarray(image) for image in images]
    transforms = {
        "randaugment": rand_augment_transform("rand-m9-n2-mstd0.5-inc1", hparams),
        "augmix": augment_and_mix_transform("augmix-m3-w3", hparams),
    }
    return {
        name: _rate(lambda t=t: [t(p) for p in pils], len(images), repeats)
        for name, t in transforms.items()
    }


def figure(path: Path) -> None:
    """A grid: each op at magnitude 0.7 and each family on three real photos (64²)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = photos(64, 3)
    unit = jax.numpy.asarray(images, np.float32) / 255.0
    key = jax.random.key(0)
    columns: list[tuple[str, np.ndarray]] = [("original", np.asarray(unit))]
    for name in randaugment.STANDARD_OPS:
        op = jax.jit(jax.vmap(ops.OPS[name], in_axes=(0, None, None)))
        columns.append((name, np.asarray(op(unit, 0.7, key))))
    columns.append(
        (
            "RandAugment\nN=2 M=9",
            np.asarray(randaugment.randaugment(key, unit, randaugment.RandAugmentConfig(prob=1.0))),
        )
    )
    columns.append(("AugMix\nw3 sev3", np.asarray(augmix.augmix(key, unit, augmix.AugMixConfig()))))
    for label, config in (
        ("mixup α=0.8", mix.MixConfig(mixup_alpha=0.8, cutmix_alpha=0.0, mode="elem")),
        ("CutMix α=1", mix.MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem")),
    ):
        mixed, _ = mix.mix_batch(key, unit, jax.numpy.arange(3), 3, config)
        columns.append((label, np.asarray(mixed)))
    rows = len(images)
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.2 * len(columns), 1.35 * rows))
    for column, (label, batch) in enumerate(columns):
        for row in range(rows):
            axis = axes[row, column]
            axis.imshow(np.clip(batch[row], 0, 1))
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, column].set_title(label, fontsize=6)
    fig.suptitle(
        "tljax.data.augment: each op at magnitude 0.7 (signed ops: the key's sign), then each family",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    # A 256-colour palette keeps the PNG small enough for the repository (a third of the size).
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long run: 32², batch 4, 1 repeat"
    )
    parser.add_argument("--figure", action="store_true", help="write bench/figures/augment_ops.png")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch, args.repeats = 32, 4, 1
    if args.figure:
        figure(FIGURES / "augment_ops.png")
    images = photos(args.size, args.batch)
    tl = bench_tljax(images, args.repeats)
    references = {"torchvision": bench_torchvision(images, args.repeats)}
    timm_rates = bench_timm(images, args.repeats)
    if timm_rates is not None:
        references["timm"] = timm_rates
    device = jax.devices()[0]
    print(
        f"{args.batch} images {args.size}², best of {args.repeats}; jax on {device.platform} "
        f"({device.device_kind}), {os.cpu_count()} CPUs visible"
    )
    print(
        f"{'method':12s} {'tljax img/s':>12s} {'compile s':>10s} "
        + " ".join(f"{n + ' img/s':>18s} {'ratio':>6s}" for n in references)
    )
    for name in ("randaugment", "augmix"):
        line = f"{name:12s} {tl[name]['images_per_s']:12.1f} {tl[name]['compile_s']:10.1f} "
        line += " ".join(
            f"{rates[name]:18.1f} {tl[name]['images_per_s'] / rates[name]:6.2f}"
            for rates in references.values()
        )
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"size": args.size, "batch": args.batch, "tljax": tl, **references}, indent=1
            )
        )


if __name__ == "__main__":
    main()
