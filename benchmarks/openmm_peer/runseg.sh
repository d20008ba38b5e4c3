#!/bin/bash
# One segment the way WESTPA's OpenMM tutorial (tutorial7.1-basic-nacl) runs it: link
# the parent's state, run a Python OpenMM script that writes a DCD and seg.xml, then a
# second Python (mdtraj) computes the pcoord from parent.xml + the DCD.
# WESTPA's executable propagator starts it in the segment folder (cwd), with
# $WEST_SIM_ROOT/.. the copy of example_sims/nacl_openmm; NACL_NSTEPS and NACL_INTERVAL
# come from west.cfg (west.executable.environ).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
example="$WEST_SIM_ROOT/.."
cd "$WEST_CURRENT_SEG_DATA_REF"
case "$WEST_CURRENT_SEG_INITPOINT_TYPE" in
  SEG_INITPOINT_CONTINUES) ln -s "$WEST_PARENT_DATA_REF/seg.xml" parent.xml ;;
  SEG_INITPOINT_NEWTRAJ)   ln -s "$WEST_PARENT_DATA_REF" parent.xml ;;
esac
python "$here/nacl_seg.py" "$example" "1$WEST_RAND16" > seg.log 2>&1
python "$here/get_distance.py" "$example/topology.pdb" "$WEST_PCOORD_RETURN" \
  parent.xml seg.dcd
