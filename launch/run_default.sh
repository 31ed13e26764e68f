#!/usr/bin/env bash
# Set up (idempotent) and run tljax's main job on the embedded default data and weights:
# fine-tune real EfficientNet-Lite0 ImageNet weights on real Fashion-MNIST (100 labelled images per class,
# scored on all 10,000 test images). Running it again resumes from (or reports) the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
WORKDIR=${WORKDIR:-workdirs/fashion_mnist_lite0}
exec .venv/bin/python -m tljax.main --config=configs/fashion_mnist_lite0.py --workdir="$WORKDIR" "$@"
