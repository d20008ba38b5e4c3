"""Whole groups under periodic boundaries, whatever the engine streams.

Engines stream coordinates wrapped (LAMMPS without ``unwrap on``), unwrapped from
image flags (LAMMPS ``unwrap on``: a molecule split in the start data stays split),
or made whole relative to the run input (GROMACS IMD v2: a split start structure
stays split). A centre of mass, a radius of gyration or an RMSD of a split group is
wrong. :class:`WholeTracker` makes every group a coordinate asks for whole:

- **Start point (row 0)**, from one structure: each molecule (bonded fragment of the
  topology: .tpr, LAMMPS data with bonds, PSF) that has atoms in a group is made
  whole by walking its bonds, each atom placed at the image nearest its bonded
  neighbour (what ``lib.mdamath.make_whole`` does, without its shortcut that misses
  molecules longer than half an orthorhombic box). Atoms without bonds are
  fragments of one atom.
  A group of several fragments is then joined compactly: each fragment is moved by
  whole box vectors to the image nearest the group's first fragment. Joining is
  unambiguous only while the group spans less than half the box along every box
  vector; otherwise :class:`~streamrun.errors.ConfigError` (before the engine runs).
- **Every streamed frame**: each atom is followed from the previous frame, the idea
  of MDAnalysis' ``NoJump`` transformation, in fractional (box) coordinates so that
  a changing box (IMD v3 streams it) keeps molecules exact: its image is the one
  nearest its previous position. So a group whole on row 0 stays whole on every
  frame, at a cost proportional to the selected atoms, not to the system. An atom
  that moved more than a quarter of the box between two frames cannot be followed
  reliably and fails the segment (it also catches a ``start:`` structure that is
  not the engine's start point). Groups of several fragments are checked again on
  every frame against half the box.

Periodic boundaries are the engine's, per box vector: the box given to
:class:`WholeTracker` is :meth:`streamrun.boundaries.Boundaries.search_box`, whose
non-periodic vectors are a million Å long, so no atom is ever shifted, followed
across or measured against half the box along them; with no periodic vector there
is no box and positions are taken as they are.

Minimum images *between* groups (a distance between two centres, atom pairs) are
not this module's business: coordinates apply them with the frame's box.
"""

from __future__ import annotations

from ..errors import ConfigError, PcoordError
from ..lazy import numpy as np

#: Largest move of one atom between two frames, as a fraction of a box vector,
#: that is still followed (atoms move ~0.01-0.1 box per frame in practice).
MAX_JUMP = 0.25


def box_matrix(dimensions):
    """Box vectors as rows (Å) from MDAnalysis dimensions, or None for no box."""
    if dimensions is None:
        return None
    dims = np.asarray(dimensions, dtype=np.float64)
    if dims.shape != (6,) or not np.all(dims[:3] > 0):
        return None
    from MDAnalysis.lib.mdamath import triclinic_vectors

    return np.asarray(triclinic_vectors(dims), dtype=np.float64)


def bonded_fragments(universe):
    """Molecules of the topology from its bonds: (fragment label of every atom,
    bonds as an (n, 2) index array), or None when the topology has no bonds.

    Labels are connected components of the bond graph (scipy), the same partition
    as MDAnalysis' ``fragindices``, which builds one AtomGroup per fragment and so
    costs about a second for 100k atoms of solvent. The bonds are the topology's
    own index pairs: ``universe.bonds`` builds a group of every bond first (6 s for
    the 671,000 bonds of a 1M-atom water box, against 0.1 s); their order and
    direction do not matter (both uses build an undirected graph).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    try:
        bonds = _bond_indices(universe)
    except Exception:  # NoDataError: no bonds in this topology
        return None
    if bonds.size == 0:
        return None
    n = len(universe.atoms)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1], bonds


def _bond_indices(universe):
    """Every bond of the universe's topology as an (n, 2) array of atom indices."""
    import itertools

    values = getattr(universe._topology, "bonds", None)
    values = None if values is None else values.values
    if not isinstance(values, list) or any(len(b) != 2 for b in values[:1]):
        return np.asarray(universe.bonds.to_indices())  # raises without bonds
    flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.intp,
                       count=2 * len(values))
    return flat.reshape(-1, 2)


class BoxVectors:
    """Box vectors (rows, Å) and their inverse for a frame's MDAnalysis dimensions,
    worked out again only when the box changes (never under NVT); (None, None)
    without a box."""

    def __init__(self):
        self._key, self._box, self._inv = False, None, None

    def __call__(self, dimensions):
        key = None if dimensions is None else np.asarray(dimensions).tobytes()
        if key != self._key:
            box = box_matrix(dimensions)
            self._key, self._box = key, box
            self._inv = None if box is None else np.linalg.inv(box)
        return self._box, self._inv


class WholeTracker:
    """Keeps a set of atom groups whole, from the start structure frame to frame.

    Parameters
    ----------
    universe : MDAnalysis.Universe
        Holds the start structure when :meth:`start` is called.
    groups : list of (AtomGroup, str, str)
        Each group with its config key and selection, for messages.
    source : str
        Config file, for messages.
    fragments : tuple, optional
        :func:`bonded_fragments` of the universe, when the caller has them.

    Attributes
    ----------
    ix : numpy.ndarray
        Atom indices of every tracked atom (the union of the groups), sorted.
    """

    def __init__(self, universe, groups, source, fragments=False):
        self.universe, self.source = universe, source
        self._fragments = fragments  # False: not looked for yet
        # (group, key, selection, box vectors it must be joined along): a
        # coordinate that uses one component (position, distance with axes) needs
        # its group whole along that one only
        self.groups = [(g, key, sel, np.array(rest[0] if rest else (True,) * 3))
                       for g, key, sel, *rest in groups if len(g) > 1]
        ix = [g[0].ix for g in self.groups]
        self.ix = np.unique(np.concatenate(ix)) if ix else np.empty(0, dtype=np.intp)
        self._frac = None      # fractional positions of the tracked atoms
        self._cart = None      # Cartesian positions when the start had no box
        self._joined = []      # (local indices, label) of multi-fragment groups
        self._box_and_inverse = BoxVectors()

    def _locals(self, group):
        return np.searchsorted(self.ix, group.ix)  # ix is sorted and holds them

    def start(self, positions, dimensions) -> np.ndarray:
        """Make the groups whole in one structure (row 0, or a reference).

        Parameters
        ----------
        positions : numpy.ndarray, shape (n_atoms, 3)
            Every atom of the structure (Å).
        dimensions : numpy.ndarray or None
            Its box (MDAnalysis dimensions), non-periodic vectors stretched; None
            without a periodic one.

        Returns
        -------
        numpy.ndarray, shape (len(ix), 3)
            Whole positions of the tracked atoms.

        Raises
        ------
        ConfigError
            A group of several fragments spans half the box or more.
        """
        if self.ix.size == 0:
            return np.empty((0, 3))
        box = box_matrix(dimensions)
        pos = np.asarray(positions, dtype=np.float64)
        if box is None:  # no periodic boundaries known: take the structure as it is
            self._cart = pos[self.ix].copy()
            return self._cart.copy()
        inv = np.linalg.inv(box)
        if self._fragments is False:
            self._fragments = bonded_fragments(self.universe)
        fragments = self._fragments
        frac = self._whole_fragments(pos, box, fragments)[self.ix] @ inv
        frac = self._join(frac, box, fragments)
        self._frac = frac
        return frac @ box

    def _whole_fragments(self, pos, box, fragments):
        """Positions with every fragment that has a tracked atom made whole.

        Each fragment is walked along its bonds breadth-first from its first atom,
        every atom placed at the image nearest its already placed neighbour. (Not
        ``AtomGroup.unwrap``: MDAnalysis' ``make_whole`` returns a molecule unchanged
        in an orthorhombic box when every atom is within half a box of its first
        atom, which a split molecule longer than half the box can be.)
        """
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import breadth_first_order

        if fragments is None:
            return pos
        frags, bonds = fragments
        atoms = np.flatnonzero(np.isin(frags, np.unique(frags[self.ix])))
        local = np.full(len(frags), -1)
        local[atoms] = np.arange(atoms.size)
        bonds = local[bonds]
        bonds = bonds[(bonds >= 0).all(axis=1)]
        n = atoms.size
        _, first = np.unique(frags[atoms], return_index=True)  # one root per molecule
        rows = np.concatenate([bonds[:, 0], np.full(first.size, n)])
        cols = np.concatenate([bonds[:, 1], first])
        graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
        order, pred = breadth_first_order(graph.tocsr(), n, directed=False,
                                          return_predecessors=True)
        depth = np.zeros(n + 1, dtype=np.intp)
        for node in order[1:]:
            depth[node] = depth[pred[node]] + 1
        frac = np.asarray(pos[atoms], dtype=np.float64) @ np.linalg.inv(box)
        order = order[1:]
        levels = depth[order]
        for level in range(2, int(levels.max(initial=1)) + 1):
            nodes = order[levels == level]
            parents = pred[nodes]
            delta = frac[nodes] - frac[parents]
            frac[nodes] = frac[parents] + delta - np.round(delta)
        whole = np.array(pos, dtype=np.float64)
        whole[atoms] = frac @ box
        return whole

    def _join(self, frac, box, fragments):
        """Move fragments of multi-fragment groups next to the group's first one."""
        local_frag = (fragments[0][self.ix] if fragments is not None
                      else np.arange(self.ix.size))  # no bonds: one atom each
        shift = {}  # fragment -> integer box-vector shift, once placed
        self._joined = []
        for group, key, sel, along in self.groups:
            idx = self._locals(group)
            gfrag = local_frag[idx]
            kinds = list(dict.fromkeys(gfrag.tolist()))
            if len(kinds) < 2:
                continue
            self._joined.append((idx, key, sel, along))
            centres = {f: frac[idx[gfrag == f]].mean(axis=0) for f in kinds}
            anchor = next((f for f in kinds if f in shift), kinds[0])
            shift.setdefault(anchor, np.zeros(3))
            target = centres[anchor] + shift[anchor]
            for f in kinds:
                if f not in shift:
                    shift[f] = np.round(target - centres[f]) * along
            moved = frac[idx].copy()
            for f in kinds:
                moved[gfrag == f] += shift[f]
            self._check_extent(moved, key, sel, "the start structure", box, along,
                               ConfigError, self.source)
        for f, s in shift.items():
            frac[local_frag == f] += s
        return frac

    @staticmethod
    def _check_extent(frac, key, sel, where, box, along, error=PcoordError,
                      source=None):
        extent = np.ptp(frac, axis=0) * along
        axis = int(np.argmax(extent))
        if extent[axis] < 0.5:
            return
        length = np.linalg.norm(box[axis])
        message = (f"selection {sel!r} has atoms of several molecules with no bonds between "
                   f"them, and on {where} it spans {extent[axis] * length:.1f} Å along "
                   f"box vector {'abc'[axis]}, more than half the box "
                   f"({length / 2:.1f} Å), so it cannot be made whole without "
                   f"ambiguity; select one molecule or a compact cluster, or use a "
                   f"topology with bonds"
                   + ("; a plugin whose function only uses minimum-image pair "
                      "distances can set whole: false" if ".selections[" in key
                      else ""))
        if error is ConfigError:
            raise ConfigError(message, source=source, key=key)
        raise PcoordError(f"{key}: {message}")

    def follow(self, positions, dimensions, where="a frame") -> np.ndarray:
        """Whole positions of the tracked atoms in the next streamed frame.

        Parameters
        ----------
        positions : numpy.ndarray, shape (n_atoms, 3)
            The frame as the engine sent it (any images).
        dimensions : numpy.ndarray or None
            The frame's box (the start box when the stream has none).
        where : str
            Frame label for messages.

        Raises
        ------
        PcoordError
            An atom moved a quarter of the box or more since the previous frame, or a
            multi-fragment group spans half the box.
        """
        if self.ix.size == 0:
            return np.empty((0, 3))
        pos = positions[self.ix].astype(np.float64)
        box, inv = self._box_and_inverse(dimensions)
        if box is None:
            if self._frac is not None:
                raise PcoordError(f"{where} has no box but the start structure has "
                                  f"one; the groups cannot be followed")
            self._cart = pos
            return pos
        if self._frac is None:  # the start structure had no box
            self._frac = self._cart @ inv
        frac = pos @ inv
        step = self._frac - frac
        shift = np.round(step)
        frac += shift
        moved = np.abs(shift - step)  # |frac - previous frac|, box fractions
        if moved.max() >= MAX_JUMP:
            i, axis = np.unravel_index(np.argmax(moved), moved.shape)
            length = np.linalg.norm(box[axis])
            raise PcoordError(
                f"atom {int(self.ix[i]) + 1} moved {moved[i, axis] * length:.1f} Å along "
                f"box vector {'abc'[axis]} between {where} and the frame before it, "
                f"more than a quarter of the box: molecules cannot be followed "
                f"reliably. On the first frame this means the start structure "
                f"(start:) is not the structure the engine starts from; otherwise "
                f"stream frames more often (engine.frame_interval)")
        self._frac = frac
        for idx, key, sel, along in self._joined:
            self._check_extent(frac[idx], key, sel, where, box, along)
        return frac @ box


class GuessedBonds:
    """Molecules of a topology without bonds (.gro, .pdb without CONECT), found
    from the start structure for the atoms that coordinates use.

    Bonds are MDAnalysis' guess (``DefaultGuesser.guess_bonds``: two atoms are
    bonded when closer than 0.55 x the sum of their van der Waals radii, minimum
    images along the periodic dimensions), made only for the residues of a chain
    that holds an atom asked about: from those residues, a neighbouring residue
    (the one before or after in the topology) is added while one of its atoms is
    bonded to the chain by that same criterion. So the cost is proportional to
    the molecules the coordinates use, never to the solvent; cross-links between
    residues that are not neighbours (disulfides) are not guessed, and a residue of
    one atom (an ion, whose large radius passes the test beside a water oxygen) is
    bonded to nothing.

    Parameters
    ----------
    universe : MDAnalysis.Universe
        With the start structure.
    box : numpy.ndarray or None
        :meth:`streamrun.boundaries.Boundaries.search_box` of the start structure.
    """

    FUDGE = 0.55

    def __init__(self, universe, box):
        self.universe, self.box = universe, box
        n = len(universe.atoms)
        self.labels = -1 - np.arange(n)  # unexplored: one fragment per atom
        self.bonds = np.empty((0, 2), dtype=np.intp)
        self.explored = np.zeros(len(universe.residues), dtype=bool)
        self.atoms_guessed = 0
        self.problem = None  # why bonds could not be guessed
        self._radii = None

    def _atom_radii(self):
        if self._radii is None:
            from MDAnalysis.guesser.tables import vdwradii

            try:
                types = np.char.upper(np.asarray(self.universe.atoms.types, dtype=str))
            except Exception:  # no types in the topology
                from MDAnalysis.guesser.default_guesser import DefaultGuesser

                types = np.char.upper(np.asarray(DefaultGuesser(None).guess_types(
                    self.universe.atoms.names), dtype=str))
            self._radii = np.array([vdwradii.get(t, np.nan) for t in types])
        return self._radii

    def _bonded(self, a, b) -> bool:
        """True when an atom of residue ``a`` is bonded to one of residue ``b``."""
        from MDAnalysis.lib.distances import distance_array

        ra, rb = self.universe.residues[a].atoms, self.universe.residues[b].atoms
        if len(ra) == 1 or len(rb) == 1:
            return False  # a monatomic ion is bonded to nothing
        d = distance_array(ra.positions, rb.positions, box=self.box)
        radii = self._atom_radii()
        limit = self.FUDGE * (radii[ra.ix][:, None] + radii[rb.ix][None, :])
        return bool(np.any((d < limit) & (d > 0.1)))

    def fragments(self, ix):
        """(labels, bonds) as :func:`bonded_fragments` gives them, with the chains
        of the atoms ``ix`` explored; None when bonds cannot be guessed."""
        from MDAnalysis.guesser.default_guesser import DefaultGuesser
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        radii = self._atom_radii()
        residues = self.universe.atoms.resindices
        start = np.setdiff1d(np.unique(residues[ix]), np.flatnonzero(self.explored))
        if start.size == 0:
            return self.labels, self.bonds
        chain, todo = set(start.tolist()), list(start.tolist())
        last = len(self.universe.residues) - 1
        while todo:
            r = todo.pop()
            for other in (r - 1, r + 1):
                if 0 <= other <= last and other not in chain and \
                        not self.explored[other] and self._bonded(r, other):
                    chain.add(other)
                    todo.append(other)
        chain = np.array(sorted(chain))
        self.explored[chain] = True
        atoms = self.universe.residues[chain].atoms
        if np.isnan(radii[atoms.ix]).any():
            types = sorted({t for t, r in zip(atoms.types, radii[atoms.ix])
                            if np.isnan(r)})
            self.problem = (f"no van der Waals radius for atom type(s) "
                            f"{', '.join(types)}")
            return None
        guessed = DefaultGuesser(None, box=self.box).guess_bonds(atoms, atoms.positions)
        new = np.asarray(guessed, dtype=np.intp).reshape(-1, 2)
        lone = [r.atoms[0].ix for r in self.universe.residues[chain] if len(r.atoms) == 1]
        if lone:  # an ion next to a water oxygen passes the radius test
            new = new[~np.isin(new, lone).any(axis=1)]
        self.bonds = np.vstack([self.bonds, new])
        self.atoms_guessed += len(atoms)
        local = np.full(len(self.labels), -1)
        local[atoms.ix] = np.arange(len(atoms))
        pairs = local[new]
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                           shape=(len(atoms), len(atoms)))
        parts = connected_components(graph, directed=False)[1]
        self.labels[atoms.ix] = parts + (self.labels.max() + 1 if
                                         (self.labels >= 0).any() else 0)
        return self.labels, self.bonds
