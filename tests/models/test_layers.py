"""`model.layers()`: every registered architecture lists its layers input → output, and the layers
cover every parameter and BN statistic exactly once (the transfer recipe copies whole layers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import tljax.models as models
from tljax.models.common import init_size


def _top_level_modules(model) -> list[str]:
    """Top-level module names owning variables, in the variable tree (params and batch_stats)."""
    size = 32 if init_size(model) == 64 else init_size(model)  # Inception V3 needs 299 px
    abstract = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    )
    return sorted({name for collection in abstract.values() for name in collection})


# One of each layout that layers() derives from (depth tables, BN or not, block specs); tracing all 22
# registered variants twice costs ~30 s.
ARCHITECTURES = [
    "vgg11",
    "vgg16_bn",
    "resnet18",
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_lite2",
    "caffenet",
    "caffenet_wide",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "googlenet",
    "inception_v3",
    "mobilenet_v1",
    "mobilenet_v2_keras",
    "inception_v3_keras",
    "xception",
]


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("include_top", [True, False])
def test_layers_cover_every_parameter_exactly_once(name, include_top):
    model = models.get(name, num_classes=7, include_top=include_top)
    layers = model.layers()
    listed = [module for layer in layers for module in layer]
    assert len(listed) == len(set(listed)), f"{name}: a module sits in two layers"
    assert sorted(listed) == _top_level_modules(model)
    assert all(layer for layer in layers)
    # The same modules as stages(), split finer or equally (a layer never straddles two stages).
    stage_of = {m: i for i, stage in enumerate(model.stages()) for m in stage}
    assert set(stage_of) == set(listed)
    order = [stage_of[layer[0]] for layer in layers]
    assert order == sorted(order), f"{name}: layers() is not in forward order"
    assert all(len({stage_of[m] for m in layer}) == 1 for layer in layers)
    assert (layers[-1] == ("classifier",)) == include_top


def test_layer_counts_follow_the_architectures():
    assert len(models.get("caffenet").layers()) == 8  # Yosinski's 5 conv + 3 dense
    assert len(models.get("vgg16").layers()) == 16
    assert len(models.get("vgg11_bn").layers()) == 11
    assert len(models.get("resnet50").layers()) == 1 + 16 + 1  # stem, 16 bottlenecks, classifier
    assert (
        len(models.get("efficientnet_lite0").layers()) == 1 + 16 + 1 + 1
    )  # stem, blocks, head, fc
    assert models.get("caffenet", batch_norm=True).layers()[0] == ("conv1", "bn1")
