r"""Issue 12's results table: augmentation methods × {finetune_top, scratch} on Fashion-MNIST, then every
finished run on the corruption suite, without adaptation and with AdaBN and TENT.

EfficientNet-Lite0 (`configs/fashion_mnist_common.py`: 32 px, 100 labelled images per class, AdamW 3e-3,
cosine, batch 32, 5 epochs = 155 steps, precise BN), recipes `finetune_top` (3 trainable stages; real
ImageNet weights) and `scratch` (random init, the Lite0 input preprocessing), 3 seeds (the seed also
draws the training subset). Augmentations (every one but `none` on top of random-resized-crop 0.5–1 +
flip, the recipes' default, as timm stacks them):
`none` (resize only), `flip_crop`, `mixup` (α 0.8), `cutmix` (α 1), `randaugment` (N 2, M 9, mstd 0.5,
p 0.5), `augmix_jsd` (width 3, severity 3, JSD weight 12) and `searched` (the Faster AutoAugment policy
given as `:policy=FILE`, searched once by `python -m tljax.policy_search`; without the argument that
row is left out). The clean score of a run is on 100 test images per class (seeded subset).

    python -m tljax.policy_search --config=configs/fashion_mnist_lite0.py --steps=100 --out=P.json
    python -m tljax.sweep --sweep=configs/sweeps/augment_table.py:policy=P.json --root=/tmp/sweeps
    python -m tljax.sweep --sweep=configs/sweeps/augment_table.py:policy=P.json --root=/tmp/sweeps report

The report scores each finished run once (cached in `RUN/robustness.json`): 20 test images per class
(a seeded subset), the 9 corruptions × severities 1–5, AdaBN and TENT (1 Adam step per batch of 100,
reset per corruption set) of the BN layers whose statistics the run estimated on its training data
(`tljax.adapt`: all for scratch, the trained top for finetune_top); it writes
`figures/augment_table.md` (mean ± std over seeds; relative mCE against the `none` run of the same
recipe and seed) and `figures/augment_table.json`. `:quick` is a 4-run smoke version (8 steps).
Results and what they mean: README, "Augmentation and robustness".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tljax import fileio, robustness_table
from tljax.experiments import spec

# Configs load by file path, not as a package: the shared Lite0 experiment sits in configs/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fashion_mnist_common import fashion_mnist_lite0_config  # noqa: E402

RECIPES = {
    "finetune_top": {"recipe": "finetune_top", "optim.trainable_stages": 3},
    "scratch": {"recipe": "scratch", "weights.name": None},
}
METHODS: dict[str, dict[str, Any]] = {
    "none": {"data.augment.enabled": False},
    "flip_crop": {},
    "mixup": {"data.augment.batch_ops": ("mixup",)},
    "cutmix": {"data.augment.batch_ops": ("cutmix",)},
    "randaugment": {"data.augment.image_ops": ("randaugment",)},
    "augmix_jsd": {"data.augment.image_ops": ("augmix",)},
}
SETTINGS = robustness_table.Settings(test_per_class=20, batch_size=100, adapt_layers="trained")


def _base():
    config = fashion_mnist_lite0_config("finetune_top", "shots=100")
    config.weights.preprocessing = "efficientnet_lite0"  # scratch runs see the same inputs
    config.data.test_per_class = 100
    config.lock()
    return config


def _parse(arg: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in ("policy", "quick") or (key == "policy" and not value):
            raise ValueError(f"sweep argument {item!r}: use policy=FILE and/or quick")
        values[key] = value
    return values


def get_sweep(arg: str | None = None) -> spec.Sweep:
    """The table's sweep; `arg`: `policy=FILE` (adds the searched-policy row), `quick` (smoke)."""
    args = _parse(arg)
    methods = dict(METHODS)
    if "policy" in args:
        policy = str(Path(args["policy"]).resolve())
        if not Path(policy).is_file():
            raise ValueError(
                f"policy file {policy} does not exist: run python -m tljax.policy_search first"
            )
        methods["searched"] = {
            "data.augment.example_ops": ("hflip", "searched_policy"),
            "data.augment.policy_file": policy,
        }
    quick = "quick" in args
    if quick:
        methods = {k: methods[k] for k in ("none", "augmix_jsd")}
    grid = spec.product(
        spec.axis("recipe", RECIPES),
        spec.axis("augment", methods),
        spec.seeds(1 if quick else 3),
    )
    overrides = {"train.steps": 8, "data.test_per_class": 10} if quick else {}
    return spec.Sweep(
        name="augment_table" + ("_quick" if quick else ""),
        base=_base(),
        phases=[spec.Phase("table", grid, overrides=overrides)],
        metric="test_accuracy",
        plot=report,
    )


def report(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The report hook: scores the finished runs (cached), writes the table as Markdown and JSON."""
    scored = robustness_table.score_rows(rows, SETTINGS)
    if not scored:
        return []
    summary = robustness_table.summarize(scored)
    table = Path(out_dir) / "augment_table.md"
    fileio.atomic_write_text(table, robustness_table.markdown(summary))
    data = Path(out_dir) / "augment_table.json"
    fileio.atomic_write_text(data, json.dumps({"settings": SETTINGS.record(), "rows": summary}))
    return [table, data]
