"""CaffeNet-like net: every tap against an independent PyTorch forward on the same random weights."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict

import tljax.models as models
from tests.models.random_init import random_variables
from tests.models.torch_oracle import relative_error
from tljax.models.caffenet import CONV_LAYOUT


def torch_caffenet_taps(variables, x_nhwc: np.ndarray, batch_norm: bool) -> dict[str, np.ndarray]:
    """The same network written with torch.nn ops (NCHW), weights copied from the Flax variables."""
    flat = {"/".join(k): torch.from_numpy(np.array(v)) for k, v in flatten_dict(variables).items()}
    taps: dict[str, torch.Tensor] = {}
    x = torch.from_numpy(np.asarray(x_nhwc)).permute(0, 3, 1, 2)
    for i, (_, pad, pooled) in enumerate(CONV_LAYOUT, start=1):
        weight = flat[f"params/conv{i}/kernel"].permute(3, 2, 0, 1)  # HWIO → OIHW
        x = torch.nn.functional.conv2d(x, weight, flat[f"params/conv{i}/bias"], padding=pad)
        taps[f"conv{i}"] = x
        if batch_norm:
            x = torch.nn.functional.batch_norm(
                x,
                flat[f"batch_stats/bn{i}/mean"],
                flat[f"batch_stats/bn{i}/var"],
                flat[f"params/bn{i}/scale"],
                flat[f"params/bn{i}/bias"],
                training=False,
                eps=1e-5,
            )
            taps[f"bn{i}"] = x
        x = torch.relu(x)
        taps[f"relu{i}"] = x
        if pooled:
            x = torch.nn.functional.max_pool2d(x, 2, 2)
            taps[f"pool{i}"] = x
    taps["pool"] = x.mean(dim=(2, 3))
    # Flatten in NHWC order, as the Flax model does.
    x = torch.nn.functional.adaptive_avg_pool2d(x, (4, 4)).permute(0, 2, 3, 1).flatten(1)
    for name in ("fc6", "fc7", "classifier"):
        x = x @ flat[f"params/{name}/kernel"] + flat[f"params/{name}/bias"]
        tap = "logits" if name == "classifier" else name
        taps[tap] = x
        if name != "classifier":
            x = torch.relu(x)
            taps[name.replace("fc", "relu")] = x
    return {k: v.permute(0, 2, 3, 1).numpy() if v.ndim == 4 else v.numpy() for k, v in taps.items()}


# 32 px: pool5 is 4×4 already; 28 px (Fashion-MNIST's own size) and 45 px: the adaptive pool's
# overlapping / uneven bins.
@pytest.mark.parametrize(
    "size,batch_norm", [(32, False), (28, True), (45, False)], ids=["32", "28-bn", "45"]
)
def test_every_tap_matches_a_torch_forward(size, batch_norm):
    model = models.get("caffenet", num_classes=5, batch_norm=batch_norm)
    variables = random_variables(model, seed=1, image_size=size)
    x = np.random.default_rng(2).standard_normal((2, size, size, 3)).astype(np.float32)
    names = models.tap_names(model)
    out = jax.jit(model.apply, static_argnames="taps")(variables, x, taps=names)
    reference = torch_caffenet_taps(variables, x, batch_norm)
    assert sorted(out) == sorted(reference)
    for name in names:
        assert relative_error(out[name], reference[name]) <= 1e-5, name
    assert out["logits"].shape == (2, 5)


def test_shapes_do_not_depend_on_the_input_size_and_dropout_acts_in_training():
    model = models.get("caffenet", num_classes=3)
    shapes = [
        jax.tree.map(lambda a: a.shape, random_variables(model, image_size=s)) for s in (28, 32, 64)
    ]
    assert shapes[0] == shapes[1] == shapes[2]
    variables = random_variables(model, image_size=32)
    x = np.ones((4, 32, 32, 3), np.float32)
    apply = jax.jit(model.apply, static_argnames="train")
    eval_logits = apply(variables, x)
    dropped = apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(eval_logits, dropped)  # dropout 0.5 before fc7 and the classifier
    np.testing.assert_array_equal(eval_logits, apply(variables, x))
    # Without the top: the global average of pool5, the same numbers as the `pool` tap.
    backbone = models.get("caffenet", include_top=False)
    convs = {name: variables["params"][name] for (name,) in backbone.layers()}
    pooled = backbone.apply({"params": convs}, x)
    assert pooled.shape == (4, 32)
    np.testing.assert_allclose(pooled, model.apply(variables, x, taps=("pool",))["pool"], rtol=1e-6)
