"""Builds the optax optimizer for a parameter-group assignment.

Each trainable group gets its own chain (base update → weight decay → scaled learning rate) and the
frozen group gets `optax.set_to_zero()`, combined with `optax.multi_transform`. Because
`multi_transform` masks every inner transform to its own group, the frozen parameters hold no optimizer
state at all (their slots are `optax.MaskedNode`), and weight decay — which reads the *parameters*, not
the gradients — is never applied to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from tljax.optim.param_groups import FROZEN, Assignment, ParamGroup
from tljax.typing import Config, PyTree


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimizer settings shared by all groups (a typed view of `config.optim`)."""

    name: str = "adamw"  # "sgd" | "adam" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # default for groups that do not set their own
    schedule: str = "cosine"  # "cosine" | "constant"
    warmup_steps: int = 0
    grad_clip: float = 0.0  # global-norm clip over the trainable gradients; 0 disables

    @classmethod
    def from_config(cls, config: Config) -> OptimConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return cls(**{k: v for k, v in values.items() if k in fields})


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up then cosine decay to 0 (or constant) over `total_steps`."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.schedule == "cosine":
        if not warmup:  # (optax warns about a zero-length warm-up phase)
            return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, warmup, max(total_steps, warmup + 1), end_value=0.0
        )
    if cfg.schedule == "constant":
        if not warmup:
            return optax.constant_schedule(cfg.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.lr, warmup), optax.constant_schedule(cfg.lr)], [warmup]
        )
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'constant'")


def _group_transform(
    cfg: OptimConfig, group: ParamGroup, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """The update rule of one trainable group, matching PyTorch's SGD (coupled L2) and AdamW (decoupled)."""
    weight_decay = cfg.weight_decay if group.weight_decay is None else group.weight_decay
    lr: Callable[[jax.Array], jax.Array] = lambda step: schedule(step) * group.lr_mult  # noqa: E731
    parts: list[optax.GradientTransformation] = []
    if cfg.name == "sgd":
        # torch.optim.SGD adds weight_decay * p to the gradient *before* momentum.
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        if cfg.momentum:
            parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
    elif cfg.name in ("adam", "adamw"):
        parts.append(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
        # Decoupled decay (Loshchilov & Hutter), as torch.optim.AdamW: p -= lr * wd * p.
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}; use 'sgd', 'adam' or 'adamw'")
    parts.append(optax.scale_by_learning_rate(lr))
    return optax.chain(*parts)


def build_optimizer(
    cfg: OptimConfig, assignment: Assignment, params: PyTree, total_steps: int
) -> optax.GradientTransformation:
    """One optax transformation for the whole parameter tree, partitioned by the assigned groups.

    Gradient clipping (if any) runs first over the full gradient tree; the train step fills frozen slots
    with zeros, so the global norm is that of the trainable gradients only.
    """
    schedule = learning_rate_schedule(cfg, total_steps)
    groups: dict[str, ParamGroup] = {g.label: g for g in assignment.groups.values()}
    transforms = {
        label: optax.set_to_zero() if group.frozen else _group_transform(cfg, group, schedule)
        for label, group in groups.items()
    }
    tx = optax.multi_transform(transforms, assignment.labels(params))
    if cfg.grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    return tx


def state_size(opt_state: PyTree) -> int:
    """Number of scalars held by an optimizer state (frozen parameters should add nothing)."""
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(opt_state))


def frozen_state_leaves(opt_state: PyTree, assignment: Assignment) -> list[str]:
    """Paths of frozen parameters that nevertheless own optimizer-state arrays (should be empty).

    Every array leaf of the state is named by the dict keys on its way down (e.g. `lr_mult=1/layer1/
    kernel` for an Adam moment inside the `lr_mult=1` group); a leaf whose name ends with a frozen
    parameter's path is reported. Masked slots (`optax.MaskedNode`) have no leaves and never show up.
    """
    frozen = set(assignment.frozen_paths())
    found = set()
    for key_path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        keys = [str(k.key) for k in key_path if isinstance(k, jax.tree_util.DictKey)]
        for start in range(len(keys)):
            if "/".join(keys[start:]) in frozen:
                found.add("/".join(keys[start:]))
    return sorted(found)


__all__ = [
    "OptimConfig",
    "build_optimizer",
    "learning_rate_schedule",
    "state_size",
    "frozen_state_leaves",
    "FROZEN",
]
