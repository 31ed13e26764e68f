r"""Yosinski et al. 2014 on Fashion-MNIST: base networks and "transfer the first n layers" (AnB, BnB, ±).

The CaffeNet-like `caffenet` (5 conv + 3 dense, `tljax.models.caffenet`) from scratch on one half of
the classes (`data.classes`, relabelled 0..4), or with layers 1..n copied from a finished base run:

    # baseA and baseB (random halves drawn with class_seed 0), from scratch:
    python -m tljax.main --config=configs/transfer.py:classes=half:A --workdir=/tmp/yos/baseA
    python -m tljax.main --config=configs/transfer.py:classes=half:B --workdir=/tmp/yos/baseB
    # A3B (frozen copy of baseA's conv1..conv3, the rest re-initialised and trained on B) and A3B+:
    python -m tljax.main --config=configs/transfer.py:classes=half:B,n=3,source=/tmp/yos/baseA \
        --workdir=/tmp/yos/A3B
    python -m tljax.main --config=configs/transfer.py:classes=half:B,n=3,mode=finetune,source=/tmp/yos/baseA \
        --workdir=/tmp/yos/A3B+

`arg` keys: `classes` (`half:A` / `half:B` / one class; a list of names has commas, so give it as
`--config.data.classes=Trouser,Bag,...` instead, see `tljax.data.classes`),
`class_seed`, `n` (0 = a base network from scratch, else the transfer recipe with
`transfer.layers=n`), `mode` (`frozen` = AnB/BnB, `finetune` = AnB+/BnB+ at lr × 1, as in the paper),
`source` (the workdir of the base run to copy from), `shots` (training images per class, `all` = the
6,000), `scale` (`cpu` | `quick` | `gpu`, below), `seed`.

The same budget for base and transfer networks (as in the paper): AdamW 1e-3 with a cosine schedule,
batch 64, dropout 0.5 before fc7 and fc8, no augmentation, 28×28 inputs normalised like the Lite0
weights, scored on all test images of the chosen classes (5,000 for a half). Scales:
  * `cpu`:   200 images per class (1,000 per half), 300 steps (≈19 epochs). baseB (seed 0) reached
    91.74 / 93.58 / 94.08 / 94.24% test accuracy at 150 / 300 / 600 / 1,200 steps: 300 is 0.7 points
    under that plateau, and 600 would not fit the 4a sweep's 270 runs into an hour on 2 cores;
  * `quick`: 30 images per class, 16 steps, 40 test images per class (test-suite smoke sweeps only);
  * `gpu`:   all 6,000 images per class, `caffenet_wide` (CaffeNet's channel counts), 4,700 steps
    (≈10 epochs) at batch 64.

With class_seed 0, half:A = Trouser, Coat, Sandal, Shirt, Sneaker and half:B = T-shirt/top, Pullover,
Dress, Bag, Ankle boot. Results (seed 0, `scale=cpu`, all 5,000 test images of the half):
    classes=half:A (baseA):   test accuracy 89.68%
    classes=half:B (baseB):   test accuracy 93.58%
The whole Fig.-2 sweep and its figure: `configs/sweeps/yosinski_fig2.py` and the README.
"""

from tljax.train.defaults import default_config, parse_config_arg

SCALES = {
    # name: (model, train images per class, steps, test images per class (None = all))
    "cpu": ("caffenet", 200, 300, None),
    "quick": ("caffenet", 30, 16, 40),
    "gpu": ("caffenet_wide", None, 4700, None),
}


def get_config(arg: str | None = None):
    """`arg`: `classes=half:B,class_seed=0,n=0,mode=frozen,source=DIR,shots=N,scale=cpu,seed=0`."""
    args = parse_config_arg(
        arg,
        classes="half:B",
        class_seed=0,
        n=0,
        mode="frozen",
        source="",
        shots=-1,
        scale="cpu",
        seed=0,
    )
    if args["scale"] not in SCALES:
        raise ValueError(f"scale={args['scale']!r}: use one of {sorted(SCALES)}")
    model, per_class, steps, test_per_class = SCALES[args["scale"]]
    shots = per_class if args["shots"] == -1 else args["shots"]

    config = default_config()
    config.seed = args["seed"]
    config.model.name = model
    if args["n"]:
        if not args["source"]:
            raise ValueError("n>0 transfers layers from a base run: give source=WORKDIR")
        config.recipe = "transfer"
        config.weights.name = f"run:{args['source']}"
        config.transfer.layers = args["n"]
        config.transfer.mode = args["mode"]
        config.transfer.lr_mult = 1.0
    else:
        config.recipe = "scratch"
        config.weights.name = None
    config.weights.skip = ()
    config.weights.preprocessing = "efficientnet_lite0"  # (x - 127) / 128, like every tljax run

    config.data.source = "fashion_mnist"
    config.data.classes = args["classes"]
    config.data.class_seed = args["class_seed"]
    config.data.image_size = 28
    config.data.resize_size = 28
    config.data.train_per_class = shots
    config.data.test_per_class = test_per_class
    config.data.augment.enabled = False

    config.optim.name = "adamw"
    config.optim.lr = 1e-3
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"

    config.train.batch_size = 64
    config.train.eval_batch_size = 500
    config.train.steps = steps
    config.train.log_every = 40
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 1
    config.train.precise_bn_batches = 0
    config.lock()
    return config
