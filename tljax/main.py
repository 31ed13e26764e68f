r"""Train, fine-tune or probe a pretrained backbone from one command.

    python -m tljax.main --config=configs/fashion_mnist_lite0.py --workdir=/tmp/fmnist
    python -m tljax.main --config=configs/feature_extractor.py:shots=10 --workdir=/tmp/fe10 \
        --config.optim.lr=0.01

Configs are locked: `--config.optim.lrr=0.01` (a typo) is refused instead of silently ignored. Running
the same command again resumes from the newest checkpoint in --workdir. All the work happens in
`tljax.train.train_and_evaluate`, which tests call directly.
"""

from __future__ import annotations

import json
import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from tljax.train import NonFiniteLossError, train_and_evaluate

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file, `path.py[:arg]`.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(std_logging.Filter):
    """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint) from the console."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    try:
        results = train_and_evaluate(config, _WORKDIR.value)
    except NonFiniteLossError as error:
        logging.error("%s", error)
        return 1
    summary = {k: v for k, v in results.items() if k != "confusion_matrix"}
    print(json.dumps(summary, indent=2))
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a one-line error for `--config.<key>` overrides the locked config lacks."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as error:  # raised by config_flags for an unknown key
        # ml_collections nests the KeyError's repr in the message: unescape it into one readable line.
        detail = str(error).encode().decode("unicode_escape").replace("\n", " ")
        print(
            f"error: unknown --config key {detail} (configs are locked; see the config file for the "
            "valid keys)",
            file=sys.stderr,
        )
        sys.exit(2)


def run() -> None:
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)


if __name__ == "__main__":
    run()
