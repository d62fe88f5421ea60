#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled demo data (German credit, target 'class-label').
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/daedalus demo --time "${DEMO_TIME:-60}" "$@"
