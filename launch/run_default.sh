#!/usr/bin/env bash
# Set up (idempotent) and run tljax's main job on the embedded default data and weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
PHOTOS=$(.venv/bin/python -c "import importlib.util,pathlib; s=importlib.util.find_spec('foolbox'); print(pathlib.Path(list(s.submodule_search_locations)[0])/'data')")
exec .venv/bin/python -m tljax.predict --model=efficientnet_lite0 "$PHOTOS" "$@"
