"""A config file for `python -m tljax.main` runs of the tiny CNN in tests (kill -9 / SIGTERM / CLI).

`--config=tests/train/tiny_run_config.py:<data_root>[,slow]`: registers the tiny model in the training
process, and with `slow` sleeps 0.1 s after each train step so that a signal lands mid-run.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402


def _slow_down() -> None:
    import tljax.train.loop as loop

    original = loop.make_train_step

    def make_slow_step(*args, **kwargs):
        step = original(*args, **kwargs)

        class Slow:
            def __call__(self, *a, **k):
                out = step(*a, **k)
                time.sleep(0.1)
                return out

            @property
            def trace_count(self):
                return step.trace_count

        return Slow()

    loop.make_train_step = make_slow_step


def get_config(arg: str):
    root, *flags = arg.split(",")
    tiny_model.register()
    if "slow" in flags:
        _slow_down()
    return fixtures.tiny_config(Path(root), steps=24)
