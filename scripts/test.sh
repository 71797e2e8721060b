#!/usr/bin/env bash
# The project's test command (the README and CI run exactly this). Tests run in 3 worker
# processes (pytest-xdist): most wait on subprocesses, sshd and sleeps rather than on a core,
# so 3 workers finish in about 4 minutes on 2 cores. COORD_TEST_WORKERS=0 runs them in one
# process (for debugging); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${COORD_TEST_WORKERS:-3}
if [ "$workers" = "0" ]; then
  exec python3 -m pytest -q -p no:cacheprovider "$@"
fi
exec python3 -m pytest -q -p no:cacheprovider -n "$workers" --dist loadgroup "$@"
