#!/bin/bash
# Run the WESTPA simulation set up by init.sh (max_total_iterations in west.cfg).
# Extra arguments go to w_run, e.g. ./run.sh --n-workers 4
# Fails (exit 1) when a segment failed or a pcoord is NaN: w_run exits 0 then.
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

w_run --work-manager processes --n-workers 2 "$@" 2>&1 | tee -i w_run.log
# w_run exits 0 after failures (a NaN pcoord, failed segments): fail here.
streamrun check --results west.h5 --log w_run.log
