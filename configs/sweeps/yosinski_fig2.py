r"""Issue 9 §4a: Yosinski et al. 2014, Fig. 2, on Fashion-MNIST with the CaffeNet-like net.

For each split of the 10 classes into halves A and B — two random splits (`r0`, `r1`: `half:A`/`half:B`
with class_seed 0 and 1) and the dissimilar one (`dissimilar`: tops {T-shirt/top, Pullover, Dress,
Coat, Shirt} vs the rest {Trouser, Sandal, Sneaker, Bag, Ankle boot}, like the paper's man-made vs
natural) —
  phase `base-<split>`:     baseA and baseB from scratch (`half=A|B`), seeds 0..S-1;
  phase `transfer-<split>`: for n = 1..7 and mode ∈ {AnB, AnB+, BnB, BnB+}: layers 1..n copied from
                            baseA (AnB*) or baseB (BnB*) of the same seed, frozen (AnB, BnB) or
                            fine-tuned at the same learning rate (AnB+, BnB+), the rest re-initialised
                            and trained on B; seeds 0..S-1 (config seed 1000 + s: the fresh upper
                            layers are not the source's own initial ones).
Every run has the same budget (`configs/transfer.py`, scale `cpu`: 200 images per class, 300 steps of
batch 64) and is scored on all 5,000 test images of B. The report draws `figures/fig2_<split>.png`
(`tljax.experiments.transfer_figures.plot_fig2`) and writes `figures/fig2_<split>.md`.

    python -m tljax.sweep --sweep=configs/sweeps/yosinski_fig2.py --root=/tmp/sweeps        # cpu, 270 runs
    python -m tljax.sweep --sweep=configs/sweeps/yosinski_fig2.py:quick --root=/tmp/sweeps  # 6 runs
    python -m tljax.sweep --sweep=configs/sweeps/yosinski_fig2.py:gpu --root=gs://... --backend=slurm

Arguments (`:quick`, `:gpu`, or `key=value,...`): `scale` (cpu | quick | gpu, see configs/transfer.py),
`splits` (`+`-separated, default `r0+r1+dissimilar`), `seeds` (default 3), `n` (`+`-separated layers,
default 1..7), `b_shots` (training images per class of B for baseB and every transfer run, default the
scale's; baseA keeps the scale's: the paper's "smaller B training set" check of AnB+ ≥ baseB).
`quick` = scale quick, split r0, one seed, n=3: six points, the test suite's smoke sweep.
Budget (cpu, 300 steps per run): 3 splits × (2 + 7·4) × 3 seeds = 270 runs. Measured: the full sweep
(`--workers=2`) took 89 min on a 2-core machine shared with other jobs (load 10–14), 270 done, median
point 39.6 s wall; the hour on idle cores is an estimate from one point (≈ 13 s wall at 150 steps, of
which 5.4 s compilation that the sweep's compilation cache now saves after the first point of each
program). `splits=r0,b_shots=20,n=1+3+5+7` with `--only` on baseB and AnB+ (15 runs): 36 min at nice 5.

Measured (mean over 3 seeds; README: the tables with std, and which of the paper's shapes appear):
baseB 93.59 / 95.61 / 94.58% (r0 / r1 / dissimilar); AnB at n = 7: 71.15 / 75.90 / 68.51%; BnB within
−0.9 of baseB at every n (lowest at n = 3–4); BnB+ and AnB+ −0.2…+1.0 around baseB. With 20 images
per class of B (split r0): baseB 90.76%, AnB+ 89.86–90.49%.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from tljax.data import FASHION_MNIST_CLASSES
from tljax.data.classes import resolve_classes
from tljax.experiments import spec
from tljax.experiments.transfer_figures import fig2_summary, plot_fig2

CONFIGS = Path(__file__).resolve().parents[1]
TOPS = "T-shirt/top,Pullover,Dress,Coat,Shirt"
REST = "Trouser,Sandal,Sneaker,Bag,Ankle boot"
# split label: (data.classes of A, data.classes of B, data.class_seed)
SPLITS = {
    "r0": ("half:A", "half:B", 0),
    "r1": ("half:A", "half:B", 1),
    "dissimilar": (TOPS, REST, 0),
}
LAYERS = 8  # caffenet: conv1..conv5, fc6, fc7, classifier


def _transfer_config(arg: str):
    path = CONFIGS / "transfer.py"
    module_spec = importlib.util.spec_from_file_location("config_transfer", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg)


def _options(arg: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "scale": "cpu",
        "splits": "r0+r1+dissimilar",
        "seeds": 3,
        "n": "+".join(str(n) for n in range(1, LAYERS)),
        "b_shots": 0,
    }
    if arg in ("quick", "gpu"):
        options["scale"] = arg
        if arg == "quick":
            options.update(splits="r0", seeds=1, n="3")
        return options
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in options:
            raise ValueError(f"sweep argument {item!r}: use quick, gpu or {sorted(options)}=...")
        options[key] = int(value) if key in ("seeds", "b_shots") else value
    return options


def _transfer_seeds(count: int) -> spec.Points:
    """The seed axis of the transfer points: label `seed=s` (it names the base run of seed s to copy
    from) but config seed 1000 + s, so the re-initialised upper layers and the data order are not
    those the source base network itself started from (which BnB would otherwise retrace)."""
    points = spec.axis("seed", {str(s): {"seed": 1000 + s} for s in range(count)})
    return dataclasses.replace(points, seed_axes=frozenset({"seed"}))


def get_sweep(arg: str | None = None) -> spec.Sweep:
    """The Fig.-2 sweep; `arg` as in the module docstring."""
    options = _options(arg)
    splits = options["splits"].split("+")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {sorted(SPLITS)}")
    layers = [int(n) for n in options["n"].split("+")]
    base = _transfer_config(f"scale={options['scale']}")
    # B's training set: the scale's, or `b_shots` images per class (baseA is not affected).
    on_b = {"data.train_per_class": options["b_shots"]} if options["b_shots"] else {}
    phases = []
    for split in splits:
        classes_a, classes_b, class_seed = SPLITS[split]
        phases.append(
            spec.Phase(
                f"base-{split}",
                spec.product(
                    spec.axis(
                        "half",
                        {
                            "A": {"data.classes": classes_a},
                            "B": {"data.classes": classes_b, **on_b},
                        },
                    ),
                    spec.seeds(options["seeds"]),
                ),
                overrides={"data.class_seed": class_seed},
            )
        )

        def source(half: str, split: str = split) -> str:
            return f"run:{{base-{split}/half={half},seed=$seed}}"

        modes = {
            "AnB": {"weights.name": source("A"), "transfer.mode": "frozen"},
            "AnB+": {"weights.name": source("A"), "transfer.mode": "finetune"},
            "BnB": {"weights.name": source("B"), "transfer.mode": "frozen"},
            "BnB+": {"weights.name": source("B"), "transfer.mode": "finetune"},
        }
        phases.append(
            spec.Phase(
                f"transfer-{split}",
                spec.product(
                    spec.axis("transfer.layers", layers, name="n"),
                    spec.axis("mode", modes),
                    _transfer_seeds(options["seeds"]),
                ),
                depends_on=(f"base-{split}",),
                overrides={
                    "recipe": "transfer",
                    "data.classes": classes_b,
                    "data.class_seed": class_seed,
                    "transfer.lr_mult": 1.0,
                    **on_b,
                },
            )
        )
    return spec.Sweep(
        name="yosinski_fig2"
        + ("_quick" if arg == "quick" else "")
        + (f"_b{options['b_shots']}" if options["b_shots"] else ""),
        base=base,
        phases=phases,
        metric="test_accuracy",
        plot=plot_splits,
    )


def fig2_rows(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The report's rows of one split in `plot_fig2`'s terms: baseB rows get mode `baseB`; baseA rows
    (scored on A, not B) are left out."""
    out = []
    for row in rows:
        if row.get("phase") == f"base-{split}" and row.get("half") == "B":
            out.append({**row, "mode": "baseB", "n": 0})
        elif row.get("phase") == f"transfer-{split}":
            out.append(row)
    return out


def _b_names(split: str) -> str:
    """`B = Trouser, Sandal, …`: the target classes of a split, for the figure's title."""
    _, classes_b, class_seed = SPLITS[split]
    names = FASHION_MNIST_CLASSES
    return "B = " + ", ".join(names[i] for i in resolve_classes(classes_b, names, class_seed))


def plot_splits(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The report hook: one Fig.-2 figure and markdown table per split that has finished runs."""
    paths = []
    for split in SPLITS:
        selected = fig2_rows(rows, split)
        try:
            summary = fig2_summary(selected)
        except ValueError:  # nothing finished yet for this split
            continue
        figure = plot_fig2(
            selected, Path(out_dir) / f"fig2_{split}.png", title=f"split {split}: {_b_names(split)}"
        )
        table = Path(out_dir) / f"fig2_{split}.md"
        table.write_text(summary.markdown() + "\n")
        paths += [figure, table]
    return paths
