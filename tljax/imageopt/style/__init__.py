"""Neural style transfer (Gatys, Ecker & Bethge 2015): `python -m tljax.style`.

* `losses`: the content, Gram-style and total-variation terms (deeplearning.ai normalisations).
* `colour`: luminance-only transfer and colour-statistics matching.
* `optimize`: `StyleOptions` (the one definition of every option), targets, the loss, Adam / L-BFGS steps.
* `run`: `stylize` (arrays in, image out), `default_config`, `run_from_config` (files in, file out).

The public names are re-exported here: `from tljax.imageopt import style; style.stylize(...)`.
"""

from tljax.imageopt.style.colour import match_color_statistics, preserve_luminance
from tljax.imageopt.style.losses import (
    content_cost,
    gram_matrix,
    normalised_gram,
    style_cost_from_target,
    style_layer_cost,
    total_variation,
)
from tljax.imageopt.style.optimize import (
    StyleOptions,
    StyleTargets,
    build_targets,
    make_lbfgs_step,
    make_optimizer,
    make_step,
    style_transfer_loss,
)
from tljax.imageopt.style.run import (
    StyleResult,
    default_config,
    options_from_config,
    run_from_config,
    stylize,
)

__all__ = [
    "StyleOptions",
    "StyleResult",
    "StyleTargets",
    "build_targets",
    "content_cost",
    "default_config",
    "gram_matrix",
    "make_lbfgs_step",
    "make_optimizer",
    "make_step",
    "match_color_statistics",
    "normalised_gram",
    "options_from_config",
    "preserve_luminance",
    "run_from_config",
    "style_cost_from_target",
    "style_layer_cost",
    "style_transfer_loss",
    "stylize",
    "total_variation",
]
