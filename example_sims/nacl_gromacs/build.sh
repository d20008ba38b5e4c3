#!/usr/bin/env bash
# Regenerate topol.top and start.gro from GROMACS' own data files:
# amber99sb-ildn Na+/Cl- (ions.itp), SPC/E water (spce.itp, spc216.gro).
# Na+ and Cl- start 0.5 nm apart; gmx solvate fills the 2.2 nm cubic box with
# water; steepest descent, then 5 ps NVT at 300 K (sd) with new velocities.
# Runs in about 5 s on one core. Needs gmx (GMX=... to use another binary).
set -euo pipefail
cd "$(dirname "$0")"
GMX=${GMX:-gmx}
export GMX_MAXBACKUP=-1          # no #file.1# backups
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > topol.top <<'TOP'
; Na+ and Cl- in SPC/E water, amber99sb-ildn (GROMACS' own force-field files)
#include "amber99sb-ildn.ff/forcefield.itp"
#include "amber99sb-ildn.ff/spce.itp"
#include "amber99sb-ildn.ff/ions.itp"

[ system ]
Na+ Cl- in SPC/E water

[ molecules ]
NA   1
CL   1
TOP

cat > "$work/ions.gro" <<'GRO'
Na+ Cl-
2
    1NA      NA    1   0.850   1.100   1.100
    2CL      CL    2   1.350   1.100   1.100
   2.20000   2.20000   2.20000
GRO

"$GMX" -quiet solvate -cp "$work/ions.gro" -cs spc216.gro -p topol.top \
    -o "$work/solvated.gro"
"$GMX" -quiet grompp -f em.mdp -c "$work/solvated.gro" -p topol.top \
    -o "$work/em.tpr" -po "$work/em-out.mdp"
"$GMX" -quiet mdrun -nt 1 -s "$work/em.tpr" -deffnm "$work/em"
"$GMX" -quiet grompp -f nvt.mdp -c "$work/em.gro" -p topol.top \
    -o "$work/nvt.tpr" -po "$work/nvt-out.mdp"
"$GMX" -quiet mdrun -nt 1 -s "$work/nvt.tpr" -deffnm "$work/nvt" -c start.gro
echo "wrote topol.top and start.gro ($(sed -n 2p start.gro | tr -d ' ') atoms)"
