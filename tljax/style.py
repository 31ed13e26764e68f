"""Neural style transfer from the command line (a thin main over `tljax.imageopt.style`).

    python -m tljax.style --content=cat.png --style=klimt.png --out=out.png
    python -m tljax.style --content=cat.png --style=a.png,b.png --config.style_blend_weights=0.7,0.3
    python -m tljax.style --config=configs/style_vgg19.py --config.weights=/path/vgg19-dcbb9e9d.pth \\
        --content=cat.png --style=klimt.png --config.sizes=256,512
    python -m tljax.style --config.steps=100 --config.preserve_colors=luminance

`--config` defaults to `configs/style_lite0.py` (EfficientNet-Lite0, whose weights install offline);
every option is a key of `tljax.imageopt.style.default_config()`. `--content`, `--style` (comma-separated)
and `--out` are shortcuts for `--config.content`, `--config.styles` and `--config.out`.
"""

from __future__ import annotations

from tljax import cli
from tljax.imageopt import style
from tljax.imageopt.cli import Shortcut, split_list, tool_main


def main() -> None:
    """Defines the flags (here, not at import, so the tools' modules can be imported together) and runs."""
    tool = tool_main(
        "style_lite0.py",
        style.run_from_config,
        [
            Shortcut("content", "content", "Content image (any format PIL reads)."),
            Shortcut("style", "styles", "Style image(s), comma-separated.", split_list),
            Shortcut("out", "out", "Output image path (.png, .jpg)."),
        ],
    )
    cli.run(tool)


if __name__ == "__main__":
    main()
