"""Command line of the robustness evaluation (`tljax.corruption_eval` holds the library).

    python -m tljax.robustness --workdir=RUN [--test_per_class=100] [--adapt=none,adabn,tent]
        [--adapt_layers=trained|all]

scores a finished run's final variables on the corruption suite and writes `RUN/robustness.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tljax import cli, fileio
from tljax.corruption_eval import (
    ADAPTATIONS,
    evaluate_robustness,
    recorded_config,
    test_pixels,
    trained_bn_layers,
)
from tljax.data import corruptions
from tljax.errors import UserError

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A finished tljax run (its final variables are read)."
)
_OUT = flags.DEFINE_string(
    "out", None, "Where to write the JSON (default: WORKDIR/robustness.json)."
)
_TEST_PER_CLASS = flags.DEFINE_integer(
    "test_per_class", None, "Test images per class to corrupt (default: the run's own test split)."
)
_ADAPT = flags.DEFINE_list("adapt", list(ADAPTATIONS), "Adaptations to evaluate.")
_CORRUPTIONS = flags.DEFINE_list(
    "corruptions", list(corruptions.CORRUPTIONS), "Corruptions to evaluate (default: all)."
)
_SEVERITIES = flags.DEFINE_list("severities", ["1", "2", "3", "4", "5"], "Severities to evaluate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the corruptions' random draws.")
_ADAPT_LAYERS = flags.DEFINE_enum(
    "adapt_layers",
    "trained",
    ["trained", "all"],
    "BN layers AdaBN/TENT adapt: 'trained' = those whose statistics the run estimated on its training "
    "data (its BN policy; see tljax.adapt), 'all' = every BN layer (the papers' setting, which assumes "
    "that is the same set).",
)
_BATCH = flags.DEFINE_integer("batch_size", 100, "Test batch (the unit of AdaBN/TENT statistics).")


def main(argv: Sequence[str]) -> None:
    """Evaluates `--workdir`'s final variables under the corruption suite and writes the JSON."""
    del argv
    from tljax import models
    from tljax.weights import runs

    if not _WORKDIR.value:
        raise UserError("--workdir is required (a finished tljax run)")
    workdir = Path(_WORKDIR.value)
    unknown = [a for a in _ADAPT.value if a not in ADAPTATIONS]
    if unknown:
        raise UserError(f"--adapt: unknown {unknown}; known: {', '.join(ADAPTATIONS)}")
    bad = [c for c in _CORRUPTIONS.value if c not in corruptions.CORRUPTIONS]
    bad += [s for s in _SEVERITIES.value if s not in {str(v) for v in corruptions.SEVERITIES}]
    if bad:
        raise UserError(
            f"--corruptions/--severities: unknown {bad}; corruptions: "
            f"{', '.join(corruptions.CORRUPTIONS)}; severities 1-5"
        )
    source = f"run:{workdir}"
    meta = runs.run_meta(source)
    config = recorded_config(runs.run_config(source))
    if _TEST_PER_CLASS.value is not None:
        config.data.test_per_class = _TEST_PER_CLASS.value
    model = models.get(meta["model"], num_classes=int(meta["num_classes"]))
    variables = runs.load_run(source, model)
    pixels, labels, preprocessing = test_pixels(config)
    layers = (
        trained_bn_layers(config, model, variables) if _ADAPT_LAYERS.value == "trained" else None
    )
    results = evaluate_robustness(
        model,
        variables,
        pixels,
        labels,
        preprocessing,
        adaptations=_ADAPT.value,
        names=_CORRUPTIONS.value,
        severities=[int(s) for s in _SEVERITIES.value],
        seed=_SEED.value,
        batch_size=_BATCH.value,
        adapt_layers=layers,
    )
    out = Path(_OUT.value) if _OUT.value else workdir / "robustness.json"
    fileio.atomic_write_json(out, {"workdir": str(workdir), **results})
    for adaptation in _ADAPT.value:
        r = results[adaptation]
        print(
            f"{adaptation}: clean {100 * r['clean_accuracy']:.2f}%  "
            f"corrupted {100 * r['corruption_accuracy']:.2f}%  ({results['examples']} images, "
            f"{results['adapted_bn_layers']} BN layers adapted) → {out}"
        )


if __name__ == "__main__":
    cli.run(main)
