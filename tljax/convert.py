"""Convert PyTorch or Keras weights to a Flax checkpoint that loads without torch, Keras or h5py.

    python -m tljax.convert --weights=resnet50 --out=~/weights/resnet50-flax
    python -m tljax.convert --weights=~/Downloads/vgg16-397923af.pth --out=vgg16-flax [--model=vgg16]
    python -m tljax.convert --weights=resnet50_keras --out=resnet50-keras-flax      # Keras Applications
    python -m tljax.convert --weights=my_model.keras --out=mine-flax [--model=vgg16_keras]

Keras files: legacy `.h5` (whole model or weights only), Keras 3 `.weights.h5`, `.keras` archives (read
with h5py, configs never deserialised); the architecture comes from --model, the registry, or the file's
layer names.

Load the result with `tljax.weights.load("vgg16-flax")` (an orbax checkpoint plus `tljax_weights.json`).
Known errors (unknown weights, an unreadable or mismatched file, an --out that is not writable, a full
disk) are printed as one line and exit 2 (`tljax.cli`); `--verbose` shows the traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from tljax import cli
from tljax.errors import UserError, os_error_of
from tljax.train.workdir import check_writable
from tljax.weights import convert

_WEIGHTS = flags.DEFINE_string(
    "weights",
    None,
    "Registered weights name, or a .pth/.safetensors or Keras .h5/.weights.h5/.keras file.",
    required=True,
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
    out = Path(_OUT.value).expanduser()
    # Checked before reading and porting the weights, which can take a minute for the large models.
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} exists and is not empty: choose a new --out or delete it")
    check_writable(out, flag="--out")
    try:
        written = convert(_WEIGHTS.value, str(out), _MODEL.value)
    except Exception as error:
        os_error = os_error_of(error, out)
        if os_error is None or os_error is error:
            raise
        raise os_error from error  # e.g. orbax's "RESOURCE_EXHAUSTED ... os_error_code=28"
    print(f"wrote {written}")


if __name__ == "__main__":
    cli.run(main)
