#!/bin/bash
# Start a fresh WESTPA simulation here: removes earlier results, copies the basis
# state (an OpenMM state XML) next to bstates.txt and runs w_init (get_pcoord for
# the basis state). Extra arguments go to w_init, e.g. ./init.sh --work-manager serial
# Fails (exit 1) on any problem: streamrun check before w_init, then w_init's
# errors and NaN basis-state pcoords, which w_init itself reports with exit 0.
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

rm -rf traj_segs seg_logs istates west.h5 bstates/start.xml
mkdir -p traj_segs seg_logs istates
cp ../start.xml bstates/start.xml       # the basis state: the minimised peptide

# Everything that can go wrong without MD (config, files, engine input, selections,
# plugins, pcoord_len/ndim, the basis states' pcoords): all problems, then stop.
streamrun check --bstate-file bstates/bstates.txt

w_init --bstate-file bstates/bstates.txt "$@" 2>&1 | tee -i w_init.log
# w_init exits 0 after failures (a NaN pcoord, failed segments): fail here.
streamrun check --results west.h5 --log w_init.log
