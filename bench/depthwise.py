"""Depthwise convolution on CPU: XLA's grouped conv vs the shifted-slice form, per layer and in Lite0.

    python bench/depthwise.py --part=layer     # one depthwise layer: forward, input grad, kernel grad
    python bench/depthwise.py --part=model     # Lite0 forward (batch 8, 224²) and train steps (batch 32)
    python bench/depthwise.py --part=model --conv=flax   # the same model with flax's nn.Conv everywhere

Layer implementations: `xla` = `lax.conv_general_dilated(feature_group_count=C)` (what `nn.Conv` runs),
`shifted` = the shifted-slice sum differentiated by plain autodiff, `shifted_vjp` = the same forward with
the hand-written backward of `tljax.models.depthwise` (what `tljax.models.conv` runs on CPU).
Timings are medians over `--iters` calls after two warm-up calls, jitted, `block_until_ready`.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import tljax.models as models
from tljax.models import depthwise

IMPLS = {
    "xla": depthwise.grouped_conv_depthwise,
    "shifted": depthwise.shifted_depthwise,
    "shifted_vjp": depthwise.shifted_depthwise_vjp,
}


def median_seconds(fn, iters: int) -> float:
    for _ in range(2):
        jax.block_until_ready(fn())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_layer(args) -> None:
    """Forward, input gradient and kernel gradient of one depthwise layer (VALID, pre-padded input)."""
    k, s, c = args.kernel, args.stride, args.channels
    pad = k - 1  # roughly what TF-SAME adds
    rng = np.random.default_rng(0)
    x = jnp.asarray(
        rng.standard_normal((args.batch, args.size + pad, args.size + pad, c)), args.dtype
    )
    w = jnp.asarray(rng.standard_normal((k, k, 1, c)) * 0.1, args.dtype)
    print(f"layer: x {tuple(x.shape)} {args.dtype}, kernel {k}×{k}, stride {s}")
    print("| impl | forward ms | input grad ms | kernel grad ms | fwd+both grads ms |")
    print("|---|---|---|---|---|")
    for name, fn in IMPLS.items():
        forward = jax.jit(lambda x, w, fn=fn: fn(x, w, s))
        # The output cotangent is an argument, not a constant XLA could fold into the backward pass.
        g = jnp.asarray(rng.standard_normal(jax.eval_shape(forward, x, w).shape), x.dtype)

        def loss(x, w, g, fn=fn):
            return jnp.vdot(fn(x, w, s).astype(jnp.float32), g.astype(jnp.float32))

        grad_x = jax.jit(jax.grad(loss, argnums=0))
        grad_w = jax.jit(jax.grad(loss, argnums=1))
        grad_both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        ms = [1e3 * median_seconds(lambda forward=forward: forward(x, w), args.iters)]
        ms += [
            1e3 * median_seconds(lambda f=f, g=g: f(x, w, g), args.iters)
            for f in (grad_x, grad_w, grad_both)
        ]
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in ms) + " |", flush=True)


def bench_model(args) -> None:
    """Lite0 forward throughput and full fine-tuning train steps (BN in train mode, SGD momentum)."""
    rng = np.random.default_rng(0)
    model = models.get("efficientnet_lite0", num_classes=10)
    if args.conv == "flax":
        model = model.clone(conv=nn.Conv)  # XLA's convolution everywhere (grouped for depthwise)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))

    forward = jax.jit(model.apply)
    x = jnp.asarray(rng.standard_normal((8, 224, 224, 3)), jnp.float32)
    t = median_seconds(lambda: forward(variables, x), args.iters)
    print(f"| Lite0 forward, batch 8, 224² | {1e3 * t:.0f} ms | {8 / t:.1f} img/s |", flush=True)

    tx = optax.sgd(0.01, momentum=0.9)

    @jax.jit
    def step(params, batch_stats, opt_state, images, labels, key):
        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats},
                images,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    key = jax.random.PRNGKey(1)
    labels = jnp.asarray(rng.integers(0, 10, 32))
    for size in (32, 64):
        images = jnp.asarray(rng.standard_normal((32, size, size, 3)), jnp.float32)
        t = median_seconds(
            lambda images=images: step(params, batch_stats, opt_state, images, labels, key),
            args.iters,
        )
        print(
            f"| Lite0 train step, batch 32, {size}² | {1e3 * t:.0f} ms | {32 / t:.1f} img/s |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="layer", choices=["layer", "model"])
    parser.add_argument(
        "--conv",
        default="tljax",
        choices=["tljax", "flax"],
        help="model part: tljax.models.conv.Conv (CPU kernels on CPU) or flax.linen.Conv",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=28, help="layer output-side size before stride")
    parser.add_argument("--channels", type=int, default=240)
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.default_backend()}")
    if args.part == "layer":
        bench_layer(args)
    else:
        print("| what | time | throughput |")
        print("|---|---|---|")
        bench_model(args)


if __name__ == "__main__":
    main()
