"""How a technique's options dataclass becomes its run config and back, and the checks they share.

Each technique defines its options once, as a frozen dataclass with documented defaults (`StyleOptions`,
`DreamOptions`); `tool_config` builds the locked `ml_collections.ConfigDict` the CLI and the config
files edit from those defaults plus the tool's I/O keys, and `read_options` reads it back, so an
option is added in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from tljax.errors import ConfigError
from tljax.typing import Config

__all__ = ["check_choices", "checked_weights", "keyword_defaults", "read_options", "tool_config"]

OptionsT = TypeVar("OptionsT")


def tool_config(io: Mapping[str, Any], options: Any) -> Config:
    """A locked ConfigDict holding the `io` keys, then the options: every field of a dataclass instance,
    or the items of a mapping (`keyword_defaults`)."""
    import ml_collections

    config = ml_collections.ConfigDict(dict(io))
    config.update(options if isinstance(options, Mapping) else dataclasses.asdict(options))
    config.lock()
    return config


def keyword_defaults(function: Any, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The keyword-only arguments of `function` with their defaults (minus `exclude`).

    For a technique whose options are a function's keyword arguments (feature visualisation): its config
    is built from them, so the function's signature stays the one place an option is defined.
    """
    import inspect

    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in exclude
    }


def read_options(config: Config, options_type: type[OptionsT]) -> OptionsT:
    """The `options_type` dataclass built from the config keys named like its fields (it validates)."""
    fields = dataclasses.fields(options_type)  # type: ignore[arg-type]
    return options_type(**{f.name: config[f.name] for f in fields})


def checked_weights(
    weights: Sequence[float] | None, names: Sequence[str], what: str
) -> tuple[float, ...]:
    """`weights` as a float tuple: empty (meaning equal weights) or one per entry of `names`."""
    values = tuple(float(w) for w in weights or ())
    if values and len(values) != len(names):
        raise ConfigError(
            f"{what} has {len(values)} values for {len(names)} entries ({', '.join(names)}); "
            "give one each, or () for equal weights"
        )
    return values


def check_choices(options: Any, choices: Mapping[str, Sequence[str]]) -> None:
    """`ConfigError` naming the field and the allowed values for the first field not among its choices."""
    for name, allowed in choices.items():
        if getattr(options, name) not in allowed:
            raise ConfigError(
                f"{name}={getattr(options, name)!r}; expected one of {tuple(allowed)}"
            )
