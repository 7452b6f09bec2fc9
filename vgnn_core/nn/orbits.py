"""A network's outputs on a batch's symmetry orbits: computed once per orbit, rotated to the rest.

With :attr:`GraphBatch.orbits <vgnn_core.crystal.graph.GraphBatch.orbits>` (see
:mod:`vgnn_core.crystal.orbits`) the backbone updates only each orbit's representative atom and
reads its neighbours' features as the representatives' rotated by the Wigner matrices D(R)
(:class:`AtomRotations`); the bond read-out runs on the representative bonds only and every other
bond's block is R Φ Rᵀ (:func:`rotate_blocks`). Equal to running on every atom and bond, to float
round-off, because every layer is equivariant.
"""

from __future__ import annotations

import torch
from e3nn import o3

from ..crystal.graph import BatchOrbits


def _sphere_points(n: int) -> torch.Tensor:
    """``n`` unit vectors spread over the sphere (a Fibonacci lattice), float64: in general
    position, so the spherical harmonics of degree l on them have full rank for 2l + 1 ≤ n."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = k * torch.pi * (3.0 - 5.0 ** 0.5)
    r = torch.sqrt(1.0 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1)


def wigner_matrix(rotations: torch.Tensor, degree: int) -> torch.Tensor:
    """D_l of the proper part of each orthogonal ``rotations`` (n, 3, 3), l = ``degree``, in
    e3nn's basis (float64, (n, 2l+1, 2l+1)): Y_l(R x) = D_l(R) Y_l(x), fitted on 2(2l+1) points.
    An irrep of parity p gets an extra factor p under an improper rotation."""
    rotations = rotations.to(torch.float64)
    proper = rotations * torch.linalg.det(rotations).sign()[:, None, None]
    points = _sphere_points(2 * (2 * degree + 1)).to(rotations.device)
    y = o3.spherical_harmonics(degree, points, normalize=True, normalization="component")  # (k, 2l+1)
    y_rot = o3.spherical_harmonics(degree, points @ proper.transpose(1, 2), normalize=True,
                                   normalization="component")  # (n, k, 2l+1): rows are Y(R x_k)
    return (torch.linalg.pinv(y) @ y_rot).transpose(1, 2)  # Y_rot = Y Dᵀ


class AtomRotations:
    """The rotations that take each orbit's representative atom's outputs to every atom's, for one
    batch (:attr:`GraphBatch.orbits <vgnn_core.crystal.graph.GraphBatch.orbits>`), in ``dtype``.
    Build it with :meth:`of`: one per batch and dtype, shared by the batch's networks."""

    def __init__(self, orbits: BatchOrbits, dtype: torch.dtype):
        self.representatives = orbits.representatives
        position = torch.full_like(orbits.atom_representative, -1)
        position[self.representatives] = torch.arange(len(self.representatives), device=position.device)
        self.position = position  # atom → its row among the representatives (-1: not one)
        self.source = position[orbits.atom_representative]  # atom → its representative's row
        self._rotations = orbits.rotations[orbits.atom_rotation]  # (N, 3, 3) float64
        self.cartesian = self._rotations.to(dtype)
        self.improper = torch.linalg.det(self._rotations) < 0
        self.dtype = dtype
        self._wigner: dict[int, torch.Tensor] = {}

    @classmethod
    def of(cls, orbits: BatchOrbits, dtype: torch.dtype) -> AtomRotations:
        """The batch's rotations in ``dtype``, built on first use and kept with ``orbits``."""
        if dtype not in orbits.derived:
            orbits.derived[dtype] = cls(orbits, dtype)
        return orbits.derived[dtype]

    def wigner(self, degree: int) -> torch.Tensor:
        """Every atom's D_l (N, 2l+1, 2l+1) (computed on first use)."""
        if degree not in self._wigner:
            self._wigner[degree] = wigner_matrix(self._rotations, degree).to(self.dtype)
        return self._wigner[degree]

    def expand(self, h: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
        """Features of every atom (N, irreps.dim) from the representatives' (len(representatives), irreps.dim)."""
        x = h[self.source]
        out = torch.empty_like(x)
        for (mul, ir), s in zip(irreps, irreps.slices()):
            piece = x[:, s]
            if ir.l > 0:
                d = self.wigner(ir.l)
                piece = (piece.reshape(-1, mul, ir.dim) @ d.transpose(1, 2)).reshape(-1, mul * ir.dim)
            if ir.p == -1:
                piece = torch.where(self.improper[:, None], -piece, piece)
            out[:, s] = piece
        return out

    def expand_tensors(self, t: torch.Tensor) -> torch.Tensor:
        """Every atom's 3×3 tensor R t Rᵀ (N, 3, 3) from the representatives' (len(representatives), 3, 3)."""
        return self.cartesian @ t[self.source] @ self.cartesian.transpose(1, 2)


def rotate_blocks(blocks: torch.Tensor, orbits: BatchOrbits, edge_reverse: torch.Tensor) -> torch.Tensor:
    """Every bond's 3×3 block (E, 3, 3) from those of the representative bonds (the others'
    rows are ignored): Φ_e = R Φ_rep Rᵀ, or R Φ_repᵀ Rᵀ for a bond that maps onto the reverse.
    The second bond of each (bond, reverse) pair gets the first's transpose, bit for bit, so that
    D(q) stays exactly Hermitian."""
    source = blocks[orbits.edge_representative]
    source = torch.where(orbits.edge_transposed[:, None, None], source.transpose(1, 2), source)
    r = orbits.rotations[orbits.edge_rotation].to(blocks.dtype)
    out = r @ source @ r.transpose(1, 2)
    first = torch.nonzero(edge_reverse > torch.arange(len(edge_reverse), device=edge_reverse.device))[:, 0]
    out[edge_reverse[first]] = out[first].transpose(1, 2)
    return out
