"""Config validation for every training config, in one place, before anything is written.

`validate_config(config)` checks each key `train_and_evaluate` (and the linear probe) reads against its
valid range and refuses the config with one `ConfigError` line naming every bad key, its value and the
range — so `train.steps=-5` cannot "finish" with an untrained model, `data.train_per_class=0` cannot mean
"all", `train.batch_size=0` is not a ZeroDivisionError deep in the loop and `train.keep_checkpoints=0`
cannot make resuming impossible. `unused_rules(...)` finds the regex rules of `optim.param_rules` and
`bn.rules` that match nothing (usually a typo while the catch-all still matches everything), which
`train_and_evaluate` logs as warnings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tljax.errors import ConfigError
from tljax.optim.recipes import RECIPES as TRAINING_RECIPES
from tljax.optim.recipes import TRANSFER_MODES
from tljax.typing import Config

RECIPES = (*TRAINING_RECIPES, "linear_probe")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16")
PROBE_CLASSIFIERS = ("logistic", "linear_svc", "optax")

_MISSING = object()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(
    bound: float, *, integer: bool = False, optional: bool = False
) -> tuple[Callable, str]:
    kind = "an integer" if integer else "a number"
    text = f"{kind} >= {bound:g}" + (" (or None)" if optional else "")

    def check(value: Any) -> bool:
        if value is None:
            return optional
        return (_integer(value) if integer else _number(value)) and value >= bound

    return check, text


def _above(bound: float) -> tuple[Callable, str]:
    return (lambda value: _number(value) and value > bound), f"a number > {bound:g}"


def _interval(low: float, high: float, *, closed_high: bool) -> tuple[Callable, str]:
    bracket = "]" if closed_high else ")"

    def check(value: Any) -> bool:
        return _number(value) and low <= value and (value <= high if closed_high else value < high)

    return check, f"a number in [{low:g}, {high:g}{bracket}"


def _one_of(choices: Sequence[str]) -> tuple[Callable, str]:
    return (lambda value: value in choices), "one of " + ", ".join(repr(c) for c in choices)


def _pair(low: float, high: float) -> tuple[Callable, str]:
    def check(value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(_number(v) for v in value)
            and low < value[0] <= value[1] <= high
        )

    high_text = "inf" if math.isinf(high) else f"{high:g}"
    return check, f"a pair (lo, hi) with {low:g} < lo <= hi <= {high_text}"


def _taps(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(t, str) for t in value)
    )


def _resolutions(value: Any) -> bool:
    return value is None or (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(_integer(v) and v >= 1 for v in value)
    )


# key → (check, the valid range as the message states it). Keys a config does not have are skipped, so
# older or partial configs (tests, the sweep engine's) validate too.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "recipe": _one_of(RECIPES),
    "seed": (_integer, "an integer"),
    "model.dtype": _one_of(DTYPES),
    "optim.name": _one_of(OPTIMIZERS),
    "optim.lr": _above(0),
    "optim.momentum": _interval(0, 1, closed_high=False),
    "optim.b1": _interval(0, 1, closed_high=False),
    "optim.b2": _interval(0, 1, closed_high=False),
    "optim.eps": _above(0),
    "optim.weight_decay": _at_least(0),
    "optim.schedule": _one_of(SCHEDULES),
    "optim.warmup_steps": _at_least(0, integer=True),
    "optim.grad_clip": _at_least(0),
    "optim.trainable_stages": _at_least(1, integer=True),
    # 0 freezes the backbone by learning rate; the "frozen" group is the better way, but 0 is meaningful.
    "optim.backbone_lr_mult": _at_least(0),
    "optim.layer_decay": _interval(0, 1, closed_high=True),
    "optim.label_smoothing": _interval(0, 1, closed_high=False),
    # transfer.layers' upper bound is the model's number of layers, checked where the model is known.
    "transfer.layers": _at_least(0, integer=True),
    "transfer.mode": _one_of(TRANSFER_MODES),
    "transfer.lr_mult": _at_least(0),
    "train.batch_size": _at_least(1, integer=True),
    "train.eval_batch_size": _at_least(1, integer=True),
    "train.steps": (
        lambda v: _integer(v) and v >= 0,
        "an integer > 0 (or 0 to derive it from train.epochs)",
    ),
    "train.epochs": _at_least(0),
    "train.log_every": _at_least(1, integer=True),
    "train.eval_every": (
        lambda v: _integer(v) and v >= 0,
        "an integer >= 1 (or 0 for once per epoch)",
    ),
    "train.checkpoint_every": _at_least(1, integer=True),
    "train.keep_checkpoints": _at_least(1, integer=True),
    "train.precise_bn_batches": _at_least(0, integer=True),
    "data.image_size": _at_least(1, integer=True, optional=True),
    "data.resize_size": _at_least(1, integer=True, optional=True),
    "data.train_per_class": (
        lambda v: v is None or (_integer(v) and v >= 1),
        "an integer >= 1 (or None / shots=all for the full training set)",
    ),
    "data.val_per_class": (
        lambda v: v is None or (_integer(v) and v >= 1),
        "an integer >= 1 (or None for no per-class validation split)",
    ),
    "data.val_fraction": _interval(0, 1, closed_high=False),
    "data.test_fraction": _interval(0, 1, closed_high=False),
    "data.test_per_class": (
        lambda v: v is None or (_integer(v) and v >= 1),
        "an integer >= 1 (or None for the whole test split)",
    ),
    "data.num_workers": _at_least(0, integer=True),
    "data.prefetch_batches": _at_least(0, integer=True),
    "data.augment.scale": _pair(0, 1),
    "data.augment.ratio": _pair(0, math.inf),
    "data.augment.hflip_prob": _interval(0, 1, closed_high=True),
    "data.augment.mix.mixup_alpha": _at_least(0),
    "data.augment.mix.cutmix_alpha": _at_least(0),
    "data.augment.mix.prob": _interval(0, 1, closed_high=True),
    "data.augment.mix.switch_prob": _interval(0, 1, closed_high=True),
    "data.augment.mix.mode": _one_of(("batch", "pair", "elem")),
    "data.augment.randaugment.num_ops": _at_least(1, integer=True),
    "data.augment.randaugment.magnitude": (
        lambda v: _number(v) and 0 <= v <= 10,
        "a number in [0, 10] (RandAugment's M, on the /10 scale)",
    ),
    "data.augment.randaugment.magnitude_std": _at_least(0),
    "data.augment.randaugment.prob": _interval(0, 1, closed_high=True),
    "data.augment.augmix.width": _at_least(1, integer=True),
    "data.augment.augmix.depth": (
        lambda v: _integer(v) and v <= 3,
        "an integer <= 3 (1..3 fixed, <= 0 random in 1..3)",
    ),
    "data.augment.augmix.severity": (
        lambda v: _number(v) and 0.1 <= v <= 10,
        "a number in [0.1, 10] (AugMix's severity, levels drawn in [0.1, severity])",
    ),
    "data.augment.augmix.alpha": _above(0),
    "data.augment.augmix.jsd_weight": _at_least(0),
    "probe.taps": (_taps, "a non-empty list of tap names"),
    "probe.resolutions": (_resolutions, "None or a non-empty list of integers >= 1"),
    "probe.classifier": _one_of(PROBE_CLASSIFIERS),
    "probe.C": _above(0),
    "probe.max_iter": _at_least(1, integer=True),
    "probe.batch_size": _at_least(1, integer=True),
    "probe.optax_steps": _at_least(1, integer=True),
    "probe.optax_lr": _above(0),
}


def _get(config: Config, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return _MISSING
    return node


def config_problems(config: Config) -> list[str]:
    """Every out-of-range key of `config` as `"key=value: must be <range>"` (empty when valid)."""
    problems = []
    for key, (check, valid) in RULES.items():
        value = _get(config, key)
        if value is _MISSING:
            continue
        if not check(value):
            problems.append(f"{key}={value!r}: must be {valid}")
    steps, epochs = _get(config, "train.steps"), _get(config, "train.epochs")
    if steps == 0 and _number(epochs) and epochs <= 0 and _get(config, "recipe") != "linear_probe":
        problems.append(
            f"train.steps=0 and train.epochs={epochs!r}: nothing to train; set train.steps > 0 or "
            "train.epochs > 0"
        )
    problems += _class_problems(config)
    problems += _augment_problems(config)
    for key in ("optim.param_rules", "bn.rules"):
        rules = _get(config, key)
        for index, rule in enumerate(rules or ()):
            pattern = rule[0] if isinstance(rule, list | tuple) and len(rule) == 2 else None
            if not isinstance(pattern, str):
                problems.append(f"{key}[{index}]={rule!r}: must be a (regex, group) pair")
                continue
            try:
                re.compile(pattern)
            except re.error as error:
                problems.append(f"{key}[{index}]: invalid regex {pattern!r} ({error})")
            if key == "optim.param_rules":
                problems += _group_problems(f"{key}[{index}]", rule[1])
    return problems


def _group_problems(where: str, spec: Any) -> list[str]:
    """A parameter group's own numbers: lr_mult >= 0 (0 trains nothing; "frozen" is the clear way to
    say so) and weight_decay >= 0; a negative one would ascend the loss or grow the weights."""
    from tljax.optim.param_groups import parse_group

    try:
        group = parse_group(spec)
    except (TypeError, ValueError) as error:
        return [f"{where}: {error}"]
    problems = []
    if not (math.isfinite(group.lr_mult) and group.lr_mult >= 0):
        problems.append(f"{where} lr_mult={group.lr_mult:g}: must be a number >= 0")
    if group.weight_decay is not None and not (
        math.isfinite(group.weight_decay) and group.weight_decay >= 0
    ):
        problems.append(f"{where} weight_decay={group.weight_decay:g}: must be a number >= 0")
    return problems


def _class_problems(config: Config) -> list[str]:
    """`data.classes` checked against the dataset's class names where they are known without reading
    any data (the IDX datasets), and its form everywhere (`half:A`/`half:B`, not empty)."""
    from tljax.data.classes import HALF_PREFIX, resolve_classes
    from tljax.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES

    selection = _get(config, "data.classes")
    if selection is _MISSING or selection is None:
        return []
    known = {"fashion_mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}.get(
        _get(config, "data.source")
    )
    if known is None:
        if not (isinstance(selection, str) and selection.strip().startswith(HALF_PREFIX)):
            return []  # names of an image folder / tfds dataset: checked when the data is indexed
        known = ("first", "second")  # any two names: only the half's side is checked
    seed = _get(config, "data.class_seed")
    try:
        resolve_classes(selection, list(known), seed if _integer(seed) else 0)
    except ConfigError as error:
        return [str(error)]
    return []


def _augment_problems(config: Config) -> list[str]:
    """The op names under `data.augment` against the registries (host ops, on-device families and
    ops), each unknown one reported with the valid names; AugMix's 3-view JSD batch with mixup/CutMix."""
    from tljax.data import augment

    valid_names = {
        "data.augment.example_ops": sorted(augment.EXAMPLE_OPS),
        "data.augment.batch_ops": sorted(augment.BATCH_OPS) + list(augment.device.DEVICE_BATCH_OPS),
        "data.augment.image_ops": list(augment.device.IMAGE_FAMILIES),
        "data.augment.randaugment.ops": sorted(augment.ops.OPS),
    }
    problems, chosen = [], {}
    for key, valid in valid_names.items():
        value = _get(config, key)
        if value is _MISSING or value is None:
            continue
        if not isinstance(value, list | tuple):
            problems.append(f"{key}={value!r}: must be a tuple of names from {', '.join(valid)}")
            continue
        unknown = [name for name in value if name not in valid]
        if unknown:
            problems.append(f"{key}: unknown {unknown}; valid: {', '.join(valid)}")
        chosen[key] = list(value)
    device_batch_ops = [
        name
        for name in chosen.get("data.augment.batch_ops", [])
        if name in augment.device.DEVICE_BATCH_OPS
    ]
    if (
        "augmix" in chosen.get("data.augment.image_ops", [])
        and _get(config, "data.augment.augmix.jsd") is True
        and device_batch_ops
    ):
        problems.append(
            "data.augment.image_ops has 'augmix' with augmix.jsd=True and batch_ops "
            f"{device_batch_ops}: the JSD loss needs the clean image; drop those batch ops or set "
            "data.augment.augmix.jsd=False"
        )
    return problems


def validate_config(config: Config) -> None:
    """Raises one `ConfigError` line naming every bad key, its value and its valid range."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(
            "invalid config: "
            + "; ".join(problems)
            + " (fix the config file or override, e.g. --config.train.steps=100)"
        )


def unused_rules(rules: Iterable[Sequence[Any]] | None, paths: Iterable[str]) -> list[str]:
    """The regexes of `rules` (`(regex, group)` pairs) that full-match none of `paths`.

    Such a rule is almost always a typo whose parameters silently fall through to a later rule (the
    catch-all), so the caller warns with its name.
    """
    paths = list(paths)
    unused = []
    for rule in rules or ():
        regex = re.compile(rule[0])
        if not any(regex.fullmatch(path) for path in paths):
            unused.append(str(rule[0]))
    return unused
