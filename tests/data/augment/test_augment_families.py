"""mixup/CutMix, RandAugment, AugMix and the JSD loss against NumPy references for the same draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from tljax.data.augment import augmix, device, mix, ops, randaugment

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Four real 24×24 crops in [0, 1], float32 `[4, 24, 24, 3]`."""
    sources = [
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.rocket(),
    ]
    return np.stack([s[::10, ::10][:24, :24] for s in sources]).astype(np.float32) / 255.0


def _smooth_numpy(labels: np.ndarray, smoothing: float) -> np.ndarray:
    # timm's mixup_target: off = ε/K, on = 1 - ε + ε/K.
    off = smoothing / NUM_CLASSES
    targets = np.full((len(labels), NUM_CLASSES), off)
    targets[np.arange(len(labels)), labels] = 1.0 - smoothing + off
    return targets


def test_label_smoothing_is_timms_formula():
    labels = np.array([0, 3, 4, 1])
    for smoothing in (0.0, 0.1, 0.3):
        np.testing.assert_allclose(
            np.asarray(mix.soft_targets(jnp.asarray(labels), NUM_CLASSES, smoothing)),
            _smooth_numpy(labels, smoothing),
            rtol=1e-6,
        )


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_images_are_the_convex_combination_and_targets_sum_to_one(mode, photos):
    config = mix.MixConfig(mixup_alpha=0.4, cutmix_alpha=0.0, mode=mode, label_smoothing=0.1)
    labels = np.array([0, 1, 2, 3])
    draws = mix.draw(jax.random.key(1), config, *photos.shape[:3])
    images, targets = mix.apply_draws(
        jnp.asarray(photos), mix.soft_targets(jnp.asarray(labels), NUM_CLASSES, 0.1), draws
    )
    lam = np.asarray(draws["lam"], np.float64)
    assert not np.asarray(draws["use_cutmix"]).any()
    assert ((lam > 0) & (lam < 1)).all()
    if mode == "batch":
        assert np.unique(lam).size == 1
    if mode == "pair":
        np.testing.assert_array_equal(lam, lam[::-1])
    weight = lam[:, None, None, None]
    expected = photos * weight + photos[::-1] * (1.0 - weight)
    # float32 arithmetic against a float64 reference: 1e-6 on [0, 1] values.
    np.testing.assert_allclose(np.asarray(images), expected, atol=1e-6)
    smooth = _smooth_numpy(labels, 0.1)
    np.testing.assert_allclose(
        np.asarray(targets), lam[:, None] * smooth + (1 - lam[:, None]) * smooth[::-1], atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_cutmix_lambda_is_the_kept_area_fraction_exactly(mode):
    # Each example a constant image of its own index, so the pasted pixels can be counted.
    batch, height, width = 6, 20, 28
    images = jnp.broadcast_to(
        jnp.arange(batch, dtype=jnp.float32)[:, None, None, None], (batch, height, width, 3)
    )
    labels = jnp.arange(batch) % NUM_CLASSES
    config = mix.MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode, label_smoothing=0.0)
    for seed in range(4):
        draws = mix.draw(jax.random.key(seed), config, batch, height, width)
        mixed, targets = mix.apply_draws(images, mix.soft_targets(labels, NUM_CLASSES, 0.0), draws)
        mixed = np.asarray(mixed)[..., 0]
        for i in range(batch):
            own = np.mean(mixed[i] == i)
            partner = np.mean(mixed[i] == batch - 1 - i)
            assert own + partner == 1.0
            assert float(draws["lam"][i]) == pytest.approx(own, abs=1e-7)
        np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, atol=1e-6)


def test_mix_prob_zero_leaves_the_batch_alone(photos):
    config = mix.MixConfig(
        mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0, mode="elem", label_smoothing=0.0
    )
    images, targets = mix.mix_batch(
        jax.random.key(0), jnp.asarray(photos), jnp.arange(4), NUM_CLASSES, config
    )
    np.testing.assert_array_equal(np.asarray(images), photos)
    np.testing.assert_array_equal(np.asarray(targets), np.eye(NUM_CLASSES)[:4])


def test_randaugment_is_the_drawn_ops_in_order(photos):
    config = randaugment.RandAugmentConfig(num_ops=3, magnitude=7, magnitude_std=0.5, prob=0.7)
    image = jnp.asarray(photos[1])
    for seed in range(3):
        draws = randaugment.draw(jax.random.key(seed), config)
        out = np.asarray(
            jax.jit(lambda im, d: randaugment.apply_draws(im, d, config))(image, draws)
        )
        expected = image
        for i in range(config.num_ops):
            if bool(draws["apply"][i]):
                name = config.ops[int(draws["op"][i])]
                expected = jax.jit(ops.OPS[name])(expected, draws["magnitude"][i], draws["key"][i])
        np.testing.assert_allclose(out, np.asarray(expected), atol=1e-5)
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        magnitude = np.asarray(draws["magnitude"])
        assert ((magnitude >= 0) & (magnitude <= 1)).all()


def test_randaugment_refuses_out_of_range_magnitude_and_unknown_ops():
    with pytest.raises(ValueError, match=r"magnitude 11 is outside \[0, 10\]"):
        randaugment.RandAugmentConfig(magnitude=11)
    with pytest.raises(ValueError, match="unknown op.*'blur'.*valid ops:"):
        randaugment.RandAugmentConfig(ops=("rotate", "blur"))


def _augmix_numpy(image: np.ndarray, draws: dict, config: augmix.AugMixConfig) -> np.ndarray:
    """The paper's augment_and_mix in NumPy float64 for the given draws; each op is `ops.OPS` (PIL-tested)."""
    mixed = np.zeros_like(image, dtype=np.float64)
    weights = np.asarray(draws["weights"], np.float64)
    for chain in range(config.width):
        augmented = jnp.asarray(image)
        for step in range(int(draws["depth"][chain])):
            name = config.ops[int(draws["op"][chain, step])]
            augmented = jax.jit(ops.OPS[name])(
                augmented, draws["magnitude"][chain, step], draws["key"][chain, step]
            )
        mixed += weights[chain] * np.asarray(augmented, np.float64)
    skip = float(draws["skip"])
    return (1 - skip) * image + skip * mixed


def test_augmix_equals_a_numpy_reimplementation_for_the_same_draws(photos):
    depth = -1
    config = augmix.AugMixConfig(depth=depth, severity=3, all_ops=True)
    assert set(augmix.IMAGENET_C_OVERLAP_OPS).isdisjoint(augmix.AugMixConfig().ops)
    image = photos[2]
    apply = jax.jit(lambda im, d: augmix.apply_draws(im, d, config))
    for seed in range(2):
        draws = augmix.draw(jax.random.key(seed), config)
        assert float(jnp.sum(draws["weights"])) == pytest.approx(1.0, abs=1e-6)
        depths = np.asarray(draws["depth"])
        assert ((depths >= 1) & (depths <= 3)).all() and (depth < 0 or (depths == depth).all())
        out = np.asarray(apply(jnp.asarray(image), draws))
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.shape == image.shape
        np.testing.assert_allclose(out, _augmix_numpy(image, draws, config), atol=2e-5)


def _jsd_numpy(*logits: np.ndarray) -> float:
    probs = [np.exp(x - x.max(-1, keepdims=True)) for x in logits]
    probs = [p / p.sum(-1, keepdims=True) for p in probs]
    log_m = np.log(np.clip(sum(probs) / 3, 1e-7, 1))
    # torch's F.kl_div(log_m, p, reduction="batchmean"), as the AugMix code calls it.
    return float(np.mean(sum(np.sum(p * (np.log(p) - log_m), -1) for p in probs)) / 3)


def test_jsd_consistency_equals_numpy():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(6, NUM_CLASSES)) * scale for scale in (1.0, 3.0, 0.5)]
    value = float(augmix.jsd_consistency(*(jnp.asarray(x, jnp.float32) for x in logits)))
    assert value == pytest.approx(_jsd_numpy(*logits), rel=1e-5)
    assert float(augmix.jsd_consistency(*(jnp.asarray(logits[0]),) * 3)) == pytest.approx(
        0.0, abs=1e-6
    )


MEAN, STD = (120.0, 110.0, 100.0), (60.0, 58.0, 57.0)


def _augment(image_ops=("randaugment",), batch_ops=(), jsd=True):
    return device.DeviceAugment(
        num_classes=NUM_CLASSES,
        mean=MEAN,
        std=STD,
        label_smoothing=0.1,
        image_ops=image_ops,
        randaugment=randaugment.RandAugmentConfig(),
        augmix=augmix.AugMixConfig(jsd=jsd),
        mix=mix.MixConfig(mode="elem", label_smoothing=0.1) if batch_ops else None,
    )


def test_device_augment_same_key_same_batch_and_compiles_once(photos):
    normalised = (photos * 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    batch = {"image": jnp.asarray(normalised, jnp.float32), "label": jnp.arange(4)}
    augment = _augment(image_ops=("randaugment",), batch_ops=("mixup", "cutmix"))
    traces = []

    @jax.jit
    def run(batch, key):
        traces.append(1)
        return augment(batch, key)

    first = run(batch, jax.random.key(5))
    again = run(batch, jax.random.key(5))
    other = run(batch, jax.random.key(6))
    assert len(traces) == 1
    for name in ("image", "target"):
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(again[name]))
    assert not np.array_equal(np.asarray(first["image"]), np.asarray(other["image"]))
    np.testing.assert_allclose(np.asarray(first["target"]).sum(-1), 1.0, atol=1e-6)


def test_device_augmix_jsd_batch_is_clean_then_two_views(photos):
    normalised = (photos * 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    batch = {"image": jnp.asarray(normalised, jnp.float32), "label": jnp.arange(4)}
    augment = _augment(image_ops=("augmix",))
    assert augment.views == 3 and augment.jsd_weight == 12.0
    out = jax.jit(augment)(batch, jax.random.key(0))
    images = np.asarray(out["image"])
    assert images.shape == (12, 24, 24, 3)
    np.testing.assert_array_equal(images[:4], normalised.astype(np.float32))
    unit = images[4:] * np.asarray(STD) / 255.0 + np.asarray(MEAN) / 255.0
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
    assert not np.allclose(images[4:8], images[8:])
    np.testing.assert_allclose(
        np.asarray(out["target"]), _smooth_numpy(np.arange(4), 0.1), atol=1e-6
    )


def _primitives(jaxpr) -> set[str]:
    """Every primitive name in a closed jaxpr, sub-jaxprs (scan bodies, switch branches) included."""
    names = set()
    for equation in jaxpr.eqns:
        names.add(equation.primitive.name)
        for value in equation.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(sub, "jaxpr"):
                    names |= _primitives(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub)
                elif hasattr(sub, "eqns"):
                    names |= _primitives(sub)
    return names


@pytest.mark.parametrize("image_ops", [("randaugment",), ("augmix",)])
def test_families_switch_per_example_instead_of_computing_every_op(image_ops, photos):
    # Vmapping the per-example op choice turns `lax.switch` into a select that runs every op on every
    # image (tens of times slower); a real `cond` must survive in the compiled program, JSD views included.
    normalised = (photos * 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    batch = {"image": jnp.asarray(normalised, jnp.float32), "label": jnp.arange(4)}
    jaxpr = jax.make_jaxpr(_augment(image_ops=image_ops))(batch, jax.random.key(0))
    assert "cond" in _primitives(jaxpr.jaxpr)
