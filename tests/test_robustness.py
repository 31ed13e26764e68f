"""The robustness evaluation: corrupted accuracies per adaptation, scored after label-free predictions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tests.train import tiny_model
from tljax import corruption_eval as robustness
from tljax.data import corruptions
from tljax.data.preprocess import normalize
from tljax.train.state import make_key
from tljax.weights.registry import Preprocessing


def test_evaluate_robustness_scores_every_corruption_and_adaptation():
    model = tiny_model.TinyCNN(num_classes=4)
    variables = {k: dict(v) for k, v in model.init(make_key(0), jnp.zeros((1, 16, 16, 3))).items()}
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(18, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 4, size=18)
    prep = Preprocessing(mean=(120.0, 110.0, 100.0), std=(60.0, 60.0, 60.0), resize=16, crop=16)
    names = ("gaussian_noise", "contrast")
    results = robustness.evaluate_robustness(
        model, variables, pixels, labels, prep, names=names, severities=(1, 5), batch_size=8
    )
    assert results["examples"] == 16  # two batches of 8; the tail of 2 is dropped everywhere
    # "none" equals an independent forward on the same (corrupted) images.
    for name, severity in (("gaussian_noise", 5), ("contrast", 1)):
        images = corruptions.corrupt(pixels[:16], name, severity, seed=0)
        logits = model.apply(variables, jnp.asarray(normalize(images, prep)), train=False)
        expected = float(np.mean(np.argmax(logits, -1) == labels[:16]))
        assert results["none"]["accuracies"][name][str(severity)] == expected
    for adaptation in robustness.ADAPTATIONS:
        r = results[adaptation]
        values = [v for a in r["accuracies"].values() for v in a.values()]
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)
        np.testing.assert_allclose(r["corruption_accuracy"], np.mean(values))


def test_trained_bn_layers_follow_the_runs_bn_policy():
    from tljax.train.defaults import default_config

    model = tiny_model.TinyCNN(num_classes=4)
    variables = {k: dict(v) for k, v in model.init(make_key(0), jnp.zeros((1, 16, 16, 3))).items()}
    config = default_config()
    with config.unlocked():
        config.recipe = "scratch"
    assert robustness.trained_bn_layers(config, model, variables) == ("stem_bn", "block1_bn")
    with config.unlocked():
        config.recipe = "finetune_top"
        config.optim.trainable_stages = 2  # block1 + classifier train; the stem stays frozen
    assert robustness.trained_bn_layers(config, model, variables) == ("block1_bn",)
    with config.unlocked():
        config.bn.rules = (("stem_bn", "update"), (".*", "frozen"))
    assert robustness.trained_bn_layers(config, model, variables) == ("stem_bn",)
