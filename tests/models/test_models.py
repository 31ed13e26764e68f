"""Model-zoo behaviour: taps, early stopping, heads, BN policy, dtypes, torch-exact helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import tljax.models as models
from tests.models.random_init import random_variables
from tests.models.torch_oracle import relative_error
from tljax import weights
from tljax.models.common import adaptive_avg_pool, tf_same_padding


def _init(model, size=64):
    return random_variables(model, image_size=size)


def _apply(model):
    return jax.jit(model.apply, static_argnames=("train", "taps", "mutable"))


def _count_convs(fn, *args) -> int:
    """Convolutions and matrix products in the program lowered for this platform (1×1 convs are
    matmuls on CPU; the jaxpr holds every platform's branch of the conv switch, the lowering one)."""
    hlo = jax.jit(fn).trace(*args).lower().as_text()
    return hlo.count("stablehlo.convolution") + hlo.count("stablehlo.dot_general")


def test_registry_lists_every_family_and_rejects_unknown_names():
    names = models.list_models()
    for expected in [
        "vgg11",
        "vgg19_bn",
        "resnet18",
        "resnet152",
        "efficientnet_lite0",
        "efficientnet_lite4",
    ]:
        assert expected in names
    with pytest.raises(ValueError, match="known models: .*resnet50"):
        models.get("resnet51")


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18", "efficientnet_lite0"])
def test_all_taps_come_back_from_one_pass(name):
    model = models.get(name, num_classes=7)
    variables = _init(model)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    names = models.tap_names(model)
    out = _apply(model)(variables, x, taps=names)
    assert sorted(out) == sorted(names)
    assert (
        relative_error(out["logits"], _apply(model)(variables, x)) <= 1e-5
    )  # same numbers as without taps
    assert out["logits"].shape == (2, 7)


def _abstract(model, size=64):
    return jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    )


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18", "efficientnet_lite0"])
def test_tap_names_are_listed_in_forward_order(name):
    """Asking for a later tap never computes fewer layers: the listed order is the forward order."""
    model = models.get(name)
    variables, x = _abstract(model), jnp.zeros((1, 64, 64, 3))
    convs = [
        _count_convs(lambda v, x, t=tap: model.apply(v, x, taps=(t,)), variables, x)
        for tap in models.tap_names(model)
    ]
    assert convs == sorted(convs) and convs[0] >= 1
    assert convs[-1] == _count_convs(lambda v, x: model.apply(v, x), variables, x)


def test_forward_stops_after_the_deepest_tap():
    model = models.get("resnet50")
    variables = _abstract(model)
    x = jnp.zeros((1, 64, 64, 3))
    full = _count_convs(lambda v, x: model.apply(v, x), variables, x)
    shallow = _count_convs(lambda v, x: model.apply(v, x, taps=("stem", "layer1.0")), variables, x)
    assert full == 54  # 1 stem + 16 blocks × 3 + 4 projections + the classifier
    assert shallow == 1 + 3 + 1  # stem, one bottleneck and its projection: nothing past layer1.0


def test_unknown_tap_is_refused_with_the_valid_names():
    model = models.get("vgg16")
    variables = _abstract(model)
    with pytest.raises(ValueError, match=r"unknown tap name\(s\) \['relu4_4'\].*relu4_3"):
        model.apply(variables, jnp.zeros((1, 64, 64, 3)), taps=("relu4_4",))


@pytest.mark.parametrize(
    "name,width", [("vgg11", 512), ("resnet50", 2048), ("efficientnet_lite0", 1280)]
)
def test_include_top_false_returns_pooled_features(name, width):
    backbone = models.get(name, include_top=False)
    variables = _init(backbone)
    assert "classifier" not in variables["params"]
    x = jax.random.normal(jax.random.key(2), (2, 64, 64, 3))
    features = _apply(backbone)(variables, x)
    assert features.shape == (2, width)
    assert relative_error(features, _apply(backbone)(variables, x, taps=("pool",))["pool"]) <= 1e-5


def test_stages_partition_the_top_level_modules():
    for name in ["vgg16_bn", "resnet34", "efficientnet_lite2"]:
        model = models.get(name, num_classes=3)
        top_level = set(_abstract(model)["params"])
        staged = [m for stage in model.stages() for m in stage]
        assert len(staged) == len(set(staged))
        assert set(staged) == top_level
        assert model.stages()[-1] == ("classifier",)


def _bn_training_step(frozen_bn):
    model = models.get("resnet18", num_classes=3, frozen_bn=frozen_bn)
    variables = _init(model, 32)
    x = 3.0 + jax.random.normal(jax.random.key(3), (4, 32, 32, 3))
    out, updates = _apply(model)(variables, x, train=True, mutable=("batch_stats",))
    return model, variables, x, out, updates["batch_stats"]


def test_frozen_bn_layers_keep_their_statistics_and_use_them():
    model, variables, x, out, new_stats = _bn_training_step((".*",))
    same = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(a, b)), variables["batch_stats"], new_stats
    )
    assert all(jax.tree_util.tree_leaves(same))
    assert relative_error(out, _apply(model)(variables, x)) <= 1e-5  # inference-mode BN


def test_bn_policy_is_per_layer():
    _, variables, _, _, new_stats = _bn_training_step((r"layer[1-3]_.*", "bn1"))
    old = variables["batch_stats"]
    assert np.array_equal(old["layer2_1"]["bn2"]["mean"], new_stats["layer2_1"]["bn2"]["mean"])
    assert np.array_equal(old["bn1"]["var"], new_stats["bn1"]["var"])
    assert not np.array_equal(old["layer4_1"]["bn2"]["mean"], new_stats["layer4_1"]["bn2"]["mean"])


def test_bf16_compute_stays_close_to_fp32_with_real_weights():
    """Measured: max |bf16 - fp32| / max |fp32| ≈ 1.8e-2 on Lite0 logits of the 20 photos; top-1 agrees on 20/20."""
    variables = weights.load("efficientnet_lite0")
    from tests.assets import foolbox_imagenet_photos
    from tljax.data.preprocess import load_eval_image

    prep = weights.get_spec("efficientnet_lite0").preprocessing
    x = np.stack([load_eval_image(p, prep) for p, _ in foolbox_imagenet_photos()[:8]])
    fp32 = np.asarray(_apply(models.get("efficientnet_lite0"))(variables, x))
    bf16 = _apply(models.get("efficientnet_lite0", dtype=jnp.bfloat16))(variables, x)
    assert bf16.dtype == jnp.bfloat16
    bf16 = np.asarray(bf16, np.float32)
    rel = np.max(np.abs(bf16 - fp32)) / np.max(np.abs(fp32))
    assert rel < 0.04, rel
    assert (bf16.argmax(-1) == fp32.argmax(-1)).mean() >= 7 / 8


@pytest.mark.parametrize(
    "size,out",
    [((7, 7), (7, 7)), ((3, 4), (7, 7)), ((13, 9), (7, 7)), ((14, 14), (7, 7)), ((5, 11), (2, 3))],
)
def test_adaptive_avg_pool_matches_torch(size, out):
    x = np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32)
    expected = (
        torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), out)
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(
        adaptive_avg_pool(jnp.asarray(x.transpose(0, 2, 3, 1)), out), expected, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [
        (224, 3, 2, (0, 1)),
        (112, 3, 1, (1, 1)),
        (28, 5, 2, (1, 2)),
        (97, 3, 2, (1, 1)),
        (14, 1, 1, (0, 0)),
    ],
)
def test_tf_same_padding_known_answers(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected
