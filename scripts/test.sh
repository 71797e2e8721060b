#!/usr/bin/env bash
# The project's test command (the README and CI run exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -p no:cacheprovider "$@"
