"""A crystal that has been read, validated and named once: what flows between the stages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from .structures import StructureLike, as_structure, structure_name
from .symmetry import (
    CrystalSymmetry,
    Inversion,
    PrimitiveSites,
    SiteMaps,
    analyse_symmetry,
    lattice_points,
    primitive_sites,
    site_maps,
    space_group_operations,
)


class _Search(enum.Enum):
    """``Crystal._inversion`` (``_rotations``) before the cell was searched for an inversion centre
    (its exact rotations); an enum member: the same object again after pickling, e.g. on a Dask worker."""

    NOT_YET = 0


@dataclass
class Crystal:
    """A validated structure, its name, and its symmetry (analysed on first use, then kept).

    Make one with :func:`as_crystal`; passing a :class:`Crystal` on (to the predictor, the
    database rows) never validates or analyses it again.
    """

    name: str
    structure: Structure
    _symmetry: CrystalSymmetry | None = field(default=None, repr=False)
    _inversion: Inversion | None | _Search = field(default=_Search.NOT_YET, repr=False, compare=False)
    _rotations: np.ndarray | None | _Search = field(default=_Search.NOT_YET, repr=False, compare=False)
    _site_maps: SiteMaps | None | _Search = field(default=_Search.NOT_YET, repr=False, compare=False)
    _lattice_points: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def symmetry(self) -> CrystalSymmetry:
        if self._symmetry is None:
            self._symmetry = analyse_symmetry(self.structure)
        return self._symmetry

    @property
    def site_maps(self) -> SiteMaps | None:
        """The space-group operations that are exact symmetries of this cell, as maps of its atoms
        (:func:`~vgnn_core.crystal.symmetry.site_maps` of moyo's operations; found on first use,
        then kept), or ``None``."""
        if self._site_maps is _Search.NOT_YET:
            self._site_maps = site_maps(self.structure, space_group_operations(self.structure))
        return self._site_maps

    @property
    def mesh_rotations(self) -> np.ndarray | None:
        """Point-group rotations that are exact symmetries of this cell (for q-mesh reductions;
        found on first use, then kept): (n, 3, 3) integer on fractional positions, or ``None``."""
        if self._rotations is _Search.NOT_YET:
            maps = self.site_maps
            self._rotations = None if maps is None else maps.point_group()
        return self._rotations

    @property
    def inversion(self) -> Inversion | None:
        """The cell's atoms under an exact inversion centre (:class:`~vgnn_core.crystal.symmetry.Inversion`),
        or ``None`` (found on first use, then kept; ``Crystal(..., _inversion=None)`` declares none).
        With one, the force constants are made exactly inversion-symmetric and D(q) is solved as a
        real symmetric matrix at every q (:mod:`vgnn_core.phonons.centrosymmetric`)."""
        if self._inversion is _Search.NOT_YET:
            maps = self.site_maps
            self._inversion = None if maps is None else maps.inversion()
        return self._inversion

    @property
    def lattice_points(self) -> np.ndarray:
        """The cell's lattice points, (k, 3) fractional (:func:`~vgnn_core.crystal.symmetry.lattice_points`;
        found on first use, then kept)."""
        if self._lattice_points is None:
            self._lattice_points = lattice_points(self.structure)
        return self._lattice_points

    @property
    def primitive_atoms(self) -> int:
        """Atoms in the primitive cell: the same for any cell of the crystal."""
        return self.n_atoms // len(self.lattice_points)

    @property
    def primitive_sites(self) -> PrimitiveSites | None:
        """How this cell repeats its primitive cell (:class:`~vgnn_core.crystal.symmetry.PrimitiveSites`:
        M with this cell's lattice = M · the primitive cell's, and each atom's primitive atom and
        offset, from its lattice points), or ``None`` for a primitive cell, and where its atoms do not
        repeat with those points (:func:`~vgnn_core.crystal.symmetry.primitive_sites`; the members'
        agreement is then measured on the cell as given)."""
        return primitive_sites(self.structure, self.lattice_points)

    @property
    def n_atoms(self) -> int:
        return len(self.structure)


def as_crystal(obj: StructureLike | Crystal, name: str | None = None, check_overlaps: bool = False) -> Crystal:
    """``obj`` itself when it is a :class:`Crystal`, else validated (:func:`as_structure`)
    and wrapped. Overlapping atoms are left to the graph builder's own neighbour search unless
    ``check_overlaps`` (a build's ingest, where the failure belongs)."""
    if isinstance(obj, Crystal):
        return obj
    structure = as_structure(obj, name=name, check_overlaps=check_overlaps)
    return Crystal(name or structure_name(structure), structure)
