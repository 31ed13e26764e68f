"""Convert PyTorch weights to a Flax checkpoint that loads without torch.

    python -m tljax.convert --weights=resnet50 --out=~/weights/resnet50-flax
    python -m tljax.convert --weights=~/Downloads/vgg16-397923af.pth --out=vgg16-flax [--model=vgg16]

Load the result with `tljax.weights.load("vgg16-flax")` (an orbax checkpoint plus `tljax_weights.json`).
Known errors (unknown weights, an unreadable or mismatched file, an --out that is not writable, a full
disk) are printed as one line and exit 2 (`tljax.cli`); `--verbose` shows the traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags

from tljax import cli
from tljax.weights import convert

_WEIGHTS = flags.DEFINE_string(
    "weights", None, "Registered weights name or .pth/.safetensors file.", required=True
)
_OUT = flags.DEFINE_string(
    "out", None, "Output directory (must not exist or be empty).", required=True
)
_MODEL = flags.DEFINE_string(
    "model", None, "Architecture; default: the registry's or inferred from the file."
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = convert(_WEIGHTS.value, _OUT.value, _MODEL.value)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
