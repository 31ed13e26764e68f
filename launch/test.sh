#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on TLJAX_TEST_WORKERS pytest-xdist workers (default
# 2: the CI machine has 2 cores; the tests pick free ports and serialise the one local SLURM cluster).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
exec .venv/bin/python -m pytest -q -n "${TLJAX_TEST_WORKERS:-2}" "$@"
