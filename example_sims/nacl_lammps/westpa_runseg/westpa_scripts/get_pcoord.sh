#!/bin/bash
# WESTPA (w_init) runs this for each basis state: one pcoord point of the
# structure at $WEST_STRUCT_DATA_REF, written to $WEST_PCOORD_RETURN, computed
# with the same coordinates streamrun uses for the segments' rows.
set -euo pipefail
exec streamrun pcoord -c "$WEST_SIM_ROOT/streamrun.yaml" -o "$WEST_PCOORD_RETURN"
