"""Ensembles of independently trained VGNNs, averaged where it keeps the physics exact.

The members' force constants Φ_ij(T) are averaged bond by bond. Every step after the network
(the antisymmetric parts' projection, the acoustic sum rule, the MVN pair sums) is linear in the
blocks, so this is the assembly of the members' mean blocks, and the ensemble's D(q) is the mean
of its members' D(q): Hermitian, with exact acoustic modes, and the same for a primitive cell and
its supercells, exactly as for one model. (Averaging frequencies
instead would not be: the mean of sorted eigenvalues is not the spectrum of any D.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..crystal.graph import GraphBatch
from ..crystal.symmetry import PrimitiveSites
from ..phonons.dynamical_matrix import member_frequencies, primitive_frequencies
from ..phonons.force_constants import ForceConstants, mean_force_constants
from ..phonons.mesh import gamma_centred_mesh
from .model import VGNN, AtomFeatures, ForceConstantModel

#: Where the members' agreement (spread, lowest mode) is measured: Γ and the zone-boundary
#: points of the 2×2×2 grid (fractional, the cell's reciprocal basis).
UNCERTAINTY_QPOINTS = [[a / 2, b / 2, c / 2] for a in (0, 1) for b in (0, 1) for c in (0, 1)]


def uncertainty_qpoints(rotations: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:data:`UNCERTAINTY_QPOINTS` reduced by a crystal's point group: the points that differ
    under ``rotations`` (integer, on fractional positions: :attr:`~vgnn_core.crystal.crystal.Crystal.mesh_rotations`),
    (n, 3), and how many of the eight each stands for, (n,). Force constants with the crystal's
    symmetry (an equivariant network's, to float round-off) have the same spectrum at equivalent
    points, so the weighted spread and the extremes over these are those over all eight, at
    fewer eigen-solves (a cubic cell: 3 or 4 instead of 8). Without rotations, all eight."""
    if rotations is None:
        return np.asarray(UNCERTAINTY_QPOINTS, dtype=float), np.ones(len(UNCERTAINTY_QPOINTS), dtype=np.int64)
    grid = gamma_centred_mesh((2, 2, 2), rotations)  # a q and −q are the same point here
    return grid.qpoints, grid.weights


def primitive_rotations(rotations: np.ndarray | None, matrix: np.ndarray) -> np.ndarray | None:
    """A cell's rotations (integer, on its fractional positions) in the basis of its primitive cell
    (its lattice = ``matrix`` · the primitive cell's): Mᵀ W M⁻ᵀ, or ``None`` when there are none or
    one is not an integer matrix there."""
    if rotations is None:
        return None
    m = np.asarray(matrix, dtype=float)
    w = m.T @ np.asarray(rotations, dtype=float) @ np.linalg.inv(m.T)
    rounded = np.rint(w)
    return rounded.astype(np.int64) if np.abs(w - rounded).max() < 1e-6 else None


@dataclass(frozen=True)
class MemberAgreement:
    """How far an ensemble's members agree on one crystal, measured at :data:`UNCERTAINTY_QPOINTS`
    of its primitive cell (:func:`uncertainty_qpoints`) on each member's own spectrum: for a k-MVN,
    the primitive cell's modes whichever cell is given (projected from its D(q), so the same for every
    cell of a crystal); for an MVN, the given cell's Γ."""

    #: standard deviation across members of each mode's frequency, averaged over modes and
    #: q-points (cm⁻¹, uncalibrated: the predictor scales it to the expected MAE)
    spread_cm1: float
    #: the lowest frequency any member predicts there (cm⁻¹, signed: negative = imaginary); the
    #: mean of the members' blocks can be stable where one member is not
    lowest_cm1: float
    #: the highest frequency any member predicts there (cm⁻¹): the crystal's frequency scale,
    #: which the expected error grows with (:class:`~vgnn_core.nn.uncertainty.UncertaintyModel`)
    highest_cm1: float


class VGNNEnsemble(ForceConstantModel):
    """A k-MVN or MVN whose bond blocks are the mean of its ``members``' (same kind and graph).

    It is a :class:`VGNN` everywhere a model is used: prediction, evaluation, model cards.
    """

    def __init__(self, members: Sequence[VGNN]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        first = members[0].config
        for k, m in enumerate(members):
            if not m.has_force_constants:
                raise ValueError("VVN predicts frequencies directly: its members cannot share force constants")
            if m.kind != first.kind or m.config.graph_cutoff != first.graph_cutoff:
                raise ValueError(
                    f"member {k} is a {m.kind} with graph cutoff {m.config.graph_cutoff} Å; member 0 is a "
                    f"{first.kind} with {first.graph_cutoff} Å: members must share the kind and the graph"
                )
        self.config = first
        self.members = torch.nn.ModuleList(members)

    def read_as(self, kind: str) -> VGNNEnsemble:
        """The same members read out as ``kind`` (:meth:`VGNN.read_as <vgnn_core.nn.model.VGNN.read_as>`:
        their modules shared, not copied)."""
        return VGNNEnsemble([m.read_as(kind) for m in self.members])

    @property
    def member_configs(self) -> list[dict]:
        return [m.config.to_dict() for m in self.members]

    def encode(self, batch: GraphBatch) -> list[AtomFeatures]:
        """Every member's backbone features of ``batch``, in member order."""
        return [m.encode(batch) for m in self.members]

    def bond_blocks(self, batch: GraphBatch, features: Sequence[AtomFeatures] | None = None) -> torch.Tensor:
        """The mean over members of Φ_ij(T) for every bond of the batch (E, 3, 3), eV/Å²."""
        return self.member_bond_blocks(batch, features).mean(0)

    def member_bond_blocks(self, batch: GraphBatch, features: Sequence[AtomFeatures] | None = None) -> torch.Tensor:
        """Every member's Φ_ij(T), (n_members, E, 3, 3) eV/Å²; ``features`` (:meth:`encode` of this
        batch) skips the backbones."""
        if features is None:
            features = [None] * len(self.members)
        elif len(features) != len(self.members):
            raise ValueError(f"{len(features)} members' features for an ensemble of {len(self.members)}")
        return torch.stack([m.bond_blocks(batch, f) for m, f in zip(self.members, features)])

    def force_constants(self, batch: GraphBatch, features: Sequence[AtomFeatures] | None = None) -> list[ForceConstants]:
        """One :class:`ForceConstants` per crystal: the mean of the members' (each assembled in
        float64; every rule of the assembly is linear, so this is the mean blocks' assembly), as
        :meth:`force_constants_and_agreement` gives them."""
        each = self.assemble_members(batch, self.member_bond_blocks(batch, features))
        return [mean_force_constants(members) for members in each]

    def force_constants_and_agreement(self, batch: GraphBatch, features: Sequence[AtomFeatures] | None = None,
                                      member_blocks: torch.Tensor | None = None,
                                      rotations: Sequence[np.ndarray | None] | None = None,
                                      primitive_sites: Sequence[PrimitiveSites | None] | None = None,
                                      ) -> tuple[list[ForceConstants], list[MemberAgreement]]:
        """The ensemble's force constants and, per crystal, how far its members agree.

        Each member's own frequencies at Γ and the seven zone-boundary points of the primitive cell's
        2×2×2 grid (MVN: at Γ) give the spread (standard deviation across members, averaged over modes
        and q-points) and the lowest and highest frequency of any member: one extra small eigen-solve per
        member, a few per cent of a band structure; no NAC (with ``nac_mode="full"`` the
        ensemble's own bands get it, its members' spectra here do not). ``features``: as for
        :meth:`member_bond_blocks`; ``member_blocks`` (that method's result for this batch, e.g. from
        a k-MVN with the same members when this is their MVN) skips the networks. ``rotations``
        (one per crystal of the batch, or None: each cell's exact point-group rotations) solve only
        the points that differ under them (:func:`uncertainty_qpoints`), weighted;
        ``primitive_sites`` (one per crystal, None for a primitive cell:
        :attr:`~vgnn_core.crystal.crystal.Crystal.primitive_sites`) measure a k-MVN's agreement on
        the primitive cell's own modes at its eight points, projected from each member's D(q) of
        the given cell (:func:`~vgnn_core.phonons.dynamical_matrix.primitive_frequencies`), with
        the rotations taken to its basis (:func:`primitive_rotations`).
        """
        if member_blocks is None:
            member_blocks = self.member_bond_blocks(batch, features)
        elif member_blocks.shape[0] != len(self.members):
            raise ValueError(f"{member_blocks.shape[0]} members' blocks for an ensemble of {len(self.members)}")
        each = self.assemble_members(batch, member_blocks)  # per crystal, its members' (on the same bonds)
        fcs = [mean_force_constants(members) for members in each]  # = the mean blocks' assembly: it is linear
        device = member_blocks.device
        if rotations is not None and len(rotations) != batch.n_graphs:
            raise ValueError(f"{len(rotations)} crystals' rotations for a batch of {batch.n_graphs}")
        if primitive_sites is not None and len(primitive_sites) != batch.n_graphs:
            raise ValueError(f"{len(primitive_sites)} crystals' primitive sites for a batch of {batch.n_graphs}")
        if self.kind != "kmvn" or rotations is None:  # MVN: Γ only; k-MVN: all eight points
            rotations = [None] * batch.n_graphs
        if self.kind != "kmvn" or primitive_sites is None:
            primitive_sites = [None] * batch.n_graphs
        else:  # a cell that is not primitive: the primitive cell's points, reduced by the cell's rotations taken there
            rotations = [r if s is None else primitive_rotations(r, s.matrix) for r, s in zip(rotations, primitive_sites)]
        # one grid (points and weights as tensors) per point group: one q tensor for the band solver to deduplicate
        keys = [None if r is None else np.asarray(r, dtype=np.int64).tobytes() for r in rotations]
        grids: dict[bytes | None, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, r in zip(keys, rotations):
            if key not in grids:
                points, weights = uncertainty_qpoints(r) if self.kind == "kmvn" else (np.zeros((1, 3)), np.ones(1))
                grids[key] = (torch.as_tensor(points, dtype=torch.float64, device=device),
                              torch.as_tensor(weights, dtype=torch.float64, device=device))
        q = [grids[key][0] for key in keys]
        repeating = [c for c, s in enumerate(primitive_sites) if s is not None]  # cells that are not primitive
        freqs = member_frequencies([each[c] for c in range(batch.n_graphs) if primitive_sites[c] is None],
                                   [q[c] for c in range(batch.n_graphs) if primitive_sites[c] is None])
        for c in repeating:  # in ascending order, so each lands at its crystal's place: (members, q, modes)
            freqs.insert(c, primitive_frequencies(each[c], primitive_sites[c], q[c]))
        stats = []  # per crystal: spread, lowest, highest; read to the host once for the batch
        for f, key in zip(freqs, keys):
            f = f.detach()
            weights = grids[key][1].to(f.dtype)
            spread = (f.std(dim=0).mean(dim=1) * weights).sum() / weights.sum()
            stats.append(torch.stack([spread, f.min(), f.max()]))
        agreement = [MemberAgreement(spread_cm1=s, lowest_cm1=lo, highest_cm1=hi)
                     for s, lo, hi in torch.stack(stats).tolist()] if stats else []
        return fcs, agreement
