#!/bin/bash
# Start a fresh WESTPA simulation here: removes earlier results, copies the basis
# state structure next to bstates.txt and runs w_init (get_pcoord for the basis
# state). Extra arguments go to w_init, e.g. ./init.sh --work-manager serial
# Fails (exit 1) on any problem: streamrun check before w_init, then w_init's
# errors and NaN basis-state pcoords, which w_init itself reports with exit 0.
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

rm -rf traj_segs seg_logs istates west.h5 bstates/start.gro
mkdir -p traj_segs seg_logs istates
cp ../start.gro bstates/start.gro       # the basis state: Na-Cl 7.0 Å apart

# Everything that can go wrong without MD (config, files, engine input, selections,
# plugins, pcoord_len/ndim, the basis states' pcoords): all problems, then stop.
streamrun check --bstate-file bstates/bstates.txt

w_init --bstate-file bstates/bstates.txt "$@" 2>&1 | tee w_init.log
if grep -E "ERROR|streamrun: error" w_init.log >/dev/null; then
    echo "init.sh: w_init reported errors (see w_init.log)" >&2
    exit 1
fi
# WESTPA stores a failed get_pcoord as a NaN pcoord and exits 0: fail here instead.
PY="$(dirname "$(command -v w_init)")/python"; [ -x "$PY" ] || PY=python3
"$PY" - <<'PYTHON'
import sys, h5py, numpy as np
with h5py.File("west.h5", "r") as f:
    done = int(f.attrs["west_current_iteration"])
    groups = ["ibstates/0/bstate_pcoord", "ibstates/0/istate_pcoord"] + [
        f"iterations/iter_{n:08d}/pcoord" for n in range(1, done)]
    bad = [g for g in groups if g in f and np.isnan(f[g][...]).any()]
if bad:
    sys.exit(f"NaN pcoord in west.h5: {', '.join(bad)} (see the output above)")
PYTHON
