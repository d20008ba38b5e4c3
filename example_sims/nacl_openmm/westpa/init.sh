#!/bin/bash
# Start a fresh WESTPA simulation here: removes earlier results, copies the basis
# state (an OpenMM state XML) next to bstates.txt and runs w_init (get_pcoord for
# the basis state). Extra arguments go to w_init, e.g. ./init.sh --work-manager serial
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

rm -rf traj_segs seg_logs istates west.h5 bstates/start.xml
mkdir -p traj_segs seg_logs istates
cp ../start.xml bstates/start.xml       # the basis state: Na-Cl in contact, 2.7 Å

w_init --bstate-file bstates/bstates.txt "$@"
