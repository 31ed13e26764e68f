#!/usr/bin/env bash
# Every GPU comparison in one call (≤ 8 minutes), one Markdown table in bench/gpu_results.md.
# Usage: bash bench/gpu.sh [bench/gpu.py flags]     e.g. --cpu for the seconds-long plumbing check
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TLJAX_VENV:-.venv}
exec timeout 480 env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" bench/gpu.py "$@"
