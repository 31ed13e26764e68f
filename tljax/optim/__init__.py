"""Parameter groups (regex rules → frozen / lr multiplier / weight decay) and the BatchNorm policy.

assignment = assign_groups(params, [("classifier/.*", {}), (".*", "frozen")])
tx = build_optimizer(OptimConfig(lr=1e-3), assignment, params, total_steps=1000)
trainable, frozen = split_params(params, assignment.trainable_paths())
frozen_bn = frozen_bn_field(resolve_bn_policy(bn_module_paths(batch_stats), None, assignment))
"""

from tljax.optim.bn_policy import (
    bn_module_paths,
    bn_table,
    frozen_bn_field,
    resolve_bn_policy,
)
from tljax.optim.optimizer import (
    OptimConfig,
    build_optimizer,
    frozen_state_leaves,
    learning_rate_schedule,
    state_size,
)
from tljax.optim.param_groups import (
    FROZEN,
    Assignment,
    ParamGroup,
    Rule,
    assign_groups,
    merge_params,
    parse_group,
    parse_rules,
    split_params,
)
from tljax.optim.recipes import RECIPES, TRANSFER_MODES, recipe_rules, transfer_skip

__all__ = [
    "FROZEN",
    "RECIPES",
    "TRANSFER_MODES",
    "Assignment",
    "OptimConfig",
    "ParamGroup",
    "Rule",
    "assign_groups",
    "bn_module_paths",
    "bn_table",
    "build_optimizer",
    "frozen_bn_field",
    "frozen_state_leaves",
    "learning_rate_schedule",
    "merge_params",
    "parse_group",
    "parse_rules",
    "recipe_rules",
    "resolve_bn_policy",
    "split_params",
    "transfer_skip",
    "state_size",
]
