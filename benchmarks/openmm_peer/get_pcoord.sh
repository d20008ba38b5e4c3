#!/bin/bash
# The basis state's pcoord (w_init) for runseg.sh: the same mdtraj script on the state.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python "$here/get_distance.py" "$WEST_SIM_ROOT/../topology.pdb" "$WEST_PCOORD_RETURN" \
  "$WEST_STRUCT_DATA_REF"
