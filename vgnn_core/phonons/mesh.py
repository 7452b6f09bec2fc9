"""Γ-centred q-point meshes for Brillouin-zone integrals (DOS, thermal properties).

A mesh ``n1 × n2 × n3`` holds the points ``q = g / n`` (``g`` integer) in the reciprocal basis
of the cell. Time reversal gives ``ω(−q) = ω(q)``, so each pair ``(q, −q)`` is kept once with
weight 2: exact for every property here, at half the eigen-solves. Given the crystal's point
group (the rotations of its space group), each star ``{Rq}`` is kept once with its size as
weight, as phonopy does: exact for the DOS, the per-element partial DOS (a symmetry operation
maps atoms onto atoms of the same element) and the thermal properties, at up to 48× fewer
eigen-solves (time reversal adds at most inversion, so the bound is the largest Laue group's, m-3m's
48). The reduction is spglib's: a mesh that breaks part of the symmetry is still reduced exactly, by
what it keeps. Mesh sizes follow phonopy's ``length`` rule, ``n_i = max(1, round(density · |b_i|))``
with ``|b_i|`` in Å⁻¹ (no 2π).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default mesh density (points per Å⁻¹, phonopy's ``length``): 13×13×13 for silicon.
DEFAULT_MESH_DENSITY: float = 40.0
#: Upper bound on the number of irreducible points a default mesh may have.
MAX_MESH_POINTS: int = 4000


@dataclass(frozen=True)
class QMesh:
    """Irreducible points of a Γ-centred mesh (under q → −q and the given rotations) with
    integer weights: the number of mesh points each one stands for."""

    mesh: tuple[int, int, int]
    qpoints: np.ndarray  # (n, 3) fractional, in [-0.5, 0.5)
    weights: np.ndarray  # (n,) int, summing to n1·n2·n3

    @property
    def n_qpoints(self) -> int:
        return int(self.qpoints.shape[0])



def mesh_numbers(lattice: np.ndarray, density: float = DEFAULT_MESH_DENSITY) -> tuple[int, int, int]:
    """Mesh size from a density in points per Å⁻¹ of reciprocal length (lattice as rows, Å)."""
    if density <= 0:
        raise ValueError(f"mesh density must be positive, got {density}")
    recip = np.linalg.inv(np.asarray(lattice, dtype=float)).T  # rows b_i, Å⁻¹ without 2π
    n = np.maximum(1, np.rint(density * np.linalg.norm(recip, axis=1))).astype(int)
    return int(n[0]), int(n[1]), int(n[2])


def gamma_centred_mesh(mesh: tuple[int, int, int], rotations: np.ndarray | None = None) -> QMesh:
    """The Γ-centred ``mesh`` reduced by time reversal and, when given, the point-group
    ``rotations`` (integer matrices acting on fractional positions, as spglib returns them);
    Γ first, then the irreducible points in grid order.

    The reduction is spglib's (``get_stabilized_reciprocal_mesh``), which keeps only the
    symmetry a mesh has: sums over the weighted points equal sums over the whole grid.
    """
    import spglib

    n = np.asarray(mesh, dtype=int)
    if n.shape != (3,) or (n < 1).any():
        raise ValueError(f"mesh must be three positive integers, got {mesh}")
    ops = np.eye(3, dtype="intc")[None] if rotations is None else np.asarray(rotations, dtype="intc")
    mapping, grid = spglib.get_stabilized_reciprocal_mesh(n, ops, is_shift=[0, 0, 0], is_time_reversal=True)
    keep, weights = np.unique(mapping, return_counts=True)  # sorted: Γ (grid point 0) first
    q = np.asarray(grid[keep], dtype=float) / n
    q = q - np.floor(q + 0.5)  # fold into [-0.5, 0.5)
    return QMesh(tuple(int(k) for k in n), q, weights.astype(np.int64))


def mesh_for(
    lattice: np.ndarray,
    density: float = DEFAULT_MESH_DENSITY,
    mesh: tuple[int, int, int] | None = None,
    max_points: int = MAX_MESH_POINTS,
    rotations: np.ndarray | None = None,
) -> QMesh:
    """The mesh of a cell: ``mesh`` when given, else from ``density``, coarsened until it has
    at most ``max_points`` points after time reversal (large cells need few points); reduced
    by ``rotations`` when given."""
    if mesh is not None:
        return gamma_centred_mesh(mesh, rotations)
    d = float(density)
    while True:
        n = mesh_numbers(lattice, d)
        if _time_reversal_points(n) <= max_points or n == (1, 1, 1):
            return gamma_centred_mesh(n, rotations)
        d *= 0.9


def _time_reversal_points(n: tuple[int, int, int]) -> int:
    """Points of the mesh ``n`` kept under q ≡ −q alone: (n1·n2·n3 + #self-partners) / 2, where
    the self-partners (2q on the grid) number 1 or 2 along each axis (odd or even n_i)."""
    self_partners = int(np.prod([2 - k % 2 for k in n]))
    return (int(np.prod(n)) + self_partners) // 2
