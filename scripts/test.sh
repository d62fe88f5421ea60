#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Two pytest workers (pytest-xdist): most tests wait on subprocesses (builds, workers, a PostgreSQL server), so
# two at once fill the 2 cores of CI better than one: the suite took 25+ min alone, 18 min with two workers.
.venv/bin/python -m pytest -q -n 2 "$@"
