r"""Issue 9 §4b: the seeds' table "very similar / very different source × very little / a lot of data".

Target: Fashion-MNIST half B (class_seed 0: T-shirt/top, Pullover, Dress, Bag, Ankle boot), scored on
its 5,000 test images. Recipes scratch, linear_probe, feature_extractor, finetune_top, finetune_all at
10, 100, 1,000 labelled images per class and all 6,000, from
  * a **different** source (phase `different`): EfficientNet-Lite0 with its real ImageNet weights,
    32 px, the recipes' own settings (`configs/fashion_mnist_common.py`);
  * a **similar** source (phase `similar`): the CaffeNet-like baseA of §4a (phase `source`: half A,
    the settings of `configs/transfer.py` scale cpu, seed 0 — the same run as the 4a sweep's
    `base-r0/half=A,seed=0`), 28 px, AdamW 1e-3, batch 64.
The report draws `figures/data_size.png` (accuracy vs images per class, a line per recipe, a panel per
source) and writes the 2×2 table `figures/table_2x2.md` (best recipe per cell).

    python -m tljax.sweep --sweep=configs/sweeps/similar_different.py --root=/tmp/sweeps         # 41 runs
    python -m tljax.sweep --sweep=configs/sweeps/similar_different.py:quick --root=/tmp/sweeps   # 5 runs

CPU budget: training steps per data size 60 / 155 / 300 / 400 (10 / 100 / 1,000 / all images per
class: ≈ 20, 5, 1.3 and 0.1 epochs for the Lite0 batch of 32 — the full set gets a fixed step budget,
not epochs); linear probes on the `pool` tap (Lite0) and `relu7` (CaffeNet). Measured on a 2-core
machine shared with other jobs (load 10–14), all 41 points, run in parts with `--only`: the source and
the 20 `similar` points ≈ 42 min at nice 5 beside the Fig.-2 sweep, the 20 Lite0 `different` points
≈ 16 min with `--workers=2` (README: the tables; best at 10 / 6,000 per class: finetune_top 75.0 /
91.5% from ImageNet Lite0, scratch 81.2 / 94.8% with the similar source).
`quick`: the similar source, 10 images per class, scratch / feature_extractor / finetune_all, few
steps, 40 test images per class.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tljax.experiments import spec
from tljax.experiments.transfer_figures import (
    best_recipe_table,
    data_size_series,
    plot_data_size,
)

# Configs load by file path, not as a package: the shared Lite0 experiment sits in configs/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402

PER_CLASS_ALL = 6000
# label: (images per class, training steps)
DATA_SIZES = {"10": (10, 60), "100": (100, 155), "1000": (1000, 300), "all": (None, 400)}
RECIPES = {
    "scratch": {"recipe": "scratch", "weights.name": None},
    "linear_probe": {"recipe": "linear_probe"},
    "feature_extractor": {"recipe": "feature_extractor"},
    "finetune_top": {"recipe": "finetune_top", "optim.trainable_stages": 3},
    "finetune_all": {"recipe": "finetune_all", "optim.backbone_lr_mult": 0.1},
}
# The CaffeNet-like net's settings of configs/transfer.py (scale cpu).
CAFFENET = {
    "model.name": "caffenet",
    "data.image_size": 28,
    "data.resize_size": 28,
    "data.augment.enabled": False,
    "optim.lr": 1e-3,
    "train.batch_size": 64,
    "train.eval_batch_size": 500,
    "train.precise_bn_batches": 0,
    "probe.taps": ("relu7",),
}


def _base():
    config = fashion_mnist_lite0_config("finetune_all", "shots=10")
    config.weights.preprocessing = "efficientnet_lite0"  # scratch runs see the same inputs
    config.data.classes = "half:B"
    config.data.class_seed = 0
    config.train.steps = 60
    config.probe.taps = ("pool",)
    config.probe.C = 0.1
    config.probe.batch_size = 200
    config.lock()
    return config


def _sizes(labels: list[str], steps_scale: float = 1.0) -> spec.Points:
    return spec.axis(
        "shots",
        {
            label: {
                "data.train_per_class": DATA_SIZES[label][0],
                "train.steps": max(4, int(DATA_SIZES[label][1] * steps_scale)),
            }
            for label in labels
        },
    )


def get_sweep(arg: str | None = None) -> spec.Sweep:
    """The 4b sweep (`arg=None`) or its `quick` smoke version."""
    if arg not in (None, "quick"):
        raise ValueError(f"sweep argument {arg!r}: use nothing or 'quick'")
    quick = arg == "quick"
    recipes = (
        {k: RECIPES[k] for k in ("scratch", "feature_extractor", "finetune_all")}
        if quick
        else RECIPES
    )
    grid = spec.product(
        spec.axis("recipe", recipes),
        _sizes(["10"], steps_scale=0.25) if quick else _sizes(list(DATA_SIZES)),
    )
    test_subset = {"data.test_per_class": 40} if quick else {}
    source = {
        **CAFFENET,
        **test_subset,
        "recipe": "scratch",
        "weights.name": None,
        "data.classes": "half:A",
        "data.train_per_class": 200,
        "train.steps": 16 if quick else 300,  # configs/transfer.py's scale cpu
    }
    similar = {**CAFFENET, **test_subset, "weights.name": "run:{source/default}"}
    phases = [spec.Phase("source", spec.product(), overrides=source)]
    if not quick:
        phases.append(spec.Phase("different", grid, overrides=test_subset))
    phases.append(spec.Phase("similar", grid, depends_on=("source",), overrides=similar))
    return spec.Sweep(
        name="similar_different" + ("_quick" if quick else ""),
        base=_base(),
        phases=phases,
        metric="test_accuracy",
        plot=plot_report,
    )


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's rows in `plot_data_size`'s terms (the source is the phase)."""
    names = {"different": "different (ImageNet, Lite0)", "similar": "similar (baseA, CaffeNet)"}
    return [
        {**row, "source": names[row["phase"]], "train_per_class_all": PER_CLASS_ALL}
        for row in rows
        if row.get("phase") in names
    ]


def plot_report(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The report hook: the figure and the 2×2 table, from whatever has finished."""
    selected = table_rows(rows)
    series = data_size_series(selected)
    if not series:
        return []
    figure = plot_data_size(selected, Path(out_dir) / "data_size.png")
    table = Path(out_dir) / "table_2x2.md"
    table.write_text(best_recipe_table(series, little=10, a_lot=PER_CLASS_ALL) + "\n")
    return [figure, table]
