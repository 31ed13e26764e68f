"""Optimising the input image of a fixed network: style transfer, DeepDream, feature visualisation.

One module per technique, sharing `tljax.imageopt.core` (taps → objective, image I/O, the chunked
jit-compiled optimisation loop, memory checks):

* `tljax.imageopt.style`: neural style transfer (Gatys et al.), `python -m tljax.style`.
* `tljax.imageopt.dream`: DeepDream with octaves, jitter and tiled gradients, `python -m tljax.dream`.
* `tljax.imageopt.featvis`, `topk_patches`, `receptive_field`: feature visualisation and Zeiler–Fergus
  top-9 patches, `python -m tljax.visualize`.

Submodules are imported on use (`from tljax.imageopt import style`), so importing the package is cheap.
"""

from tljax.imageopt.core import (
    ChunkedLoop,
    MemoryBudgetExceeded,
    TapsFn,
    TapSpec,
    check_taps,
    deprocess,
    fit_max_side,
    load_backbone,
    load_image,
    make_taps_fn,
    memory_budget_bytes,
    parse_tap_spec,
    preprocess,
    resize_image,
    save_image,
)

__all__ = [
    "ChunkedLoop",
    "MemoryBudgetExceeded",
    "TapSpec",
    "TapsFn",
    "check_taps",
    "deprocess",
    "fit_max_side",
    "load_backbone",
    "load_image",
    "make_taps_fn",
    "memory_budget_bytes",
    "parse_tap_spec",
    "preprocess",
    "resize_image",
    "save_image",
]
