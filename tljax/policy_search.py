r"""Search a trainable (Faster AutoAugment) policy on a run config's labelled training images; save it.

    python -m tljax.policy_search --config=configs/fashion_mnist_lite0.py --out=/tmp/policy.json \
        [--steps=200] [--seed=0] [--sub_policies=10] [--stages=2] [--config.data.image_size=32 ...]

Reads the config's training split as a run would see it before augmentation (the labelled subset,
resized and centre-cropped at the network's input size), runs
`tljax.data.trainable_policy.search_policy` on it, and writes the policy JSON atomically. A run then uses
it as an example op: `--config.data.augment.example_ops=searched_policy
--config.data.augment.policy_file=/tmp/policy.json`. Prints the first and last steps' losses.
"""

from __future__ import annotations

import time

from absl import flags
from ml_collections import config_flags

from tljax import cli
from tljax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Training config file, `path.py[:arg]` (its data config is read).",
    lock_config=True,
)
_OUT = flags.DEFINE_string("out", None, "Where to write the policy JSON.")
_STEPS = flags.DEFINE_integer("steps", 200, "Search steps (critic + policy update each).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the policy's initialisation and of every draw.")
_SUB_POLICIES = flags.DEFINE_integer("sub_policies", 10, "Sub-policies in the policy.")
_STAGES = flags.DEFINE_integer("stages", 2, "Stages (ops in sequence) per sub-policy.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per batch (a real and an augmented one).")


def main(argv: list[str]) -> None:
    """Reads the training images of `--config`, searches the policy, writes `--out`."""
    del argv
    from tljax.corruption_eval import split_pixels
    from tljax.data import trainable_policy

    if not _OUT.value:
        raise UserError("--out is required (the policy JSON to write)")
    if _STEPS.value < 1 or _SUB_POLICIES.value < 1 or _STAGES.value < 1 or _BATCH.value < 1:
        raise UserError("--steps, --sub_policies, --stages and --batch_size must be at least 1")
    config = _CONFIG.value
    if config is None:
        raise UserError("--config is required (a training config whose data to search on)")
    pixels, labels, _ = split_pixels(config, "train")
    search = trainable_policy.SearchConfig(
        steps=_STEPS.value,
        batch_size=_BATCH.value,
        sub_policies=_SUB_POLICIES.value,
        stages=_STAGES.value,
    )
    started = time.perf_counter()
    try:
        policy, history = trainable_policy.search_policy(
            pixels, labels, int(labels.max()) + 1, search, seed=_SEED.value
        )
    except ValueError as error:  # too few images for the batch size
        raise UserError(str(error)) from None
    trainable_policy.save_policy(_OUT.value, policy)
    first, last = history[0], history[-1]
    print(
        f"searched {len(history)} steps on {len(pixels)} images {pixels.shape[1]}² in "
        f"{time.perf_counter() - started:.0f} s; first step {first}, last step {last} → {_OUT.value}"
    )


if __name__ == "__main__":
    cli.run(main)
