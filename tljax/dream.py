"""DeepDream from the command line (a thin absl main over `tljax.imageopt.dream`).

    python -m tljax.dream --image=photo.png --out=dream.png
    python -m tljax.dream --image=photo.png --objectives=blocks.10:37,blocks.7 --octaves=5 --steps=30
    python -m tljax.dream --config=configs/dream_lite0.py --config.octave_scale=1.4

Precedence: built-in defaults for `--model` < `--config` file < `--config.key=value` < plain flags given
on the command line. Every option of `DreamOptions` is a config key (see `tljax.imageopt.dream`).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from tljax.imageopt import core, dream

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional config file, e.g. configs/dream_lite0.py."
)
flags.DEFINE_string("image", None, "Input image (any format PIL reads; gray/RGBA are converted).")
flags.DEFINE_string("out", None, "Output PNG path.")
flags.DEFINE_string("model", None, "Backbone (tljax.models name); default efficientnet_lite0.")
flags.DEFINE_string(
    "weights", None, "'default', a registered weights name, a .pth/.safetensors path, or 'random'."
)
flags.DEFINE_string("objectives", None, "Taps or 'tap:channel' specs to amplify, comma-separated.")
flags.DEFINE_string("objective_weights", None, "One weight per objective, comma-separated.")
flags.DEFINE_enum("reduction", None, ["mean", "l2"], "Mean activation or half mean square.")
flags.DEFINE_integer("octaves", None, "Number of octaves.")
flags.DEFINE_float("octave_scale", None, "Size ratio between octaves.")
flags.DEFINE_integer("steps", None, "Ascent steps per octave.")
flags.DEFINE_float("step_size", None, "Pixels per normalised step.")
flags.DEFINE_integer("jitter", None, "Maximal random roll in pixels.")
flags.DEFINE_enum("tiling", None, ["auto", "always", "never"], "Tiled gradients.")
flags.DEFINE_integer("tile_size", None, "Tile core size in pixels.")
flags.DEFINE_integer("max_side", None, "Resize the input so its longer side is this (0: keep).")
flags.DEFINE_string("dtype", None, "Compute dtype: float32 or bfloat16.")
flags.DEFINE_integer("seed", None, "Jitter seed.")

FLAGS = flags.FLAGS

_DIRECT = (
    "image",
    "out",
    "weights",
    "objectives",
    "objective_weights",
    "reduction",
    "octaves",
    "octave_scale",
    "step_size",
    "jitter",
    "tiling",
    "tile_size",
    "max_side",
    "dtype",
    "seed",
)


def build_config():
    """The run's config: file (or the model's defaults) overridden by the flags given explicitly."""
    config = core.config_from_flags(_CONFIG.value, dream.default_config, FLAGS, _DIRECT)
    if FLAGS.steps is not None:
        config.steps_per_octave = FLAGS.steps
    return config


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        dream.run_from_config(build_config())
    except (FileNotFoundError, ValueError, MemoryError) as err:
        # Bad input (missing/unreadable image, unknown tap, too-large image): one clear line, no traceback.
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    app.run(main)
