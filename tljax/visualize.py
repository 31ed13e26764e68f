"""What do a network's channels respond to? Feature visualisation and Zeiler–Fergus top-9 patches.

    # Activation maximisation: one image per channel of a tap, tiled into one image (the default).
    python -m tljax.visualize --out=/tmp/imageopt_out/featvis_blocks10.png

    # Top-9 patches of a few channels at five depths ("Layer 1 … Layer 5"), over offline photos.
    python -m tljax.visualize --config=configs/top9_lite0.py --out=/tmp/imageopt_out/top9.png

A thin main: `--config` (default `configs/featvis_lite0.py`) names the technique (`config.technique`,
"featvis" or "top9") and every option (`tljax.imageopt.featvis.default_config()`,
`tljax.imageopt.topk_patches.default_config()`); `--config.key=value` overrides one. `--out` and
`--channels` ('0,3,9' or '0-7') are shortcuts for `--config.out` and `--config.channels`.
"""

from __future__ import annotations

from typing import Any

from tljax import cli
from tljax.errors import ConfigError
from tljax.imageopt import featvis, topk_patches
from tljax.imageopt.cli import Shortcut, parse_channels, tool_main
from tljax.typing import Config

TECHNIQUES = {"featvis": featvis.run_from_config, "top9": topk_patches.run_from_config}


def run_from_config(config: Config) -> Any:
    """Runs the technique `config.technique` names."""
    try:
        run = TECHNIQUES[config.technique]
    except KeyError:
        raise ConfigError(
            f"config.technique={config.technique!r}; expected one of {sorted(TECHNIQUES)}"
        ) from None
    return run(config)


def main() -> None:
    """Defines the flags (here, not at import, so the tools' modules can be imported together) and runs."""
    tool = tool_main(
        "featvis_lite0.py",
        run_from_config,
        [
            Shortcut("out", "out", "Output image path (top9 also writes <stem>_<tap><suffix>)."),
            Shortcut(
                "channels",
                "channels",
                "Channels: '0,3,9' or a range '0-7' (inclusive).",
                parse_channels,
            ),
        ],
    )
    cli.run(tool)


if __name__ == "__main__":
    main()
