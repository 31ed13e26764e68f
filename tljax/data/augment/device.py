"""The on-device augmentation of a training batch, built from `config.data.augment`, run in the train step.

`DeviceAugment(batch, key) -> batch` takes the pipeline's normalised batch `{"image": float32 [B, H, W, 3],
"label": int32 [B]}`, maps the images back to [0, 1] with the weights' `Preprocessing`, applies the image
families named in `augment.image_ops` ("randaugment", "augmix") per example, then the batch ops named
in `augment.batch_ops` ("mixup", "cutmix"), and normalises again. It returns
- `image`: `[V·B, H, W, 3]` where V = 3 with AugMix's JSD loss (clean, augmented, augmented: the clean
  third is the input, untouched) and 1 otherwise;
- `label`: `[B]` unchanged (for the accuracy metric);
- `target`: `[B, K]` soft targets (label smoothing folded in, mixed by mixup/CutMix), what the loss reads.

It is a frozen dataclass of static settings, so it is a compile-time constant of the jitted step; all
randomness comes from `key` (the step derives it with `fold_in(rng, step)`), split one key per example,
so a resumed run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from tljax.data.augment import augmix as augmix_lib
from tljax.data.augment import mix as mix_lib
from tljax.data.augment import randaugment as randaugment_lib
from tljax.data.augment.host import DEVICE_BATCH_OPS

IMAGE_FAMILIES = ("randaugment", "augmix")


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
    """Static on-device augmentation settings; call it inside jit as `augment(batch, key)`."""

    num_classes: int
    mean: tuple[float, float, float]  # 0..255 pixel units, as `Preprocessing`
    std: tuple[float, float, float]
    label_smoothing: float = 0.0
    image_ops: tuple[str, ...] = ()
    randaugment: randaugment_lib.RandAugmentConfig | None = None
    augmix: augmix_lib.AugMixConfig | None = None
    mix: mix_lib.MixConfig | None = None

    @property
    def views(self) -> int:
        """Images per example in the output: 3 (clean + 2 AugMix views) for the JSD loss, else 1."""
        return 3 if self.jsd_weight is not None else 1

    @property
    def jsd_weight(self) -> float | None:
        """The JSD loss weight when AugMix runs with its consistency loss, else None."""
        if "augmix" in self.image_ops and self.augmix is not None and self.augmix.jsd:
            return self.augmix.jsd_weight
        return None

    def _to_unit(self, images: jax.Array) -> jax.Array:
        mean, std = jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32)
        return jnp.clip((images * std + mean) / 255.0, 0.0, 1.0)

    def _from_unit(self, images: jax.Array) -> jax.Array:
        mean, std = jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.std, jnp.float32)
        return (images * 255.0 - mean) / std

    def _image_ops(self, view_keys: jax.Array, images: jax.Array) -> jax.Array:
        """`images [V·B, H, W, C]` (V stacked copies of a batch, in [0, 1]) through the image families,
        view v's examples drawing from `view_keys[v]`."""
        views = view_keys.shape[0]
        batch = images.shape[0] // views
        for index, name in enumerate(self.image_ops):
            # Example i of view v gets split(fold_in(view_keys[v], index), B)[i]: one flat batch of
            # V·B examples, so the families are traced once, and lax.map runs them one by one (a vmap
            # over views would batch their op switches into selects that compute every op).
            keys = jax.vmap(lambda k, i=index: jax.random.split(jax.random.fold_in(k, i), batch))(
                view_keys
            ).reshape(views * batch)
            if name == "randaugment":
                assert self.randaugment is not None
                images = randaugment_lib.randaugment_examples(keys, images, self.randaugment)
            else:
                assert self.augmix is not None
                images = augmix_lib.augmix_examples(keys, images, self.augmix)
        return images

    def __call__(self, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        """The augmented batch (see the module docstring); jit-able, shapes static."""
        images, labels = batch["image"], batch["label"]
        k_views, k_mix = jax.random.split(key)
        targets = mix_lib.soft_targets(labels, self.num_classes, self.label_smoothing)
        if self.views == 3:
            unit = self._to_unit(images)
            views = self._image_ops(jax.random.split(k_views, 2), jnp.concatenate([unit, unit]))
            augmented = self._from_unit(views)
            return {
                "image": jnp.concatenate([images, augmented]),
                "label": labels,
                "target": targets,
            }
        if self.image_ops:
            images = self._from_unit(self._image_ops(k_views[None], self._to_unit(images)))
        if self.mix is not None:
            # Mixing is linear, so mixing normalised images equals normalising mixed ones.
            images, targets = mix_lib.apply_draws(
                images, targets, mix_lib.draw(k_mix, self.mix, *images.shape[:3])
            )
        return {"image": images, "label": labels, "target": targets}


def from_config(
    augment_config: Any, preprocessing: Any, num_classes: int, label_smoothing: float = 0.0
) -> DeviceAugment | None:
    """The `DeviceAugment` that `augment_config` (`config.data.augment`) asks for, None if nothing.

    Expects a config that `tljax.train.validate` accepted (names and ranges are checked there, with
    the valid choices in the message); the dataclasses re-check what they can.
    """
    if not augment_config.get("enabled", True):
        return None
    image_ops = tuple(augment_config.get("image_ops", ()) or ())
    batch_ops = [
        name for name in augment_config.get("batch_ops", ()) or () if name in DEVICE_BATCH_OPS
    ]
    if not image_ops and not batch_ops:
        return None
    randaugment = augmix = mix = None
    if "randaugment" in image_ops:
        settings = augment_config.randaugment
        randaugment = randaugment_lib.RandAugmentConfig(
            num_ops=int(settings.num_ops),
            magnitude=float(settings.magnitude),
            magnitude_std=float(settings.magnitude_std),
            prob=float(settings.prob),
            ops=tuple(settings.ops),
        )
    if "augmix" in image_ops:
        settings = augment_config.augmix
        augmix = augmix_lib.AugMixConfig(
            width=int(settings.width),
            depth=int(settings.depth),
            severity=float(settings.severity),
            alpha=float(settings.alpha),
            all_ops=bool(settings.all_ops),
            jsd=bool(settings.jsd),
            jsd_weight=float(settings.jsd_weight),
        )
    if batch_ops:
        settings = augment_config.mix
        mix = mix_lib.MixConfig(
            mixup_alpha=float(settings.mixup_alpha) if "mixup" in batch_ops else 0.0,
            cutmix_alpha=float(settings.cutmix_alpha) if "cutmix" in batch_ops else 0.0,
            prob=float(settings.prob),
            switch_prob=float(settings.switch_prob),
            mode=str(settings.mode),  # type: ignore[arg-type]  # checked by MixConfig
            label_smoothing=float(label_smoothing),
        )
    augment = DeviceAugment(
        num_classes=int(num_classes),
        mean=tuple(float(v) for v in preprocessing.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in preprocessing.std),  # type: ignore[arg-type]
        label_smoothing=float(label_smoothing),
        image_ops=image_ops,
        randaugment=randaugment,
        augmix=augmix,
        mix=mix,
    )
    if augment.views == 3 and mix is not None:
        raise ValueError(
            "augment: AugMix with its JSD loss (augmix.jsd=True) cannot be combined with "
            f"batch_ops {batch_ops}: drop them or set augment.augmix.jsd=False"
        )
    return augment
