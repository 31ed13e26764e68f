"""A tiny two-phase sweep of the tests' tiny CNN (a few seconds per point on 2 cores).

`tiny_sweep.py:data=DIR[,seeds=2][,fail=LR][,slow]`: phase `base` is lr × seeds; phase `second`
depends on it and names a base point's workdir in an override (the `{phase/labels}` template). `fail=LR`
makes the points of that lr fail with a NaN loss (an lr of 1e30); `slow` sleeps 0.1 s per step so that a
kill lands mid-point.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import fixtures  # noqa: E402
import tiny_model  # noqa: E402
import tiny_run_config  # noqa: E402

from tljax.experiments import spec  # noqa: E402


def get_sweep(arg: str | None = None) -> spec.Sweep:
    options = dict(item.partition("=")[::2] for item in (arg or "").split(",") if item)
    tiny_model.register()
    if "slow" in options:
        tiny_run_config._slow_down()
    base = fixtures.tiny_config(Path(options["data"]), steps=int(options.get("steps", 6)))
    lrs = [0.03, 0.01]
    if "fail" in options:
        lrs.append(1e30)
    return spec.Sweep(
        name=options.get("name", "tiny"),
        base=base,
        phases=[
            spec.Phase(
                "base",
                spec.product(
                    spec.axis("optim.lr", lrs, name="lr"), spec.seeds(int(options.get("seeds", 2)))
                ),
            ),
            spec.Phase(
                "second",
                spec.seeds(int(options.get("seeds", 2))),
                depends_on=("base",),
                overrides={
                    "probe.cache_dir": "{base/lr=0.03,seed=$seed}/features",
                    "optim.lr": 0.02,
                },
            ),
        ],
    )
