"""What do a network's channels respond to? Feature visualisation and Zeiler–Fergus top-9 patches.

    # Activation maximisation: one image per channel of a tap, tiled into one PNG.
    python -m tljax.visualize --mode=featvis --model=efficientnet_lite0 --tap=blocks.10 \\
        --channels=0-7 --out=/tmp/imageopt_out/featvis_blocks10.png

    # Top-9 patches of a few channels at five depths ("Layer 1 … Layer 5"), over offline photos.
    python -m tljax.visualize --mode=top9 --model=efficientnet_lite0 --data=photos \\
        --taps=blocks.0,blocks.2,blocks.4,blocks.6,blocks.8 --channels=0-11 --out=/tmp/imageopt_out/top9.png

`--weights`: "default" (the model's registered weights; EfficientNet-Lite0's install offline), another
registered name, a .pth/.safetensors file (e.g. torchvision's `vgg19-dcbb9e9d.pth`), or "random".
`--data` for top9: "photos" (the ImageNet photos shipped with foolbox + scikit-image / scikit-learn /
matplotlib sample photos, each also as four quadrant crops), "foolbox", "fashion_mnist" (tljax.data's
test split), a folder of images, or comma-separated image files.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

flags.DEFINE_enum(
    "mode", "featvis", ["featvis", "top9"], "Activation maximisation or top-9 patches."
)
flags.DEFINE_string("model", "efficientnet_lite0", "Backbone (a tljax.models name).")
flags.DEFINE_string(
    "weights", "default", "'default', a registered weights name, a file path, or 'random'."
)
flags.DEFINE_string("tap", "blocks.10", "featvis: the tap whose channels are visualised.")
flags.DEFINE_string(
    "taps", "blocks.0,blocks.2,blocks.4,blocks.6,blocks.8", "top9: taps, one figure row each."
)
flags.DEFINE_string("channels", "0-7", "Channels: '0,3,9' or a range '0-7' (inclusive).")
flags.DEFINE_enum(
    "objective", "channel", ["channel", "unit"], "featvis: channel mean or the centre unit."
)
flags.DEFINE_integer("size", 128, "featvis: image side in pixels.")
flags.DEFINE_integer("steps", 256, "featvis: optimisation steps.")
flags.DEFINE_float("lr", 0.05, "featvis: Adam learning rate on the Fourier parameters.")
flags.DEFINE_bool("transforms", True, "featvis: random pad/jitter/scale/rotate each step.")
flags.DEFINE_float(
    "decay_power", 1.5, "featvis: 1/f^p spectrum scaling (lucid: 1.0; higher = smoother)."
)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string(
    "data", "photos", "top9: 'photos', 'foolbox', 'fashion_mnist', a folder, or files."
)
flags.DEFINE_integer(
    "input_size", 224, "top9: network input side (images are centre-cropped + resized)."
)
flags.DEFINE_integer("k", 9, "top9: patches per channel.")
flags.DEFINE_integer("batch_size", 16, "top9: images per forward pass.")
flags.DEFINE_integer("max_images", 0, "top9: use at most this many images (0 = all).")
flags.DEFINE_string("out", None, "Output PNG (top9 also writes <out stem>_<tap>.png per layer).")

FLAGS = flags.FLAGS

_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "ihc.png",
)


def parse_channels(text: str) -> list[int]:
    """'0,3,9' → [0, 3, 9]; '0-7' → [0, …, 7]; mixed '0-2,10' works too."""
    channels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            channels.extend(range(int(low), int(high) + 1) if sep else [int(low)])
        except ValueError:
            raise ValueError(f"bad --channels entry {part!r}: use '0,3,9' or '0-7'") from None
    if not channels:
        raise ValueError("no channels given")
    return channels


def _package_dir(name: str) -> Path | None:
    """Where an installed package's files are, without importing it (foolbox's import pulls in eagerpy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def offline_photo_files(which: str = "photos") -> list[Path]:
    """Real photos that install offline: foolbox's 20 ImageNet photos, plus (for 'photos') sample photos
    shipped in scikit-image, scikit-learn and matplotlib wheels. Missing packages are skipped."""
    files: list[Path] = []
    foolbox = _package_dir("foolbox")
    if foolbox is not None:
        files += sorted((foolbox / "data").glob("imagenet_*.jpg"))
    if which == "photos":
        skimage = _package_dir("skimage")
        if skimage is not None:
            files += [
                skimage / "data" / f for f in _SKIMAGE_PHOTOS if (skimage / "data" / f).exists()
            ]
        sklearn = _package_dir("sklearn")
        if sklearn is not None:
            files += sorted((sklearn / "datasets" / "images").glob("*.jpg"))
        matplotlib = _package_dir("matplotlib")
        if matplotlib is not None:
            hopper = matplotlib / "mpl-data" / "sample_data" / "grace_hopper.jpg"
            files += [hopper] if hopper.exists() else []
    if not files:
        raise FileNotFoundError(
            f"no offline photos found for --data={which} (is foolbox installed?)"
        )
    return files


def _photos_with_quadrants(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """Each photo, then its four quadrants: 5× the images, and the quadrants show detail at 2× scale."""
    from tljax.imageopt.core import load_image

    for path in files:
        image = load_image(path)
        yield image
        h, w = image.shape[0] // 2, image.shape[1] // 2
        for top, left in ((0, 0), (0, w), (h, 0), (h, w)):
            yield image[top : top + h, left : left + w]


def _fashion_mnist_test(preprocessing: Any, input_size: int):
    """tljax.data's Fashion-MNIST test split (Debian `dataset-fashion-mnist`), no augmentation."""
    from tljax import data

    config = data.default_data_config()
    config.source = "fashion_mnist"
    config.image_size = input_size
    config.resize_size = input_size
    config.augment.enabled = False
    return data.build_datasets(config, preprocessing, seed=0).test


def resolve_data(spec: str, preprocessing: Any, input_size: int) -> Any:
    """The `--data` flag → something `topk_patches.scan_top_activations` iterates."""
    if spec == "photos":
        return _photos_with_quadrants(offline_photo_files("photos"))
    if spec == "foolbox":
        return offline_photo_files("foolbox")
    if spec == "fashion_mnist":
        return _fashion_mnist_test(preprocessing, input_size)
    if "," in spec:
        return [Path(p.strip()) for p in spec.split(",") if p.strip()]
    return Path(spec)


def _first(images: Iterator[np.ndarray], max_images: int) -> Iterator[np.ndarray]:
    for i, image in enumerate(images):
        if i >= max_images:
            return
        yield image


def run_featvis(
    *,
    model_name: str,
    weights: str,
    tap: str,
    channels: Sequence[int],
    out: str | os.PathLike,
    size: int = 128,
    steps: int = 256,
    learning_rate: float = 0.05,
    objective: str = "channel",
    transforms: bool = True,
    decay_power: float = 1.5,
    seed: int = 0,
    compare_with_photos: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Optimises one image per channel, writes the grid PNG, and compares with natural photos.

    Returns the `FeatVisResult` and, if photos are available, each channel's objective on the 20 ImageNet
    photos (same size, same objective) and the ratio optimised / best photo.
    """
    from tljax.imageopt import core, featvis

    model, variables, preprocessing = core.load_backbone(model_name, weights, seed=seed)
    transform = featvis.RobustnessTransforms() if transforms else None
    result = featvis.visualize_channels(
        model,
        variables,
        tap,
        channels,
        preprocessing=preprocessing,
        size=size,
        steps=steps,
        learning_rate=learning_rate,
        objective=objective,
        transforms=transform,
        decay_power=decay_power,
        seed=seed,
        progress=progress,
    )
    report: dict[str, Any] = {"result": result}
    labels = [f"{tap}:{c}  {v:.3g}" for c, v in zip(result.channels, result.objective, strict=True)]
    if compare_with_photos:
        try:
            photos = np.stack(
                [
                    core.resize_image(core.load_image(f), (size, size))
                    for f in offline_photo_files("foolbox")
                ]
            )
        except FileNotFoundError:
            photos = None
        if photos is not None:
            natural = featvis.objective_values(
                model,
                variables,
                photos,
                tap,
                result.channels,
                preprocessing=preprocessing,
                objective=objective,
            )
            best = natural.max(axis=0)
            report.update(
                natural_mean=natural.mean(axis=0),
                natural_max=best,
                ratio=result.objective / np.where(best > 0, best, np.nan),
            )
            for j, c in enumerate(result.channels):
                print(
                    f"{tap}:{c}: optimised {result.objective[j]:.3g}, photos mean {natural[:, j].mean():.3g} "
                    f"max {best[j]:.3g}, ratio to best photo {report['ratio'][j]:.2f}x"
                )
            labels = [
                f"{tap}:{c} x{r:.1f}" for c, r in zip(result.channels, report["ratio"], strict=True)
            ]
    grid = featvis.channel_grid(result.images, labels, title=f"{model_name} {tap} ({objective})")
    report["path"] = core.save_image(out, grid)
    print(f"wrote {Path(report['path']).resolve()}  (trace count {result.trace_count})")
    return report


def run_top9(
    *,
    model_name: str,
    weights: str,
    taps: Sequence[str],
    channels: Sequence[int],
    data: Any,
    out: str | os.PathLike,
    input_size: int = 224,
    k: int = 9,
    batch_size: int = 16,
    max_images: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Scans `data` (anything `topk_patches.iterate_images` takes, or a `--data` spec string), renders
    one figure per tap and the stacked "Layer 1 … Layer n" figure. Channels past a tap's width are
    dropped for that tap (early layers are narrower). `max_images` > 0 stops after that many images."""
    import jax
    import jax.numpy as jnp

    from tljax.imageopt import core, topk_patches
    from tljax.imageopt.receptive_field import receptive_fields

    model, variables, preprocessing = core.load_backbone(model_name, weights, seed=seed)
    if isinstance(data, str):
        data = resolve_data(data, preprocessing, input_size)
    if max_images:
        data = _first(topk_patches.iterate_images(data, preprocessing, batch_size), max_images)
    core.check_taps(model, taps)
    hw = (input_size, input_size)
    shapes = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, taps=tuple(taps)),
        variables,
        jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32),
    )
    selections = {}
    for tap in taps:
        width = shapes[tap].shape[-1]
        chosen = [c for c in channels if c < width]
        if not chosen:
            raise ValueError(
                f"none of channels {list(channels)} exist in tap {tap!r} ({width} channels)"
            )
        selections[tap] = chosen
    scan = topk_patches.scan_top_activations(
        model,
        variables,
        data,
        selections,
        input_hw=hw,
        preprocessing=preprocessing,
        k=k,
        batch_size=batch_size,
    )
    fields = receptive_fields(model, taps, hw)
    figures, stacked = topk_patches.render_layers(scan, fields)
    out = Path(out)
    paths = {"all": core.save_image(out, stacked)}
    for tap, figure in figures.items():
        paths[tap] = core.save_image(
            out.with_name(f"{out.stem}_{tap.replace('.', '_')}{out.suffix}"), figure
        )
    print(
        f"scanned {scan.num_images} images (trace count {scan.trace_count}); wrote {Path(paths['all']).resolve()}"
    )
    return {"scan": scan, "fields": fields, "paths": paths}


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.out:
        raise app.UsageError("--out is required")
    channels = parse_channels(FLAGS.channels)
    if FLAGS.mode == "featvis":
        run_featvis(
            model_name=FLAGS.model,
            weights=FLAGS.weights,
            tap=FLAGS.tap,
            channels=channels,
            out=FLAGS.out,
            size=FLAGS.size,
            steps=FLAGS.steps,
            learning_rate=FLAGS.lr,
            objective=FLAGS.objective,
            transforms=FLAGS.transforms,
            decay_power=FLAGS.decay_power,
            seed=FLAGS.seed,
        )
    else:
        taps = [t.strip() for t in FLAGS.taps.split(",") if t.strip()]
        run_top9(
            model_name=FLAGS.model,
            weights=FLAGS.weights,
            taps=taps,
            channels=channels,
            data=FLAGS.data,
            out=FLAGS.out,
            input_size=FLAGS.input_size,
            k=FLAGS.k,
            batch_size=FLAGS.batch_size,
            max_images=FLAGS.max_images,
            seed=FLAGS.seed,
        )


if __name__ == "__main__":
    app.run(main)
