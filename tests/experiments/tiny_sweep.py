"""A tiny two-phase sweep of the tests' tiny CNN (a few seconds per point on 2 cores).

`tiny_sweep.py:data=DIR[,seeds=N][,steps=N][,name=NAME][,fail|single][,slow=SECONDS]`: phase `base` is
lr × seeds (lr 0.03 and 0.01); phase `second` depends on it and fine-tunes a base point's network
(`weights.name=run:{base/lr=0.03,seed=$seed}`). `fail` replaces lr 0.01 by 1e30, whose points fail with a
NaN loss; `single` keeps lr 0.03 only; `slow` sleeps that long after each train step so that a kill lands
mid-point.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402

from tljax.experiments import spec  # noqa: E402


def _slow_down(seconds: float) -> None:
    import tljax.train.loop as loop

    original = loop.make_train_step

    def make_slow_step(*args, **kwargs):
        step = original(*args, **kwargs)

        class Slow:
            def __call__(self, *a, **k):
                out = step(*a, **k)
                time.sleep(seconds)
                return out

            @property
            def trace_count(self):
                return step.trace_count

        return Slow()

    loop.make_train_step = make_slow_step


def get_sweep(arg: str | None = None) -> spec.Sweep:
    options = dict(item.partition("=")[::2] for item in (arg or "").split(",") if item)
    tiny_model.register()
    if "slow" in options:
        _slow_down(float(options["slow"]))
    base = fixtures.tiny_config(Path(options["data"]), steps=int(options.get("steps", 6)))
    lrs = [0.03] if "single" in options else [0.03, 1e30] if "fail" in options else [0.03, 0.01]
    seeds = int(options.get("seeds", 1))
    return spec.Sweep(
        name=options.get("name", "tiny"),
        base=base,
        phases=[
            spec.Phase(
                "base", spec.product(spec.axis("optim.lr", lrs, name="lr"), spec.seeds(seeds))
            ),
            spec.Phase(
                "second",
                spec.seeds(seeds),
                depends_on=("base",),
                overrides={
                    "recipe": "finetune_all",
                    "weights.name": "run:{base/lr=0.03,seed=$seed}",
                    "optim.lr": 0.02,
                },
            ),
        ],
    )
