"""Training: state, jitted steps, the resumable loop, checkpoints, writers, plots and the linear probe.

Entry point: `train_and_evaluate(config, workdir)` (what `python -m tljax.main` calls). Before any work
it validates the config (`tljax.train.validate`) and locks and checks the workdir
(`tljax.train.workdir`: `WorkdirLock`, `read_config_record`, `is_finished`, `read_results`, also used by
the sweep engine).
"""

from tljax.train.checkpoints import Checkpointer
from tljax.train.defaults import default_config, parse_config_arg
from tljax.train.loop import NonFiniteLossError, evaluate, train_and_evaluate
from tljax.train.state import TrainState
from tljax.train.step import CountedJit, cross_entropy, make_eval_step, make_train_step

__all__ = [
    "Checkpointer",
    "CountedJit",
    "NonFiniteLossError",
    "TrainState",
    "cross_entropy",
    "default_config",
    "evaluate",
    "make_eval_step",
    "make_train_step",
    "parse_config_arg",
    "train_and_evaluate",
]
