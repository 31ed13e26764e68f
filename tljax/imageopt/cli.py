"""What the image-optimisation CLIs share: `--config` (a config file, default one per tool) with
`--config.key=value` overrides, plus a few convenience flags, each mapped onto one config key here.

    main = cli.tool_main(
        "style_lite0.py", style.run_from_config,
        [Shortcut("content", "content", "Content image."), Shortcut("style", "styles", ..., split_list)],
    )
    tljax.cli.run(main)

A convenience flag given on the command line overrides its config key (and wins over `--config.key`,
which it names in its help); every other option is `--config.key=value`. Errors follow `tljax.cli`: one
line for bad input, a traceback only with `--verbose`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

from tljax.errors import ConfigError, UserError
from tljax.typing import Config

__all__ = ["Shortcut", "config_path", "parse_channels", "split_list", "tool_main"]

# configs/ next to the package (the repository layout the README commands run in).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config_path(name: str) -> str:
    """Path of `configs/<name>`, the default `--config` of a tool."""
    return str(CONFIGS / name)


def split_list(text: str) -> tuple[str, ...]:
    """`"a.png,b.png"` → `("a.png", "b.png")` (blank entries dropped)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_channels(text: str) -> tuple[int, ...]:
    """'0,3,9' → (0, 3, 9); '0-7' → (0, …, 7); mixed '0-2,10' works too."""
    channels: list[int] = []
    for part in split_list(text):
        low, sep, high = part.partition("-")
        try:
            channels.extend(range(int(low), int(high) + 1) if sep else [int(low)])
        except ValueError:
            raise ConfigError(f"bad --channels entry {part!r}: use '0,3,9' or '0-7'") from None
    if not channels:
        raise ConfigError("no channels given")
    return tuple(channels)


@dataclasses.dataclass(frozen=True)
class Shortcut:
    """A convenience flag `--<flag>` that sets `config.<key>` to `convert(value)`."""

    flag: str
    key: str
    help: str
    convert: Callable[[str], Any] = str


def tool_main(
    default_config: str,
    run_from_config: Callable[[Config], Any],
    shortcuts: Sequence[Shortcut] = (),
) -> Callable[[list[str]], None]:
    """Defines `--config` (default `configs/<default_config>`) and the shortcut flags; returns the main.

    The main applies the shortcuts that were given to the loaded config and calls `run_from_config`.
    """
    config_flag = config_flags.DEFINE_config_file(
        "config",
        config_path(default_config),
        f"Config file (default configs/{default_config}); override keys with --config.KEY=VALUE.",
        lock_config=True,
    )
    holders = [
        (
            shortcut,
            flags.DEFINE_string(
                shortcut.flag, None, f"{shortcut.help} Sets config.{shortcut.key}."
            ),
        )
        for shortcut in shortcuts
    ]

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise UserError(
                f"unexpected arguments {argv[1:]}: options are --flag=value or --config.KEY=VALUE"
            )
        config = config_flag.value
        for shortcut, holder in holders:
            if holder.value is not None:
                config[shortcut.key] = shortcut.convert(holder.value)
        run_from_config(config)

    return main
