"""Convert PyTorch weights to a Flax checkpoint that loads without torch.

    python -m tljax.convert --weights=resnet50 --out=~/weights/resnet50-flax
    python -m tljax.convert --weights=~/Downloads/vgg16-397923af.pth --out=vgg16-flax [--model=vgg16]

Load the result with `tljax.weights.load("vgg16-flax")` (an orbax checkpoint plus `tljax_weights.json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from tljax import models, weights

_WEIGHTS = flags.DEFINE_string("weights", None, "Registered weights name or .pth/.safetensors file.",
                               required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory (must not exist or be empty).", required=True)
_MODEL = flags.DEFINE_string("model", None, "Architecture; default: the registry's or inferred from the file.")


def convert(weights_name_or_path: str, out: str, arch: str | None = None) -> Path:
    """Reads, ports and writes the weights; returns the output directory."""
    path = Path(weights_name_or_path).expanduser()
    state_dict = weights.read_state_dict(weights.resolve(weights_name_or_path))
    if arch is None:
        arch = weights.infer_architecture(state_dict) if path.exists() else weights.get_spec(
            weights_name_or_path).arch
    num_classes = weights.loading.num_classes_in(state_dict) or 1000
    model = models.get(arch, num_classes=num_classes)
    variables, _ = weights.port_state_dict(state_dict, model)
    return weights.save_converted(variables, Path(out).expanduser(), arch=arch,
                                  weights=str(weights_name_or_path), num_classes=num_classes)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = convert(_WEIGHTS.value, _OUT.value, _MODEL.value)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
