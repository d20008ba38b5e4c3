#!/bin/bash
# Run the WESTPA simulation set up by init.sh (max_total_iterations in west.cfg).
# Extra arguments go to w_run, e.g. ./run.sh --n-workers 4
# Fails (exit 1) when a segment failed or a pcoord is NaN: w_run exits 0 then.
set -euo pipefail
cd "$(dirname "$0")"
export WEST_SIM_ROOT="$PWD"

w_run --work-manager processes --n-workers 2 "$@" 2>&1 | tee w_run.log
if grep -E "propagation failed|ERROR|streamrun: error" w_run.log >/dev/null; then
    echo "run.sh: segments failed (see w_run.log and seg_logs/)" >&2
    exit 1
fi
# A NaN in a finished iteration's pcoords would be a silent failure: fail here.
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
