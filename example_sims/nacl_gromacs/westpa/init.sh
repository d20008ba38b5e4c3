#!/bin/bash
# Start a fresh WESTPA simulation here: removes earlier results, copies the basis
# state structure next to bstates.txt and runs w_init (get_pcoord for the basis
# state). Extra arguments go to w_init, e.g. ./init.sh --work-manager serial
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

rm -rf traj_segs seg_logs istates west.h5 bstates/start.gro
mkdir -p traj_segs seg_logs istates
cp ../start.gro bstates/start.gro       # the basis state: Na-Cl 7.0 Å apart

w_init --bstate-file bstates/bstates.txt "$@"
