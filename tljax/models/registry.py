"""Name → model constructor registry: `tljax.models.get("resnet50", num_classes=10)`."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator registering a zero-argument-beyond-kwargs constructor under `name`."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """All registered architecture names, sorted."""
    return sorted(_MODELS)


def get(name: str, **kwargs) -> nn.Module:
    """Builds a registered architecture, e.g. `get("vgg16_bn", num_classes=10, include_top=True)`.

    Keyword arguments are the module's fields: `num_classes`, `include_top`, `dtype`, `param_dtype`,
    `frozen_bn`, and architecture-specific ones. Unknown names raise with the list of known ones.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)


def tap_names(model: nn.Module) -> tuple[str, ...]:
    """The named activations `model` can return (`model.apply(..., taps=[...])`), in forward order."""
    return tuple(model.tap_names())
