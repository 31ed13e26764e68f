"""Forward (inference) throughput, tljax vs torchvision and vs Keras 3, in one process: images/s, ratios.

    python bench/forward.py                       # CPU: batch 8, each model's native size, fp32
    python bench/forward.py --models=mobilenet_v2,mobilenet_v3_large,mobilenet_v3_small,googlenet,inception_v3
    python bench/forward.py --models=mobilenet_v1,mobilenet_v2_keras,inception_v3_keras,xception
    python bench/forward.py --batch=256 --dtype=bfloat16 --compile   # GPU: vs torch.compile

Every framework gets the same input, warm-up runs, then `--iters` timed runs; jax is synchronised with
`block_until_ready`, torch with `cuda.synchronize`. torchvision models share their random weights with
tljax (ported). The Keras layouts run against `keras.applications` on the JAX backend with the same
weights (saved by Keras, read by `tljax.weights.load`), timed through Keras' compiled
`predict_on_batch`; and against their torchvision twin (same layers and FLOPs, its own random weights:
torchvision has no MobileNet V1 or Xception). A ratio is the other framework's time / tljax's (> 1: tljax
is faster).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet

import tljax.models as models
from tljax.weights.porting import port_state_dict

TORCH_BUILDERS = {
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "vgg16": lambda: torchvision.models.vgg16(weights=None),
    "efficientnet_lite0": lambda: EfficientNet.from_name("efficientnet-lite0"),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
    # As their pretrained weights run: transform_input on, no auxiliary heads (eval never runs them).
    "googlenet": lambda: torchvision.models.googlenet(
        weights=None, aux_logits=False, transform_input=True, init_weights=True
    ),
    "inception_v3": lambda: torchvision.models.inception_v3(
        weights=None, aux_logits=False, transform_input=True, init_weights=True
    ),
}
NATIVE_SIZE = {"inception_v3": 299, "inception_v3_keras": 299, "xception": 299}  # others: 224
# The Keras layouts: their keras.applications constructor, and the torchvision model with their layers.
KERAS_APPS = {
    "mobilenet_v1": "MobileNet",
    "mobilenet_v2_keras": "MobileNetV2",
    "inception_v3_keras": "InceptionV3",
    "xception": "Xception",
}
TORCH_TWIN = {"mobilenet_v2_keras": "mobilenet_v2", "inception_v3_keras": "inception_v3"}


def time_fn(fn, iters: int) -> float:
    """Median seconds per call over `iters` calls (after the caller's warm-up)."""
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _torch_runner(name: str, dtype: str, compile_torch: bool, device: str):
    """(torch model runner, its state_dict as numpy) for torchvision model `name`."""
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    torch_model = TORCH_BUILDERS[name]().eval()
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    torch_model = torch_model.to(device=device, dtype=torch_dtype)
    if device == "cuda":
        torch_model = torch_model.to(memory_format=torch.channels_last)
    return (torch.compile(torch_model) if compile_torch else torch_model), state


def _keras_model_and_variables(name: str, size: int, flax_model):
    """The keras.applications model of a Keras layout (random weights) and those weights in tljax."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from tljax.weights import load

    if keras.backend.backend() != "jax":
        raise SystemExit("the Keras comparison needs KERAS_BACKEND=jax")
    keras_model = getattr(keras.applications, KERAS_APPS[name])(
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.weights.h5")
        keras_model.save_weights(path)
        variables = load(path, flax_model)
    return keras_model, variables


def bench(name: str, batch: int, size: int, dtype: str, iters: int, compile_torch: bool) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    flax_model = models.get(name, dtype=jnp.dtype(dtype))
    torch_name = TORCH_TWIN.get(name, name)
    runner = None
    if torch_name in TORCH_BUILDERS:
        runner, state = _torch_runner(torch_name, dtype, compile_torch, device)
    keras_model = None
    if name in KERAS_APPS:
        keras_model, variables = _keras_model_and_variables(name, size, flax_model)
    else:
        variables, _ = port_state_dict(state, flax_model)
    if dtype != "float32":  # serve weights in the compute dtype, as torch does
        variables = jax.tree_util.tree_map(lambda a: a.astype(dtype), variables)
    forward = jax.jit(flax_model.apply)

    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    x_jax = jax.device_put(jnp.asarray(x, dtype))
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device=device, dtype=torch_dtype)
    if device == "cuda":
        x_torch = x_torch.contiguous(memory_format=torch.channels_last)

    def run_jax():
        forward(variables, x_jax).block_until_ready()

    @torch.inference_mode()
    def run_torch():
        runner(x_torch)
        if device == "cuda":
            torch.cuda.synchronize()

    def run_keras():
        np.asarray(keras_model.predict_on_batch(x))

    timed = {"tljax": run_jax}
    if runner is not None:
        timed["torch"] = run_torch
    if keras_model is not None:
        timed["keras"] = run_keras
    for _ in range(3):
        for fn in timed.values():
            fn()
    seconds = {framework: time_fn(fn, iters) for framework, fn in timed.items()}
    row = {"model": name, "device": device, "batch": batch, "dtype": dtype}
    for framework in ("tljax", "torch", "keras"):
        t = seconds.get(framework)
        row[f"{framework} img/s"] = batch / t if t else None
        if framework != "tljax":
            row[f"{framework} ratio"] = t / seconds["tljax"] if t else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16,efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=0, help="0: each model's native size")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compare with torch.compile(model)")
    args = parser.parse_args()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"| model | device | batch | dtype | tljax img/s | torch{' (compiled)' if args.compile else ''}"
        " img/s | ratio | keras img/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def cell(value, fmt):
        return "–" if value is None else format(value, fmt)

    for name in args.models.split(","):
        size = args.size or NATIVE_SIZE.get(name, 224)
        r = bench(name, args.batch, size, args.dtype, args.iters, args.compile)
        print(
            f"| {r['model']} | {r['device']} | {r['batch']} | {r['dtype']} | "
            f"{r['tljax img/s']:.1f} | {cell(r['torch img/s'], '.1f')} | "
            f"{cell(r['torch ratio'], '.2f')}× | {cell(r['keras img/s'], '.1f')} | "
            f"{cell(r['keras ratio'], '.2f')}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
