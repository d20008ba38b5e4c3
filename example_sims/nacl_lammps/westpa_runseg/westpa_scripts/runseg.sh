#!/bin/bash
# WESTPA runs this for every segment, in $WEST_CURRENT_SEG_DATA_REF (a fresh,
# empty folder). It links the parent's final structure as parent.data and lets
# streamrun run LAMMPS from it; streamrun writes the pcoord to $WEST_PCOORD_RETURN
# while the engine streams, and exits non-zero (no pcoord file) if anything fails.
set -euo pipefail
cd "$WEST_CURRENT_SEG_DATA_REF"

case "$WEST_CURRENT_SEG_INITPOINT_TYPE" in
  SEG_INITPOINT_CONTINUES)  # parent segment's folder: use the structure it ended at
    ln -sv "$WEST_PARENT_DATA_REF/end.data" parent.data ;;
  SEG_INITPOINT_NEWTRAJ)    # basis state: WEST_PARENT_DATA_REF is bstates/start.data
    ln -sv "$WEST_PARENT_DATA_REF" parent.data ;;
  *)
    echo "runseg.sh: unknown WEST_CURRENT_SEG_INITPOINT_TYPE '$WEST_CURRENT_SEG_INITPOINT_TYPE'" >&2
    exit 1 ;;
esac

# LAMMPS velocity seeds must be 1 .. 2^31-2 (0 and >= 2^31 are errors; 2^31-1
# hangs `velocity create`), so fold WESTPA's 32-bit random number into that range.
seed=$(( WEST_RAND32 % 2147483646 + 1 ))

exec streamrun run -c "$WEST_SIM_ROOT/streamrun.yaml" -o "$WEST_PCOORD_RETURN" \
  --set "engine.variables.start=$PWD/parent.data" \
  --set "engine.variables.seed=$seed" \
  --set "start=$PWD/parent.data"
