"""EfficientNet-Lite against the `efficientnet-lite-pytorch` reference, and the real Lite0 weights on real photos."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet

import tljax.models as models
from tests.assets import foolbox_imagenet_photos, lite0_weights_file
from tests.models.torch_oracle import efficientnet_lite_taps, randomize_batch_norm, relative_error
from tljax import weights
from tljax.data.preprocess import load_eval_image
from tljax.weights.porting import port_state_dict
from tljax.weights.readers import read_state_dict

TOLERANCE = 1e-5


def _reference(variant: int, image_size, state_dict=None, seed=0) -> torch.nn.Module:
    torch.manual_seed(seed)
    ref = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=image_size)
    if state_dict is None:
        randomize_batch_norm(ref, torch.Generator().manual_seed(seed + 1))
    else:
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return ref.eval()


def _compare(name: str, ref: torch.nn.Module, x: np.ndarray) -> dict[str, float]:
    model = models.get(name)
    variables, _ = port_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, model)
    reference = efficientnet_lite_taps(ref, torch.from_numpy(x))
    names = models.tap_names(model)
    assert set(reference) == set(names)
    ours = jax.jit(model.apply, static_argnames="taps")(
        variables, x.transpose(0, 2, 3, 1), taps=names
    )
    return {tap: relative_error(ours[tap], reference[tap]) for tap in names}


@pytest.mark.parametrize(
    "variant,size",
    [
        (0, (224, 224)),
        (0, (97, 131)),
        (1, (240, 240)),
        (2, (260, 260)),
        (3, (280, 280)),
        (4, (300, 300)),
    ],
)
def test_random_weights_match_reference(variant, size):
    x = np.random.default_rng(variant).standard_normal((2, 3, *size)).astype(np.float32)
    errors = _compare(f"efficientnet_lite{variant}", _reference(variant, size), x)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"tap {worst} off by {errors[worst]:.2e}"


def _photos_nchw() -> tuple[np.ndarray, np.ndarray]:
    """The 20 photos through Lite0's registered evaluation transform, NCHW for torch."""
    preprocessing = weights.get_spec("efficientnet_lite0").preprocessing
    photos = foolbox_imagenet_photos()
    images = np.stack([load_eval_image(path, preprocessing) for path, _ in photos])
    labels = np.array([label for _, label in photos])
    return images.transpose(0, 3, 1, 2), labels


@pytest.fixture(scope="module")
def lite0_state_dict():
    return read_state_dict(lite0_weights_file())


def test_real_lite0_weights_match_reference_on_photos(lite0_state_dict):
    x, _ = _photos_nchw()
    errors = _compare("efficientnet_lite0", _reference(0, 224, lite0_state_dict), x[:4])
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"tap {worst} off by {errors[worst]:.2e}"


def test_real_lite0_classifies_imagenet_photos(lite0_state_dict):
    model = models.get("efficientnet_lite0")
    variables, _ = port_state_dict(lite0_state_dict, model)
    x, labels = _photos_nchw()
    logits = np.asarray(jax.jit(model.apply)(variables, x.transpose(0, 2, 3, 1)))
    top1 = int((logits.argmax(-1) == labels).sum())
    top5 = int(sum(label in row for label, row in zip(labels, np.argsort(-logits, -1)[:, :5])))
    assert top1 >= 17, f"top-1 {top1}/20"
    assert top5 >= 19, f"top-5 {top5}/20"
