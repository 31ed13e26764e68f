r"""Train, fine-tune or probe a pretrained backbone from one command.

    python -m tljax.main --config=configs/fashion_mnist_lite0.py --workdir=/tmp/fmnist
    python -m tljax.main --config=configs/feature_extractor.py:shots=10 --workdir=/tmp/fe10 \
        --config.optim.lr=0.01

Configs are locked: `--config.optim.lrr=0.01` (a typo) is refused instead of silently ignored, and
out-of-range values (`--config.train.steps=-5`) are refused by name. Running the same command again
resumes from the newest checkpoint in --workdir; a different config is refused unless the changed keys
are safe and named, `--resume_with_changes=train.steps`. All the work happens in
`tljax.train.train_and_evaluate`, which tests call directly.

Exit codes (`tljax.errors`): 0 finished (or already finished), 1 the run failed (NaN/Inf loss), 2 bad
config, flags or workdir (one line on stderr), 75 preempted by SIGTERM with a checkpoint saved
(relaunch to resume), 130 interrupted by SIGINT / Ctrl-C (also resumable).
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import sys
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

from tljax import cli, errors
from tljax.train import NonFiniteLossError, train_and_evaluate

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file, `path.py[:arg]`.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
_RESUME_WITH_CHANGES = flags.DEFINE_list(
    "resume_with_changes",
    [],
    "Config keys a relaunch on an existing --workdir may change, e.g. train.steps (recorded in the "
    "workdir's history.jsonl; see tljax.train.workdir.SAFE_TO_CHANGE).",
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(std_logging.Filter):
    """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint) from the console, and the
    tracebacks of its worker threads' errors: the failure reaches the main thread, which reports it
    once (a full disk as one line), and the thread's one-line message stays."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if "/orbax/" not in record.pathname:
            return True
        if record.levelno < std_logging.WARNING:
            return False
        record.exc_info, record.exc_text = None, None
        return True


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    config = _load_config()
    workdir = _WORKDIR.value
    if not workdir:  # required by absl, but `--workdir=` would otherwise mean the current directory
        raise errors.ConfigError(
            "--workdir is empty: name the directory for checkpoints, metrics and figures (the same "
            "--workdir again resumes)"
        )
    logging.info("config:\n%s", config)
    try:
        results = train_and_evaluate(
            config, workdir, resume_with_changes=_RESUME_WITH_CHANGES.value
        )
    except NonFiniteLossError as error:
        logging.error("%s", error)
        return errors.EXIT_FAILED
    except (
        KeyboardInterrupt
    ):  # a second Ctrl-C: stopped at once; the last complete checkpoint stands
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    if results.get("preempted"):
        print(json.dumps(results))
        return (
            errors.EXIT_INTERRUPTED if results.get("signal") == "SIGINT" else errors.EXIT_PREEMPTED
        )
    summary = {k: v for k, v in results.items() if k != "confusion_matrix"}
    print(json.dumps(summary, indent=2))
    return errors.EXIT_OK


def _load_config():
    """The parsed --config; a file that does not exist or fails to load is one `ConfigError` line."""
    config = _CONFIG.value
    try:
        config.to_dict()  # ml_collections defers a failed load: its stand-in raises on first use
        return config
    except OSError as error:
        filename = config_flags.get_config_filename(FLAGS["config"])
        if not os.path.exists(filename):
            raise errors.ConfigError(
                f"--config file {filename} does not exist (the configs are in configs/)"
            ) from error
        raise errors.ConfigError(
            f"--config file {filename} could not be loaded: {error}"
        ) from error


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(errors.EXIT_USER_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors: an override the locked config lacks, a value of the
    wrong type, and a config file whose `get_config(arg)` refuses its argument."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as error:  # raised by config_flags for an unknown key
        # ml_collections nests the KeyError's repr in the message: unescape it into one readable line.
        detail = str(error).encode().decode("unicode_escape").replace("\n", " ")
        _fail(
            f"unknown --config key {detail} (configs are locked; see the config file for the "
            "valid keys)"
        )
    except flags.IllegalFlagValueError as error:
        if "--verbose" in argv:
            raise
        # config_flags appends the config file's traceback; its last line is the config's own error.
        lines = [line for line in str(error).splitlines() if line.strip()]
        first = lines[0].split(": Error whilst parsing config file")[0] if lines else str(error)
        detail = lines[-1].strip() if "Error whilst parsing config file" in str(error) else ""
        _fail(f"{first}{': ' + detail if detail else ''} (--verbose shows the traceback)")


def run() -> None:
    cli.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
