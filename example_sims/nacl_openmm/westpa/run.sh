#!/bin/bash
# Run the WESTPA simulation set up by init.sh (max_total_iterations in west.cfg).
# Extra arguments go to w_run, e.g. ./run.sh --n-workers 4
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

w_run --work-manager processes --n-workers 2 "$@"
