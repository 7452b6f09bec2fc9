"""Γ-centred q-point meshes for Brillouin-zone integrals (DOS, thermal properties).

A mesh ``n1 × n2 × n3`` holds the points ``q = g / n`` (``g`` integer) in the reciprocal basis
of the cell. Time reversal gives ``ω(−q) = ω(q)``, so each pair ``(q, −q)`` is kept once with
weight 2: exact for every property here, at half the eigen-solves. Mesh sizes follow phonopy's
``length`` rule, ``n_i = max(1, round(density · |b_i|))`` with ``|b_i|`` in Å⁻¹ (no 2π).
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
    """Irreducible (under q → −q) points of a Γ-centred mesh with integer weights."""

    mesh: tuple[int, int, int]
    qpoints: np.ndarray  # (n, 3) fractional, in [-0.5, 0.5)
    weights: np.ndarray  # (n,) int, summing to n1·n2·n3

    @property
    def n_qpoints(self) -> int:
        return int(self.qpoints.shape[0])

    @property
    def n_grid(self) -> int:
        return int(np.prod(self.mesh))

    @property
    def gamma_index(self) -> int:
        """Index of Γ (always the first point)."""
        return 0


def mesh_numbers(lattice: np.ndarray, density: float = DEFAULT_MESH_DENSITY) -> tuple[int, int, int]:
    """Mesh size from a density in points per Å⁻¹ of reciprocal length (lattice as rows, Å)."""
    if density <= 0:
        raise ValueError(f"mesh density must be positive, got {density}")
    recip = np.linalg.inv(np.asarray(lattice, dtype=float)).T  # rows b_i, Å⁻¹ without 2π
    n = np.maximum(1, np.rint(density * np.linalg.norm(recip, axis=1))).astype(int)
    return int(n[0]), int(n[1]), int(n[2])


def gamma_centred_mesh(mesh: tuple[int, int, int]) -> QMesh:
    """The Γ-centred ``mesh`` reduced by time reversal (Γ first)."""
    n = np.asarray(mesh, dtype=int)
    if n.shape != (3,) or (n < 1).any():
        raise ValueError(f"mesh must be three positive integers, got {mesh}")
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    index = (grid[:, 0] * n[1] + grid[:, 1]) * n[2] + grid[:, 2]
    partner = (-grid) % n
    partner_index = (partner[:, 0] * n[1] + partner[:, 1]) * n[2] + partner[:, 2]
    keep = index <= partner_index
    weights = np.where(index == partner_index, 1, 2)[keep]
    q = grid[keep] / n
    q = q - np.floor(q + 0.5)  # fold into [-0.5, 0.5)
    return QMesh(tuple(int(k) for k in n), q, weights.astype(np.int64))


def mesh_for(
    lattice: np.ndarray,
    density: float = DEFAULT_MESH_DENSITY,
    mesh: tuple[int, int, int] | None = None,
    max_points: int = MAX_MESH_POINTS,
) -> QMesh:
    """The mesh of a cell: ``mesh`` when given, else from ``density``, coarsened until it has
    at most ``max_points`` irreducible points (large cells need few points)."""
    if mesh is not None:
        return gamma_centred_mesh(mesh)
    d = float(density)
    while True:
        n = mesh_numbers(lattice, d)
        # the reduced mesh has (n1·n2·n3 + #self-partners)/2 ≤ n1·n2·n3/2 + 4 points
        if np.prod(n) // 2 + 4 <= max_points or n == (1, 1, 1):
            q = gamma_centred_mesh(n)
            if q.n_qpoints <= max_points or n == (1, 1, 1):
                return q
        d *= 0.9
