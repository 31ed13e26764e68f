"""Every GPU comparison of issue 10 in one call, one Markdown table: `python bench/gpu.py` (≤ 8 min).

    python bench/gpu.py                        # on a GPU: batch 256, 224², bf16 and fp32, vs torch
    python bench/gpu.py --cpu                  # CPU plumbing check (tiny sizes, seconds): the tests run it
    bash bench/gpu.sh                          # the same, in the repo's venv, under an 8-minute timeout

Rows (each against eager PyTorch and `torch.compile` in the same process, same weights, same input):
ResNet-50, VGG16 and EfficientNet-Lite0 forward; the ResNet-50 train step with a frozen backbone and
fully fine-tuned (SGD momentum, synthetic batch on the device); the Gatys VGG19 style step at 512²
(Adam on the pixels); each in bf16 and fp32. Then data-parallel scaling of the ResNet-50 full fine-tune
over 1, 2, 4, … of the visible GPUs (`tljax.parallel`, per-GPU batch fixed: weak scaling). The pieces are
those of `bench/forward.py`, `bench/train_step.py` and `bench/style_step.py`; this script only runs
them in one process within a time budget (`--budget_s`): rows that do not fit are listed as skipped,
never estimated. Goals on one H100/H200: full fine-tune ≥ 1.25× torch.compile, inference ≥ 1.15×,
Gatys step ≥ 2.5×.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# JAX and torch share the GPU in this process: JAX must not take 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Budget:
    """Wall-clock budget: `left()` seconds remain; rows are skipped once it is spent."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def forward_row(name: str, args, dtype: str) -> dict:
    import forward
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from tljax import models
    from tljax.weights.porting import port_state_dict

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    torch_model = forward.TORCH_BUILDERS[name]().eval()
    variables, _ = port_state_dict(
        {k: v.numpy() for k, v in torch_model.state_dict().items()},
        models.get(name, dtype=jnp.dtype(dtype)),
    )
    flax_model = models.get(name, dtype=jnp.dtype(dtype))
    if dtype != "float32":
        variables = jax.tree.map(lambda a: a.astype(dtype), variables)
    apply = jax.jit(flax_model.apply)
    x = np.random.default_rng(0).standard_normal((args.batch, args.size, args.size, 3), np.float32)
    x_jax = jax.device_put(jnp.asarray(x, dtype))
    torch_model = torch_model.to(device=device, dtype=torch_dtype)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device=device, dtype=torch_dtype)
    if device == "cuda":
        torch_model = torch_model.to(memory_format=torch.channels_last)
        x_torch = x_torch.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn) -> float:
        for _ in range(args.warmup):
            fn()
        return forward.time_fn(fn, args.iters)

    seconds = {"tljax": timed(lambda: apply(variables, x_jax).block_until_ready())}
    runners = {"torch eager": torch_model}
    if args.torch_compile:
        runners["torch.compile"] = torch.compile(torch_model)
    for label, runner in runners.items():

        @torch.inference_mode()
        def run(runner=runner):
            runner(x_torch)
            sync()

        seconds[label] = timed(run)
    return {k: args.batch / v for k, v in seconds.items()}


def train_row(mode: str, args, dtype: str) -> dict:
    import train_step

    common = dict(
        batch=args.batch,
        size=args.size,
        steps=args.iters,
        warmup=args.warmup,
        dtype=dtype,
        cpu=False,
        model=args.train_model,
    )
    rates = {"tljax": train_step.run_tljax(mode, SimpleNamespace(**common, torch_compile=False))}
    rates["torch eager"] = train_step.run_torch(
        mode, SimpleNamespace(**common, torch_compile=False)
    )
    if args.torch_compile:
        rates["torch.compile"] = train_step.run_torch(
            mode, SimpleNamespace(**common, torch_compile=True)
        )
    return {k: v["images_per_second"] for k, v in rates.items()}


def style_row(args, dtype: str) -> dict:
    import style_step
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = SimpleNamespace(
        size=args.style_size, steps=args.iters, warmup=args.warmup, device=device
    )
    content, style_image = style_step.images(args.style_size)
    features = style_step.torch_vgg(device)
    ms = {
        "tljax": style_step.run_tljax(features, content, style_image, options, dtype, "auto")["ms"]
    }
    ms["torch eager"] = style_step.run_torch(features, content, style_image, options, dtype, False)[
        "ms"
    ]
    if args.torch_compile:
        ms["torch.compile"] = style_step.run_torch(
            features, content, style_image, options, dtype, True
        )["ms"]
    return {k: 1e3 / v for k, v in ms.items()}  # steps/s, so that bigger is better everywhere


def scaling_rows(args, dtype: str) -> list[tuple[int, float]]:
    """(devices, images/s) of a train step on the first n devices (1, 2, 4, …), per-device batch fixed."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from tljax import models, optim, parallel
    from tljax.train import TrainState, make_train_step
    from tljax.train.state import make_key

    model = models.get(args.scaling_model, num_classes=10, dtype=jnp.dtype(dtype))
    host = jax.device_get(jax.jit(model.init)(make_key(0), jnp.zeros((1, args.size, args.size, 3))))
    tx = optax.sgd(0.01, momentum=0.9)
    rules = (
        [(".*", {})] if args.scaling_mode == "full" else [("classifier/.*", {}), (".*", "frozen")]
    )
    paths = optim.assign_groups(host["params"], rules).trainable_paths()
    rows, n = [], 1
    while n <= jax.device_count():
        placement = parallel.Placement(parallel.make_mesh(devices=jax.devices()[:n]))
        state, shardings = placement.create_state(
            lambda p, b: TrainState.create(p, b, tx.init(p), 0),
            host["params"],
            host["params"],
            host["batch_stats"],
        )
        step = make_train_step(
            model, tx, paths, state_sharding=shardings, batch_sharding=placement.batch
        )
        global_batch = args.batch * n
        rng = np.random.default_rng(0)
        batch = parallel.global_batch(
            {
                "image": rng.standard_normal((global_batch, args.size, args.size, 3), np.float32),
                "label": rng.integers(0, 10, global_batch).astype(np.int32),
            },
            placement.batch,
        )
        for _ in range(args.warmup):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        started = time.perf_counter()
        for _ in range(args.iters):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        rows.append((n, global_batch * args.iters / (time.perf_counter() - started)))
        n *= 2
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cpu", action="store_true", help="tiny sizes on the CPU: a plumbing check"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--style_size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--models", default="resnet50,vgg16,efficientnet_lite0")
    parser.add_argument("--train_model", default="resnet50")
    parser.add_argument("--scaling_model", default="resnet50")
    parser.add_argument("--scaling_mode", default="full", choices=("full", "frozen"))
    parser.add_argument("--no_torch_compile", dest="torch_compile", action="store_false")
    parser.add_argument("--budget_s", type=float, default=450, help="stop starting rows after this")
    parser.add_argument("--out", default="bench/gpu_results.md", help="the Markdown table")
    args = parser.parse_args()
    if args.cpu:
        args.batch, args.size, args.style_size, args.iters, args.warmup = 2, 32, 32, 1, 1
        args.dtypes, args.torch_compile = (
            "float32",
            False,
        )  # torch.compile on CPU needs a C++ toolchain
        # Small models and frozen backbones: their programs compile in seconds on a CPU.
        args.models, args.train_model, args.scaling_model = (
            "efficientnet_lite0",
            "resnet18",
            "resnet18",
        )
        args.scaling_mode = "frozen"

    import jax
    import torch

    budget = Budget(args.budget_s)
    frameworks = ["tljax", "torch eager"] + (["torch.compile"] if args.torch_compile else [])
    table = [
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} × {jax.device_count()}; torch "
        f"{torch.__version__}{' on ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ' on CPU'}; "
        f"batch {args.batch}, {args.size}² (style {args.style_size}²), {args.iters} timed iterations",
        "",
        "| benchmark | dtype | unit | " + " | ".join(frameworks) + " | tljax / " + " | tljax / ".join(frameworks[1:]) + " |",
        "|---" * (3 + 2 * len(frameworks) - 1) + "|",
    ]  # fmt: skip
    skipped = []
    jobs = [
        (f"{name} forward", dtype, "img/s", lambda n=name, d=dtype: forward_row(n, args, d))
        for name in args.models.split(",")
        for dtype in args.dtypes.split(",")
    ]
    jobs += [
        (
            f"{args.train_model} train step, {mode}",
            dtype,
            "img/s",
            lambda m=mode, d=dtype: train_row(m, args, d),
        )
        for mode in ("frozen", "full")
        for dtype in args.dtypes.split(",")
    ]
    if args.cpu:  # a full backward pass compiles for minutes on a CPU: the frozen step is enough
        jobs = [j for j in jobs if "full" not in j[0]]
    jobs += [
        (
            f"Gatys VGG19 step {args.style_size}²",
            dtype,
            "steps/s",
            lambda d=dtype: style_row(args, d),
        )
        for dtype in args.dtypes.split(",")
    ]
    for label, dtype, unit, job in jobs:
        if budget.left() <= 0:
            skipped.append(f"{label} {dtype}")
            continue
        rates = job()
        cells = [f"{rates[f]:.1f}" if f in rates else "–" for f in frameworks]
        ratios = [
            f"{rates['tljax'] / rates[f]:.2f}×" if f in rates else "–" for f in frameworks[1:]
        ]
        table.append(f"| {label} | {dtype} | {unit} | " + " | ".join(cells + ratios) + " |")
        print(table[-1], flush=True)
    if budget.left() > 0:
        dtype = args.dtypes.split(",")[0]
        rows = scaling_rows(args, dtype)
        table += [
            "",
            f"Data-parallel scaling, {args.scaling_model} {args.scaling_mode} fine-tune, {dtype}, {args.batch} images per device:",
            "",
            "| devices | img/s | speed-up | efficiency |",
            "|---|---|---|---|",
        ]  # fmt: skip
        for n, rate in rows:
            speedup = rate / rows[0][1]
            table.append(f"| {n} | {rate:.1f} | {speedup:.2f}× | {speedup / n:.0%} |")
    else:
        skipped.append("data-parallel scaling")
    if skipped:
        table += ["", f"Skipped (time budget of {args.budget_s:g} s spent): {', '.join(skipped)}."]
    text = "\n".join(table) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
