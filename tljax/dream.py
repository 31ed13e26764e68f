"""DeepDream from the command line (a thin main over `tljax.imageopt.dream`).

    python -m tljax.dream --image=photo.png --out=dream.png
    python -m tljax.dream --image=photo.png --config.objectives=blocks.10:37,blocks.7 \\
        --config.octaves=5 --config.steps_per_octave=30
    python -m tljax.dream --config=configs/dream_vgg19.py --config.weights=/path/vgg19-dcbb9e9d.pth

`--config` defaults to `configs/dream_lite0.py` (EfficientNet-Lite0, whose weights install offline);
every option is a key of `tljax.imageopt.dream.default_config()`. `--image` and `--out` are shortcuts
for `--config.image` and `--config.out`.
"""

from __future__ import annotations

from tljax import cli
from tljax.imageopt import dream
from tljax.imageopt.cli import Shortcut, tool_main


def main() -> None:
    """Defines the flags (here, not at import, so the tools' modules can be imported together) and runs."""
    tool = tool_main(
        "dream_lite0.py",
        dream.run_from_config,
        [
            Shortcut("image", "image", "Input image (any format PIL reads)."),
            Shortcut("out", "out", "Output image path (.png, .jpg)."),
        ],
    )
    cli.run(tool)


if __name__ == "__main__":
    main()
