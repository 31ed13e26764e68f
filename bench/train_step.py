r"""Train-step throughput: tljax vs an equivalent PyTorch loop, ResNet-50 fine-tuning, frozen backbone vs full.

    python bench/train_step.py                       # CPU: batch 8, 224², 3 timed steps (a few minutes)
    python bench/train_step.py --batch=256 --dtype=bfloat16 --steps=20 --torch_compile   # on a GPU

Each (framework, mode) runs in its own subprocess so that peak memory (RSS, and on GPU the device's
peak allocation) belongs to that configuration alone. Modes:
  * frozen: the feature-extractor recipe — backbone parameters frozen (no gradients, no optimizer state)
    and its BatchNorm in inference mode; only the new 10-class head trains.
  * full: everything trains, BN statistics update.
Both sides: SGD momentum 0.9, lr 0.01, softmax cross-entropy, random init (same architecture, torchvision
layout), synthetic data already on the device, the first step(s) (compilation) not timed. tljax: the
jitted, donating `tljax.train.make_train_step`; torch: eager (or `torch.compile` with --torch_compile),
`requires_grad=False` + `.eval()` on the frozen backbone, optional bf16 autocast.
Output: img/s per configuration, the tljax/torch ratio per mode, and frozen-vs-full time and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_tljax(mode: str, args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from tljax import models, optim
    from tljax.train import TrainState, make_train_step
    from tljax.train.state import make_key

    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    name = getattr(args, "model", "resnet50")  # bench/gpu.py --cpu uses resnet18
    model = models.get(name, num_classes=10, dtype=dtype)
    variables = jax.jit(model.init)(make_key(0), jnp.zeros((1, args.size, args.size, 3)))
    variables = {k: dict(v) for k, v in variables.items()}
    rules = [("classifier/.*", {}), (".*", "frozen")] if mode == "frozen" else [(".*", {})]
    assignment = optim.assign_groups(variables["params"], rules)
    decisions = optim.resolve_bn_policy(
        optim.bn_module_paths(variables["batch_stats"]), None, assignment
    )
    model = models.get(
        name, num_classes=10, dtype=dtype, frozen_bn=optim.frozen_bn_field(decisions)
    )
    cfg = optim.OptimConfig(
        name="sgd", lr=0.01, momentum=0.9, weight_decay=0.0, schedule="constant"
    )
    tx = optim.build_optimizer(cfg, assignment, variables["params"], total_steps=1000)
    state = TrainState.create(
        variables["params"], variables["batch_stats"], tx.init(variables["params"]), 0
    )
    step = make_train_step(model, tx, assignment.trainable_paths())
    rng = np.random.default_rng(0)
    batch = {
        "image": jax.device_put(
            rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
        ),
        "label": jax.device_put(rng.integers(0, 10, args.batch).astype(np.int32)),
    }
    compiled = step.lower(state, batch).compile()
    memory = compiled.memory_analysis()
    for _ in range(args.warmup):
        state, metrics = step(state, batch)
    jax.block_until_ready(state)
    started = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - started
    device = jax.devices()[0]
    device_peak = None
    if device.platform == "gpu":
        device_peak = (device.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20
    return {
        "images_per_second": args.batch * args.steps / seconds,
        "step_ms": 1000 * seconds / args.steps,
        "trainable_params": assignment.num_trainable(),
        "optimizer_state_params": optim.state_size(state.opt_state),
        "xla_temp_mib": getattr(memory, "temp_size_in_bytes", 0) / 2**20 if memory else None,
        "device_peak_mib": device_peak,
        "loss": float(metrics["loss"]),
        "device": str(device),
        "traces": step.trace_count,
    }


def run_torch(mode: str, args) -> dict:
    import torch
    import torchvision

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    model = getattr(torchvision.models, getattr(args, "model", "resnet50"))(num_classes=10).to(
        device
    )
    if mode == "frozen":
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("fc.")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.to(memory_format=torch.channels_last)

    def train_mode():
        model.train()
        if mode == "frozen":  # frozen backbone: BN in inference mode, as tljax's default policy
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
            loss = torch.nn.functional.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    forward = torch.compile(model) if args.torch_compile else model
    train_mode()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        loss = step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - started
    return {
        "images_per_second": args.batch * args.steps / seconds,
        "step_ms": 1000 * seconds / args.steps,
        "trainable_params": sum(p.numel() for p in parameters),
        "optimizer_state_params": sum(
            v.numel() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
        ),
        "device_peak_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
        "loss": float(loss),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def child(spec: str, args) -> None:
    framework, mode = spec.split(":")
    result = (run_tljax if framework == "tljax" else run_torch)(mode, args)
    result.update(framework=framework, mode=mode, peak_rss_mib=_peak_rss_mib())
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--torch_compile", action="store_true", help="torch.compile the torch model"
    )
    parser.add_argument("--cpu", action="store_true", help="torch on CPU even if CUDA is available")
    parser.add_argument("--frameworks", default="tljax,torch")
    parser.add_argument("--modes", default="frozen,full")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    results = []
    for mode in args.modes.split(","):
        for framework in args.frameworks.split(","):
            command = [sys.executable, __file__, f"--child={framework}:{mode}", *sys.argv[1:]]
            output = subprocess.run(command, capture_output=True, text=True, env=os.environ)
            lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
            if output.returncode or not lines:
                print(f"{framework}:{mode} failed:\n{output.stderr[-3000:]}", file=sys.stderr)
                continue
            results.append(json.loads(lines[-1][len("RESULT ") :]))
            r = results[-1]
            print(
                f"{framework:6s} {mode:6s} {r['images_per_second']:8.2f} img/s  {r['step_ms']:9.1f} ms/step  "
                f"trainable {r['trainable_params']:>10,}  opt-state {r['optimizer_state_params']:>10,}  "
                f"peak RSS {r['peak_rss_mib']:7.0f} MiB"
                + (
                    f"  XLA temp {r['xla_temp_mib']:.0f} MiB"
                    if r.get("xla_temp_mib") is not None
                    else ""
                )
                + (
                    f"  device peak {r['device_peak_mib']:.0f} MiB"
                    if r.get("device_peak_mib")
                    else ""
                ),
                flush=True,
            )
    by = {(r["framework"], r["mode"]): r for r in results}
    print(
        f"\nbatch {args.batch}, {args.size}², {args.dtype}, {args.steps} timed steps"
        + (", torch.compile" if args.torch_compile else "")
    )
    for mode in args.modes.split(","):
        if ("tljax", mode) in by and ("torch", mode) in by:
            ratio = (
                by[("tljax", mode)]["images_per_second"] / by[("torch", mode)]["images_per_second"]
            )
            print(f"{mode:6s}: tljax / torch = {ratio:.2f}×")
    for framework in args.frameworks.split(","):
        if (framework, "frozen") in by and (framework, "full") in by:
            frozen, full = by[(framework, "frozen")], by[(framework, "full")]
            print(
                f"{framework}: frozen backbone is {full['step_ms'] / frozen['step_ms']:.2f}× faster per step than "
                f"full, peak RSS {frozen['peak_rss_mib']:.0f} vs {full['peak_rss_mib']:.0f} MiB"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
