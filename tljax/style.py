"""Neural style transfer from the command line (a thin absl main over `tljax.imageopt.style`).

    python -m tljax.style --content=cat.png --style=klimt.png --out=out.png
    python -m tljax.style --content=cat.png --style=a.png,b.png --style_blend_weights=0.7,0.3 \\
        --model=vgg19 --weights=/path/to/vgg19-dcbb9e9d.pth --size=512 --optimizer=lbfgs
    python -m tljax.style --config=configs/style_lite0.py --config.steps=100

Precedence: built-in defaults for `--model` < `--config` file < `--config.key=value` < plain flags given
on the command line. Every option of `StyleOptions` is a config key (see `tljax.imageopt.style`).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from tljax.imageopt import core, style

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional config file, e.g. configs/style_lite0.py."
)
flags.DEFINE_string(
    "content", None, "Content image (any format PIL reads; gray/RGBA are converted)."
)
flags.DEFINE_string("style", None, "Style image(s), comma-separated.")
flags.DEFINE_string(
    "style_blend_weights", None, "Weights of several style images, comma-separated."
)
flags.DEFINE_string("out", None, "Output PNG path.")
flags.DEFINE_string("model", None, "Backbone (tljax.models name); default efficientnet_lite0.")
flags.DEFINE_string(
    "weights", None, "'default', a registered weights name, a .pth/.safetensors path, or 'random'."
)
flags.DEFINE_integer("size", None, "Longer side of the output in pixels (single scale).")
flags.DEFINE_string(
    "sizes", None, "Coarse-to-fine sizes, comma-separated (e.g. 256,512); overrides --size."
)
flags.DEFINE_integer("steps", None, "Optimisation steps per scale.")
flags.DEFINE_enum("optimizer", None, ["adam", "lbfgs"], "Optimiser.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate in pixel units.")
flags.DEFINE_enum("init", None, ["content", "style", "noise"], "Initial image.")
flags.DEFINE_float("content_weight", None, "α.")
flags.DEFINE_float("style_weight", None, "β.")
flags.DEFINE_float("tv_weight", None, "Total-variation weight.")
flags.DEFINE_float("style_scale", None, "Style image size relative to the output size.")
flags.DEFINE_enum(
    "preserve_colors", None, ["none", "luminance", "histogram"], "Colour preservation."
)
flags.DEFINE_string("content_taps", None, "Content taps, comma-separated.")
flags.DEFINE_string("style_taps", None, "Style taps, comma-separated.")
flags.DEFINE_string("dtype", None, "Compute dtype: float32 or bfloat16.")
flags.DEFINE_integer("seed", None, "Seed for the noise init.")

FLAGS = flags.FLAGS

# Flags whose value is copied to the config key of the same name (when given).
_DIRECT = (
    "content",
    "style_blend_weights",
    "out",
    "weights",
    "steps",
    "optimizer",
    "learning_rate",
    "init",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    "preserve_colors",
    "content_taps",
    "style_taps",
    "dtype",
    "seed",
    "sizes",
)


def build_config():
    """The run's config: file (or the model's defaults) overridden by the flags given explicitly."""
    config = core.config_from_flags(_CONFIG.value, style.default_config, FLAGS, _DIRECT)
    if FLAGS.style is not None:
        config.styles = FLAGS.style
    if FLAGS.size is not None and FLAGS.sizes is None:
        config.sizes = str(FLAGS.size)
    return config


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        style.run_from_config(build_config())
    except (FileNotFoundError, ValueError, MemoryError) as err:
        # Bad input (missing/unreadable image, unknown tap, too-large image): one clear line, no traceback.
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    app.run(main)
