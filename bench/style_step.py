r"""Style-transfer step time: tljax (JAX, jit + lax.scan) vs PyTorch/torchvision, VGG19, same loss, same weights.

    python bench/style_step.py --inner=auto,scan                 # CPU: 512², 3 timed Adam steps
    python bench/style_step.py --steps=20 --dtype=float32,bfloat16 --torch_compile   # on a GPU

One style-transfer step = forward VGG19 to relu5_1 on the generated image, the Gatys loss (content
relu4_2; style relu1_1…relu5_1 with the seeds' normalisation; α=10, β=40), backward to the pixels, one
Adam update and the pixel clip. Both sides use the *same* VGG19 weights (torchvision's seeded random
init, ported to Flax with `tljax.weights` name tables) and the same two real images (scikit-image's
astronaut as content, coffee as style, resized to --size²), and the first step's loss is printed for
both so the equivalence can be checked. tljax runs `tljax.imageopt.style.make_step` through
`core.ChunkedLoop` as `stylize` does: one compiled `lax.scan` of --steps steps on a GPU, one compiled
step called per step on the CPU (`--inner` picks; XLA:CPU runs loop bodies several times slower, see
`ChunkedLoop`); torch runs an eager loop (and `torch.compile` of the
loss with --torch_compile), bf16 via autocast. Compilation / warm-up steps are not timed.
Output: a Markdown table of ms/step and the torch/tljax ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CONTENT_TAP = "relu4_2"
STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
TORCH_INDEX = {
    "relu1_1": 1,
    "relu2_1": 6,
    "relu3_1": 11,
    "relu4_1": 20,
    "relu4_2": 22,
    "relu5_1": 29,
}
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
ALPHA, BETA, LR = 10.0, 40.0, 2.0


def images(size: int) -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    from tljax.imageopt import images

    content = images.resize_image(skimage.data.astronaut().astype(np.float32), (size, size))
    style = images.resize_image(skimage.data.coffee().astype(np.float32), (size, size))
    return content, style


def torch_vgg(device: str):
    import torch
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features  # all of it, so every conv ports
    for layer in features:
        if isinstance(layer, torch.nn.ReLU):
            layer.inplace = False  # the taps must survive the next layer
    features = features.eval().to(device)
    for p in features.parameters():
        p.requires_grad_(False)
    return features


def run_tljax(features_torch, content, style_image, args, dtype_name: str, inner: str) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from tljax import models
    from tljax.imageopt import core, objective, style
    from tljax.weights.porting import port_state_dict

    dtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    model = models.get("vgg19", include_top=False, dtype=dtype)
    state_dict = {
        f"features.{k}": v.detach().cpu().numpy() for k, v in features_torch.state_dict().items()
    }
    variables, _ = port_state_dict(state_dict, model)

    class Pre:
        mean, std = tuple(MEAN), tuple(STD)

    options = style.StyleOptions(
        content_taps=(CONTENT_TAP,),
        style_taps=STYLE_TAPS,
        content_weight=ALPHA,
        style_weight=BETA,
        tv_weight=0.0,
        sizes=(args.size,),
        optimizer="adam",
        learning_rate=LR,
        chunk_size=args.steps,
    )
    taps_fn = objective.make_taps_fn(
        model, variables, (CONTENT_TAP, *STYLE_TAPS), preprocessing=Pre
    )
    targets = style.build_targets(taps_fn, variables, content, [style_image], [1.0], options)
    optimizer = optax.adam(LR)
    loop = core.ChunkedLoop(
        style.make_step(taps_fn, options, optimizer),
        args.steps,
        desc="tljax",
        inner=inner,
        cpu_inner="python",  # what configs/style_vgg19.py uses for VGG
    )

    def fresh():
        image = jnp.asarray(content)
        return (image, optimizer.init(image))

    t0 = time.perf_counter()
    loop.run(fresh(), (variables, targets), args.steps, progress=False)  # compile + warm-up
    warm = time.perf_counter() - t0
    carry = fresh()
    jax.block_until_ready(carry)
    t0 = time.perf_counter()
    carry, history = loop.run(carry, (variables, targets), args.steps, progress=False)
    jax.block_until_ready(carry)
    elapsed = time.perf_counter() - t0
    assert loop.trace_count == 1
    return {"ms": 1e3 * elapsed / args.steps, "loss0": float(history["loss"][0]), "first_s": warm}


def run_torch(features, content, style_image, args, dtype_name: str, compiled: bool) -> dict:
    import torch

    device = args.device
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    wanted = {v: k for k, v in TORCH_INDEX.items()}
    autocast = dtype_name == "bfloat16"

    def taps(x):
        out, h = {}, (x - mean) / std
        for i, layer in enumerate(features[: max(wanted) + 1]):  # stop at relu5_1, like the taps
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out

    def gram(
        a,
    ):  # [1, C, H, W] → [C, C], divided by H·W (the size-independent form; same images here)
        _, c, hh, ww = a.shape
        f = a.reshape(c, hh * ww).float()
        return (f @ f.T) / (hh * ww)

    def to_tensor(img):
        return torch.tensor(img, device=device).permute(2, 0, 1)[None].contiguous()

    with (
        torch.no_grad(),
        torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast),
    ):
        content_acts = taps(to_tensor(content))
        style_acts = taps(to_tensor(style_image))
        target_content = content_acts[CONTENT_TAP].float()
        target_grams = {t: gram(style_acts[t]) for t in STYLE_TAPS}

    def loss_fn(x):
        with torch.autocast(
            device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast
        ):
            acts = taps(x)
        a = acts[CONTENT_TAP].float()
        j_content = ((a - target_content) ** 2).sum() / (4 * a.numel())
        j_style = 0.0
        for t in STYLE_TAPS:
            c = acts[t].shape[1]
            j_style = j_style + ((gram(acts[t]) - target_grams[t]) ** 2).sum() / (4 * c * c) / len(
                STYLE_TAPS
            )
        return ALPHA * j_content + BETA * j_style

    if compiled:
        loss_fn = torch.compile(loss_fn)
    x = to_tensor(content).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=LR)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 255)
        return loss

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    loss0 = float(step())  # warm-up (and compilation)
    for _ in range(args.warmup - 1):
        step()
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    return {"ms": 1e3 * elapsed / args.steps, "loss0": loss0, "first_s": warm}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed torch steps")
    parser.add_argument("--dtype", default="float32", help="comma-separated: float32,bfloat16")
    parser.add_argument(
        "--inner",
        default="auto",
        help="ChunkedLoop inner modes, comma-separated: "
        "auto,scan,python,unrolled (auto: scan on GPU, python on CPU)",
    )
    parser.add_argument("--torch_compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--skip_eager", action="store_true", help="time only torch.compile")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    args = parser.parse_args()

    import jax
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    content, style_image = images(args.size)
    features = torch_vgg(args.device)
    rows = []
    for dtype_name in args.dtype.split(","):
        results = {}
        for inner in args.inner.split(","):
            results[f"tljax ({inner})"] = run_tljax(
                features, content, style_image, args, dtype_name, inner
            )
        reference = next(iter(results.values()))
        if not args.skip_eager:
            results["torch eager"] = run_torch(
                features, content, style_image, args, dtype_name, False
            )
        if args.torch_compile:
            results["torch.compile"] = run_torch(
                features, content, style_image, args, dtype_name, True
            )
        for name, r in results.items():
            ratio = r["ms"] / reference["ms"]
            rows.append((name, dtype_name, r["ms"], ratio, r["loss0"], r["first_s"]))
            print(
                f"{name:14s} {dtype_name:9s} {r['ms']:10.1f} ms/step  loss0={r['loss0']:.6g}",
                flush=True,
            )

    print(
        f"\nVGG19 style-transfer step, {args.size}², Adam, {args.steps} timed steps; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} on {args.device} "
        f"({torch.get_num_threads()} threads)\n"
    )
    print(
        "| implementation | dtype | ms/step | time vs first tljax row | loss at step 0 | first step(s) incl. compile, s |"
    )
    print("|---|---|---|---|---|---|")
    for name, dtype_name, ms, ratio, loss0, first in rows:
        print(f"| {name} | {dtype_name} | {ms:.1f} | {ratio:.2f}× | {loss0:.6g} | {first:.1f} |")


if __name__ == "__main__":
    main()
