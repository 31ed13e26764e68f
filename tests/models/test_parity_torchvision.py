"""Ported torchvision weights give torchvision's numbers: logits and every tap, fp32, eval mode."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import tljax.models as models
from tests.models.torch_oracle import (
    features_taps,
    googlenet_taps,
    inception_v3_taps,
    relative_error,
    resnet_taps,
    torchvision_model,
    vgg_taps,
)
from tljax.weights.porting import port_state_dict

TOLERANCE = 1e-5  # max |ours - torch| / max |torch|, per tap
SIZES = [(224, 224), (97, 131)]  # the standard size and an odd, non-square one

VGG = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
RESNET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def _inputs(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 3, height, width)).astype(np.float32)


def _check_all_taps(name: str, reference_taps, torch_model, size, ported=None) -> None:
    """`ported`: (flax model, variables, jitted apply) reused across sizes; built here when None."""
    flax_model, variables, apply = ported or _port(name, torch_model)
    x = _inputs(*size)
    reference = reference_taps(torch_model, torch.from_numpy(x))
    names = models.tap_names(flax_model)
    assert set(reference) == set(names), set(reference) ^ set(names)
    ours = apply(variables, x.transpose(0, 2, 3, 1), taps=names)
    errors = {tap: relative_error(ours[tap], reference[tap]) for tap in names}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"{name} {size}: tap {worst} off by {errors[worst]:.2e}"


def _port(name: str, torch_model, **kwargs):
    flax_model = models.get(name, **kwargs)
    variables, _ = port_state_dict(
        {k: v.numpy() for k, v in torch_model.state_dict().items()}, flax_model
    )
    return flax_model, variables, flax_model.apply


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", VGG)
def test_vgg_matches_torchvision(name, size):
    torch_model = torchvision_model(name)
    depth, bn = int(name[3:5]), name.endswith("_bn")
    _check_all_taps(name, lambda m, x: vgg_taps(m, depth, bn, x), torch_model, size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", RESNET)
def test_resnet_matches_torchvision(name, size):
    _check_all_taps(name, resnet_taps, torchvision_model(name), size)


MOBILENET = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.fixture(scope="module", params=MOBILENET)
def mobilenet(request):
    """One torchvision model and its port per architecture, shared by both sizes; the apply is jitted
    (one compile per size beats op-by-op dispatch through ~150 layers)."""
    torch_model = torchvision_model(request.param)
    flax_model, variables, _ = _port(request.param, torch_model)
    apply = jax.jit(flax_model.apply, static_argnames=("taps",))
    return request.param, torch_model, (flax_model, variables, apply)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mobilenet_matches_torchvision(mobilenet, size):
    name, torch_model, ported = mobilenet
    _check_all_taps(name, features_taps, torch_model, size, ported)


@pytest.fixture(scope="module")
def googlenet():
    """torchvision's GoogLeNet as its pretrained weights run it (transform_input=True), with the
    auxiliary heads, ported once for both sizes."""
    torch_model = torchvision_model("googlenet", transform_input=True, init_weights=True)
    flax_model, variables, _ = _port("googlenet", torch_model, aux_logits=True)
    apply = jax.jit(flax_model.apply, static_argnames=("taps",))
    return torch_model, (flax_model, variables, apply)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_googlenet_matches_torchvision(googlenet, size):
    """Every tap including both auxiliary heads; ceil-mode pools make 97×131 a real test of them."""
    torch_model, ported = googlenet
    _check_all_taps("googlenet", googlenet_taps, torch_model, size, ported)


# Inception V3's native size, and an odd non-square one big enough for its auxiliary head (its 5×5/3
# pool and 5×5 conv need Mixed_6e ≥ 17×17, i.e. inputs ≥ 299 px, in torchvision too).
INCEPTION_V3_SIZES = [(299, 299), (303, 319)]


@pytest.fixture(scope="module")
def inception_v3():
    torch_model = torchvision_model("inception_v3", transform_input=True, init_weights=True)
    flax_model, variables, _ = _port("inception_v3", torch_model, aux_logits=True)
    apply = jax.jit(flax_model.apply, static_argnames=("taps",))
    return torch_model, (flax_model, variables, apply)


@pytest.mark.slow
@pytest.mark.parametrize("size", INCEPTION_V3_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_inception_v3_matches_torchvision(inception_v3, size):
    """Every tap including the auxiliary head, at 299² and at an odd non-square size."""
    torch_model, ported = inception_v3
    _check_all_taps("inception_v3", inception_v3_taps, torch_model, size, ported)
