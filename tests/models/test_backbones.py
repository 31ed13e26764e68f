"""Issue 13's torchvision backbones (MobileNet V2/V3, GoogLeNet, Inception V3): sizes, recipes, files.

Numerical parity with torchvision (every tap, two input sizes) is in `test_parity_torchvision.py`; these
are the cheap structural checks, on abstract shapes only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from flax.traverse_util import flatten_dict

import tljax.models as models
from tljax import weights
from tljax.models.common import init_size
from tljax.optim import assign_groups, recipe_rules
from tljax.weights.loading import num_classes_in
from tljax.weights.porting import port_state_dict

NEW = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "googlenet", "inception_v3"]


def _abstract(model, size=None):
    size = size or init_size(model)
    return jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    )


# torchvision's own `meta["num_params"]` of the ImageNet weights (1000 classes).
TORCHVISION_PARAMS = {
    "mobilenet_v2": 3504872,
    "mobilenet_v3_large": 5483032,
    "mobilenet_v3_small": 2542856,
    "googlenet": 6624904,  # without the auxiliary heads, as torchvision publishes them
    "inception_v3": 27161264,  # with the auxiliary head (torchvision counts it)
}


@pytest.mark.parametrize("name", NEW)
def test_parameter_count_is_torchvisions(name):
    params = _abstract(
        models.get(name, aux_logits=True) if name == "inception_v3" else models.get(name)
    )["params"]
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    assert count == TORCHVISION_PARAMS[name]


# The Keras-layout architectures (parity with Keras: test_parity_keras.py, test_keras_files.py).
KERAS_LAYOUTS = ["mobilenet_v1", "mobilenet_v2_keras", "inception_v3_keras", "xception"]


@pytest.mark.parametrize("name", NEW + KERAS_LAYOUTS)
def test_finetune_top_and_feature_extractor_cover_every_parameter(name):
    """The trainer's recipes need nothing model-specific: stages() → rules that match every parameter
    (assign_groups refuses an unmatched one), the last stages train, the rest is frozen."""
    model = models.get(name, num_classes=5)
    params = _abstract(model)["params"]
    paths = {"/".join(p) for p in flatten_dict(params)}
    groups = assign_groups(params, recipe_rules("finetune_top", model.stages(), trainable_stages=2))
    trainable, frozen = set(groups.trainable_paths()), set(groups.frozen_paths())
    assert trainable | frozen == paths and not trainable & frozen
    top = {p.split("/")[0] for p in trainable}
    assert top == {*model.stages()[-1], *model.stages()[-2]}
    assert "stem_conv" not in top and "conv1" not in top
    head = assign_groups(params, recipe_rules("feature_extractor", model.stages()))
    assert {p.split("/")[0] for p in head.trainable_paths()} == set(model.stages()[-1])


@pytest.mark.parametrize("name,width", [("mobilenet_v2", 1280), ("mobilenet_v3_small", 576)])
def test_include_top_false_is_the_pooled_head_conv(name, width):
    backbone = models.get(name, include_top=False)
    abstract = _abstract(backbone)
    assert not {"classifier", "classifier_hidden"} & set(abstract["params"])
    out = jax.eval_shape(
        backbone.apply, abstract, jax.ShapeDtypeStruct((2, 97, 131, 3), jnp.float32)
    )
    assert out.shape == (2, width)


def test_a_file_names_its_architecture_and_classes():
    torch.manual_seed(0)
    small = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10)
    state_dict = {k: v.numpy() for k, v in small.state_dict().items()}
    assert weights.infer_architecture(state_dict) == "mobilenet_v3_small"
    assert num_classes_in(state_dict) == 10
    v2 = torchvision.models.mobilenet_v2(weights=None, num_classes=7).state_dict()
    assert num_classes_in({k: v.numpy() for k, v in v2.items()}) == 7


def test_googlenet_aux_heads_are_optional_and_dropped_by_name():
    """torchvision's GoogLeNet files hold aux1/aux2; a model without them loads the rest and names what
    it dropped; with them, the heads are extra parameters of stage 4 and the taps `aux1`, `aux2`."""
    torch.manual_seed(0)
    torch_model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    state_dict = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    plain = models.get("googlenet")
    variables, report = port_state_dict(state_dict, plain)
    assert "aux1" not in variables["params"] and "aux1" not in models.tap_names(plain)
    assert {k.split(".")[0] for k in report.skipped_sources} == {"aux1", "aux2"}
    with_aux = models.get("googlenet", aux_logits=True)
    variables, report = port_state_dict(state_dict, with_aux)
    assert report.skipped_sources == [] and {"aux1", "aux2"} <= set(with_aux.stages()[2])
    taps = models.tap_names(with_aux)
    assert taps.index("inception_4a") < taps.index("aux1") < taps.index("inception_4b")
    np.testing.assert_array_equal(
        variables["params"]["aux2"]["fc2"]["kernel"], state_dict["aux2.fc2.weight"].T
    )


def test_keras_layout_options_keras_lacks_are_refused_naming_the_fix():
    from tljax.errors import ConfigError

    with pytest.raises(ConfigError, match="no auxiliary head; use aux_logits=False"):
        _abstract(models.get("inception_v3_keras", aux_logits=True))
    with pytest.raises(ConfigError, match="integer depth_multiplier ≥ 1"):
        _abstract(models.get("mobilenet_v1", depth_multiplier=0))
