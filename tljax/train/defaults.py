"""`default_config()`: every key `train_and_evaluate` reads, documented, for the files in `configs/`.

Config files start from this, set what their recipe needs and return it locked, so a typo on the command
line (`--config.optim.lrr=0.1`) is an error instead of a silently ignored setting.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from tljax.data import default_data_config


def default_config() -> ml_collections.ConfigDict:
    """The full, unlocked training config (callers lock it).

    Keys:
      recipe: "feature_extractor" | "finetune_top" | "finetune_all" | "scratch" | "linear_probe" |
        "transfer".
      seed: one seed for init, data order, augmentation and dropout.
      model.name: a `tljax.models` name; model.dtype: "float32" or "bfloat16" (compute dtype; the
        parameters and optimizer stay float32).
      weights.name: registered weights name, file/dir path, or a finished run "run:WORKDIR" (its final
        variables; "run:WORKDIR#best" its best); None = random init (the scratch recipe).
      weights.skip: regexes of Flax paths not loaded (the new head).
      weights.preprocessing: registered weights name whose mean/std/size to use when weights.name is None
        or a path (scratch uses the same inputs as the pretrained run it is compared with).
      data: see `tljax.data.default_data_config`.
      optim.name/lr/momentum/nesterov/b1/b2/eps/weight_decay/schedule/warmup_steps/grad_clip: the base
        optimizer (`tljax.optim.OptimConfig`); schedule "cosine" or "constant".
      optim.param_rules: None = the recipe's rules, else ((regex, group), ...) — see `tljax.optim`.
      optim.trainable_stages (finetune_top), optim.backbone_lr_mult and optim.layer_decay (finetune_all).
      optim.label_smoothing: cross-entropy label smoothing.
      transfer.layers: the transfer recipe copies layers 1..n of `model.layers()` from weights.name and
        re-initialises the rest (seeded, the model's initialisers); transfer.mode "frozen" (Yosinski's
        AnB/BnB: no updates, no optimizer state) or "finetune" (AnB+/BnB+) at transfer.lr_mult × lr.
      bn.rules: None or () = BN statistics frozen exactly where the BN's scale/bias are frozen (a frozen
        backbone runs in inference mode), else ((regex, "frozen" | "update"), ...).
      train.batch_size; train.steps (0 = derive from train.epochs); train.log_every, train.eval_every
        (0 = once per epoch), train.checkpoint_every (steps), train.keep_checkpoints, eval_batch_size.
      train.precise_bn_batches: after training, recompute the running statistics of the BN layers that
        update, as the average over this many unaugmented training batches (0 = keep the moving averages).
      probe.*: the linear probe (see `tljax.train.linear_probe`).
    """
    config = ml_collections.ConfigDict()
    config.recipe = "finetune_all"
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "efficientnet_lite0"
    config.model.dtype = "float32"

    config.weights = ml_collections.ConfigDict()
    config.weights.name = config_dict.placeholder(str)
    config.weights.skip = (r"classifier/.*",)
    config.weights.preprocessing = config_dict.placeholder(str)

    config.data = default_data_config()

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adamw"
    config.optim.lr = 1e-3
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 0
    config.optim.grad_clip = 0.0
    config.optim.param_rules = config_dict.placeholder(tuple)
    config.optim.trainable_stages = 2
    config.optim.backbone_lr_mult = 0.1
    config.optim.layer_decay = 0.0
    config.optim.label_smoothing = 0.0

    config.transfer = ml_collections.ConfigDict()
    config.transfer.layers = 0
    config.transfer.mode = "frozen"
    config.transfer.lr_mult = 1.0

    config.bn = ml_collections.ConfigDict()
    config.bn.rules = config_dict.placeholder(tuple)

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 32
    config.train.eval_batch_size = 256
    config.train.steps = 0
    config.train.epochs = 10
    config.train.log_every = 10
    config.train.eval_every = 0
    config.train.checkpoint_every = 100
    config.train.keep_checkpoints = 2
    config.train.precise_bn_batches = 0

    # Scale-out (tljax.parallel): the device mesh as (axis, size) pairs, -1 = the devices left over; the
    # batch is split over "data". `rules` = ((regex, axis), ...) splits matching parameters (and their
    # optimizer slots) over a second mesh axis; everything else is replicated. `prefetch` = batches
    # copied to the devices ahead of the step.
    config.parallel = ml_collections.ConfigDict()
    config.parallel.mesh = (("data", -1),)
    config.parallel.rules = ()
    config.parallel.prefetch = 2

    config.probe = ml_collections.ConfigDict()
    config.probe.taps = ("pool",)
    config.probe.resolutions = config_dict.placeholder(tuple)  # None = data.image_size only
    config.probe.classifier = "logistic"  # "logistic" | "linear_svc" | "optax"
    config.probe.C = 1.0
    config.probe.max_iter = 2000
    config.probe.standardize = True
    config.probe.batch_size = 128
    config.probe.optax_steps = 500
    config.probe.optax_lr = 1e-2
    config.probe.cache_dir = config_dict.placeholder(str)  # None = <workdir>/features
    return config


def parse_config_arg(arg: str | None, **defaults: Any) -> dict[str, Any]:
    """`configs/x.py:shots=10,model=resnet18` → `{"shots": 10, "model": "resnet18"}` over `defaults`.

    A bare value (`configs/x.py:10`) sets the first default's key. Values are converted to the type of
    the default; unknown keys are an error.
    """
    values = dict(defaults)
    if not arg:
        return values
    for index, item in enumerate(filter(None, arg.split(","))):
        if "=" in item:
            key, text = item.split("=", 1)
        elif index == 0 and defaults:
            key, text = next(iter(defaults)), item
        else:
            raise ValueError(f"config argument {item!r}: expected key=value")
        if key not in defaults:
            raise ValueError(f"config argument {key!r} unknown; valid: {sorted(defaults)}")
        default = defaults[key]
        if text.lower() in ("none", "all"):
            values[key] = None
        elif isinstance(default, bool):
            values[key] = text.lower() in ("1", "true", "yes")
        elif isinstance(default, int) or (default is None and text.isdigit()):
            values[key] = int(text)
        elif isinstance(default, float):
            values[key] = float(text)
        else:
            values[key] = text
    return values
