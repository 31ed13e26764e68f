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
from tljax.corruption_eval import ADAPTATIONS, evaluate_run
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
    results = evaluate_run(
        workdir,
        test_per_class=_TEST_PER_CLASS.value,
        adaptations=_ADAPT.value,
        names=_CORRUPTIONS.value,
        severities=[int(s) for s in _SEVERITIES.value],
        seed=_SEED.value,
        batch_size=_BATCH.value,
        adapt_layers=_ADAPT_LAYERS.value,
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
