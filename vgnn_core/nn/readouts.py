"""Virtual-node read-outs: where VGNN's answers are read from the atoms' features.

* :class:`BondReadout` — the k-MVN / MVN virtual node of every bond ``(i, j, T)``: a 3×3
  force-constant block Φ_ij(T). How the blocks become force constants is the model kind's
  *assembly* (:data:`ASSEMBLIES`): per bond with its translation T (k-MVN, D(q) at any q) or
  summed per ordered atom pair (MVN, D(Γ) only).
* :class:`VVNReadout` — ``3m`` virtual nodes on the cell's body diagonal, one frequency each.
"""

from __future__ import annotations

from typing import Protocol

import torch
from e3nn import nn as enn
from e3nn import o3
from e3nn.math import soft_one_hot_linspace

from ..crystal.graph import GraphBatch
from ..phonons.force_constants import (
    ForceConstants,
    divergence_free_antisymmetric,
    with_onsite_each,
)
from .cartesian import ANTISYMMETRIC_RANK2, SYMMETRIC_RANK2, cartesian_basis
from .config import VGNNConfig
from .convolution import gate_for, tensor_product_paths
from .fused import TensorProductLinear, gated, irrep_pieces
from .orbits import rotate_blocks
from .radial import BesselBasis, polynomial_envelope

#: 0e + 2e: the irreps of a symmetric 3×3 tensor.
SYMMETRIC_TENSOR = o3.Irreps("1x0e + 1x2e")
#: 1e: the irreps of an antisymmetric 3×3 tensor (an axial vector).
ANTISYMMETRIC_TENSOR = o3.Irreps("1x1e")


class BondReadout(torch.nn.Module):
    """The k-MVN / MVN virtual node of a bond: messages from both of its atoms → Φ_ij(T).

    The node's input is symmetric under swapping the bond's ends (i, j, r) → (j, i, −r):

        v = TP(h_i + h_j, Y_even(r̂)) + TP(h_i − h_j, Y_odd(r̂))

    (``Y_odd`` flips sign with r, ``Y_even`` does not), so a bond and its reverse get the same
    symmetric block — Φ_ji(−T) = Φ_ij(T)ᵀ holds exactly — and the read-out runs on one bond
    of each pair only.
    """

    def __init__(self, cfg: VGNNConfig, irreps_in: o3.Irreps, irreps_sh: o3.Irreps):
        super().__init__()
        self.gate = gate_for(cfg.readout_irreps)
        sh = o3.Irreps(irreps_sh)
        even_idx = [k for k, (_, ir) in enumerate(sh) if ir.l % 2 == 0]
        odd_idx = [k for k, (_, ir) in enumerate(sh) if ir.l % 2 == 1]
        self.sh_even = [sh.slices()[k] for k in even_idx]
        self.sh_odd = [sh.slices()[k] for k in odd_idx]
        irreps_even = o3.Irreps([sh[k] for k in even_idx])
        irreps_odd = o3.Irreps([sh[k] for k in odd_idx])
        mid_e, ins_e = tensor_product_paths(irreps_in, irreps_even, self.gate.irreps_in)
        mid_o, ins_o = tensor_product_paths(irreps_in, irreps_odd, self.gate.irreps_in)
        kw = dict(shared_weights=False, internal_weights=False)
        self.tp_even = o3.TensorProduct(irreps_in, irreps_even, mid_e, ins_e, **kw)
        self.tp_odd = o3.TensorProduct(irreps_in, irreps_odd, mid_o, ins_o, **kw)
        self.n_even = self.tp_even.weight_numel
        self.radial = enn.FullyConnectedNet(
            [cfg.n_radial, cfg.radial_hidden, cfg.radial_hidden, self.n_even + self.tp_odd.weight_numel],
            torch.nn.functional.silu,
        )
        self.linear_even = o3.Linear(mid_e, self.gate.irreps_in)
        self.linear_odd = o3.Linear(mid_o, self.gate.irreps_in)
        self.even = TensorProductLinear(self.tp_even, self.linear_even)
        self.odd = TensorProductLinear(self.tp_odd, self.linear_odd)
        self.linear_out = o3.Linear(self.gate.irreps_out, SYMMETRIC_TENSOR)
        self.register_buffer("to_cartesian", cartesian_basis(SYMMETRIC_RANK2).to_cartesian.clone())
        self.full_blocks = cfg.full_blocks
        if self.full_blocks:
            # The antisymmetric part must change sign when the bond is reversed, so it is read
            # from the odd combinations TP(h_i − h_j, Y_even) + TP(h_i + h_j, Y_odd), linearly
            # (their radial weights depend on |r| only): reversal flips it exactly.
            amid_e, ains_e = tensor_product_paths(irreps_in, irreps_even, ANTISYMMETRIC_TENSOR)
            amid_o, ains_o = tensor_product_paths(irreps_in, irreps_odd, ANTISYMMETRIC_TENSOR)
            self.tp_anti_even = o3.TensorProduct(irreps_in, irreps_even, amid_e, ains_e, **kw)
            self.tp_anti_odd = o3.TensorProduct(irreps_in, irreps_odd, amid_o, ains_o, **kw)
            self.n_anti_even = self.tp_anti_even.weight_numel
            self.radial_anti = enn.FullyConnectedNet(
                [cfg.n_radial, cfg.radial_hidden, self.n_anti_even + self.tp_anti_odd.weight_numel],
                torch.nn.functional.silu,
            )
            self.linear_anti_even = o3.Linear(amid_e, ANTISYMMETRIC_TENSOR)
            self.linear_anti_odd = o3.Linear(amid_o, ANTISYMMETRIC_TENSOR)
            self.anti_even = TensorProductLinear(self.tp_anti_even, self.linear_anti_even)
            self.anti_odd = TensorProductLinear(self.tp_anti_odd, self.linear_anti_odd)
            self.register_buffer("anti_to_cartesian", cartesian_basis(ANTISYMMETRIC_RANK2).to_cartesian.clone())
        self.fc_scale = cfg.fc_scale
        self.r_bond = cfg.r_bond or cfg.r_max
        self.radial_basis = BesselBasis(self.r_bond, cfg.n_radial)

    def forward(
        self, h: torch.Tensor, batch: GraphBatch, sh: torch.Tensor, length: torch.Tensor
    ) -> torch.Tensor:
        # one bond of each (bond, reverse) pair, within the bond cutoff
        index = torch.arange(len(batch.edge_reverse), device=h.device)
        wanted = (batch.edge_reverse > index) & (length < self.r_bond)
        if batch.orbits is not None:  # one bond of each orbit; the rest are its rotations
            wanted &= batch.orbits.edge_representative == index
        half = torch.nonzero(wanted)[:, 0]
        y = sh[half]
        y_even = torch.cat([y[:, s] for s in self.sh_even], dim=1)
        y_odd = torch.cat([y[:, s] for s in self.sh_odd], dim=1)
        symmetric, axial = self.bond_messages(h, batch.edge_src[half], batch.edge_dst[half], y_even, y_odd,
                                              self.radial_basis(length[half]))
        envelope = (self.fc_scale * polynomial_envelope(length[half], self.r_bond))[:, None]
        half_blocks = torch.einsum("ek,kab->eab", symmetric * envelope, self.to_cartesian.to(symmetric.dtype))
        blocks = torch.zeros(len(batch.edge_reverse), 3, 3, dtype=symmetric.dtype, device=symmetric.device)
        blocks[half] = half_blocks
        blocks[batch.edge_reverse[half]] = half_blocks
        if axial is not None:
            anti = torch.einsum("ek,kab->eab", axial * envelope, self.anti_to_cartesian.to(symmetric.dtype))
            blocks = blocks.index_add(0, half, anti).index_add(0, batch.edge_reverse[half], -anti)
        return blocks if batch.orbits is None else rotate_blocks(blocks, batch.orbits, batch.edge_reverse)

    def bond_messages(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, y_even: torch.Tensor,
                      y_odd: torch.Tensor, radial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The virtual node's symmetric-tensor irreps (0e + 2e) and, with ``full_blocks``, its axial
        vector (1e) for bonds ``src → dst`` (atom indices), before the cutoff envelope; ``y_even`` /
        ``y_odd`` the bonds' even / odd spherical harmonics, ``radial`` their radial basis."""
        pieces = irrep_pieces(h, self.tp_even.irreps_in1)
        h_i, h_j = [p[src] for p in pieces], [p[dst] for p in pieces]
        h_plus, h_minus = [a + b for a, b in zip(h_i, h_j)], [a - b for a, b in zip(h_i, h_j)]
        w = self.radial(radial)
        v = (self.even(h_plus, y_even, w[:, : self.n_even], self.linear_even.weight)
             + self.odd(h_minus, y_odd, w[:, self.n_even :], self.linear_odd.weight))
        symmetric = self.linear_out(gated(self.gate, v))
        if not self.full_blocks:
            return symmetric, None
        wa = self.radial_anti(radial)
        axial = (self.anti_even(h_minus, y_even, wa[:, : self.n_anti_even], self.linear_anti_even.weight)
                 + self.anti_odd(h_plus, y_odd, wa[:, self.n_anti_even :], self.linear_anti_odd.weight))
        return symmetric, axial


class VVNReadout(torch.nn.Module):
    """3m virtual nodes on the cell diagonal, receiving from all atoms, then from each other."""

    def __init__(self, cfg: VGNNConfig, irreps_in: o3.Irreps, irreps_sh: o3.Irreps):
        super().__init__()
        self.irreps_sh = irreps_sh
        self.n_basis = 16
        self.range = cfg.vvn_range
        self.init_state = torch.nn.Parameter(torch.randn(cfg.embed_dim))
        irreps_vn = o3.Irreps(f"{cfg.embed_dim}x0e")
        self.gate1 = gate_for(cfg.readout_irreps)
        mid1, ins1 = tensor_product_paths(irreps_in, irreps_sh, self.gate1.irreps_in)
        self.tp_atoms = o3.TensorProduct(irreps_in, irreps_sh, mid1, ins1, shared_weights=False, internal_weights=False)
        self.radial1 = enn.FullyConnectedNet([self.n_basis, cfg.radial_hidden, self.tp_atoms.weight_numel], torch.nn.functional.silu)
        self.mix1 = o3.Linear(mid1, self.gate1.irreps_in)
        self.self1 = o3.Linear(irreps_vn, self.gate1.irreps_in)
        irreps_mid = self.gate1.irreps_out
        self.gate2 = gate_for(f"{cfg.embed_dim}x0e")
        mid2, ins2 = tensor_product_paths(irreps_mid, irreps_sh, self.gate2.irreps_in)
        self.tp_vn = o3.TensorProduct(irreps_mid, irreps_sh, mid2, ins2, shared_weights=False, internal_weights=False)
        self.radial2 = enn.FullyConnectedNet([self.n_basis, cfg.radial_hidden, self.tp_vn.weight_numel], torch.nn.functional.silu)
        self.mix2 = o3.Linear(mid2, self.gate2.irreps_in)
        self.self2 = o3.Linear(irreps_mid, self.gate2.irreps_in)
        self.out = o3.Linear(self.gate2.irreps_out, "1x0e")
        self.freq_scale = cfg.vvn_freq_scale

    def _basis(self, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = torch.linalg.norm(vec, dim=-1)
        basis = soft_one_hot_linspace(length, 0.0, self.range, self.n_basis, basis="gaussian", cutoff=False)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        return basis, sh

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> list[torch.Tensor]:
        out = []
        for g in range(batch.n_graphs):
            start, m = int(batch.atom_offset[g]), int(batch.n_atoms[g])
            pos, lattice = batch.positions[start : start + m], batch.lattices[g]
            vn_pos = vvn_positions(lattice, m)
            atom_src, atom_vn, atom_vec, vn_vec = vvn_edges(pos, lattice, vn_pos)
            n_vn = vn_pos.shape[0]
            basis, sh = self._basis(atom_vec)
            msg = self.tp_atoms(h[start + atom_src], sh, self.radial1(basis))
            agg = torch.zeros(n_vn, msg.shape[1], dtype=h.dtype, device=h.device).index_add_(0, atom_vn, msg) / m
            state = self.init_state.to(h.dtype).expand(n_vn, -1)
            x = self.gate1(self.mix1(agg) + self.self1(state))
            # virtual → virtual (not to real atoms), all ordered pairs k ≠ l
            k_idx, l_idx = torch.meshgrid(torch.arange(n_vn), torch.arange(n_vn), indexing="ij")
            keep = (k_idx != l_idx).reshape(-1)
            k_idx, l_idx = k_idx.reshape(-1)[keep].to(h.device), l_idx.reshape(-1)[keep].to(h.device)
            basis, sh = self._basis(vn_vec[k_idx, l_idx])
            msg = self.tp_vn(x[l_idx], sh, self.radial2(basis))
            agg = torch.zeros(n_vn, msg.shape[1], dtype=h.dtype, device=h.device).index_add_(0, k_idx, msg)
            agg = agg / max(1, n_vn - 1)
            x = self.gate2(self.mix2(agg) + self.self2(x))
            freqs = self.out(x)[:, 0] * self.freq_scale
            out.append(torch.sort(freqs).values)
        return out


def vvn_positions(lattice: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Cartesian positions of the ``3m`` VVN nodes, evenly spaced on the body diagonal.

    Node ``k = 1 … 3m`` sits at ``k / (3m + 1) · (a + b + c)``.
    """
    n = 3 * n_atoms
    frac = torch.arange(1, n + 1, dtype=lattice.dtype, device=lattice.device) / (n + 1)
    return frac[:, None] * lattice.sum(dim=0)[None, :]


def vvn_edges(
    positions: torch.Tensor, lattice: torch.Tensor, vn_positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges into the VVN nodes of one crystal.

    Returns ``(atom_src, atom_vn, atom_vec, vn_vec)``: for every (atom, virtual node) pair the
    atom index, the virtual node index and the vector from the node to the nearest periodic
    image of the atom; and ``vn_vec[k, l]`` the vector from node ``k`` to node ``l``.
    """
    n_vn = vn_positions.shape[0]
    m = positions.shape[0]
    inv = torch.linalg.inv(lattice)
    diff = positions[None, :, :] - vn_positions[:, None, :]  # (n_vn, m, 3)
    frac = diff @ inv
    frac = frac - torch.round(frac)
    atom_vec = (frac @ lattice).reshape(-1, 3)
    atom_vn = torch.arange(n_vn, device=positions.device).repeat_interleave(m)
    atom_src = torch.arange(m, device=positions.device).repeat(n_vn)
    vn_vec = vn_positions[None, :, :] - vn_positions[:, None, :]
    return atom_src, atom_vn, atom_vec, vn_vec


# --- assemblies: bond blocks -> force constants, one per force-constant model kind --------------
# Each takes the blocks of K networks on the same bonds, (K, E, 3, 3) (K = 1 for one network), and
# gives every crystal's K force constants, which share their bonds (an ensemble's members).

def bond_force_constants(batch: GraphBatch, blocks: torch.Tensor,
                         weights: torch.Tensor | None) -> list[list[ForceConstants]]:
    """k-MVN: every bond keeps its translation T; on-site blocks from the acoustic sum rule.

    ``weights`` (each bond's cutoff envelope) are given for whole blocks: the antisymmetric
    parts are then made divergence-free (:func:`divergence_free_antisymmetric`)."""
    return _per_crystal(batch, blocks, batch.edge_src, batch.edge_dst, batch.edge_shift, batch.n_edges, weights)


def pair_force_constants(batch: GraphBatch, blocks: torch.Tensor,
                         weights: torch.Tensor | None) -> list[list[ForceConstants]]:
    """MVN: one virtual node per ordered atom pair, the linear sum of its bonds (T = 0)."""
    pair_blocks = torch.zeros(blocks.shape[0], batch.pairs.shape[0], 3, 3, dtype=blocks.dtype, device=blocks.device)
    pair_blocks.index_add_(1, batch.edge_pair, blocks)
    if weights is not None:
        weights = torch.zeros(batch.pairs.shape[0], dtype=blocks.dtype, device=blocks.device).index_add_(
            0, batch.edge_pair, weights.to(blocks.dtype))
    shift = batch.pairs.new_zeros(batch.pairs.shape[0], 3)
    return _per_crystal(batch, pair_blocks, batch.pairs[:, 0], batch.pairs[:, 1], shift, batch.n_pairs, weights)


def _per_crystal(batch, blocks, src, dst, shift, counts, weights) -> list[list[ForceConstants]]:
    masses = batch.masses.to(torch.float64)
    out = []
    start = 0
    for g in range(batch.n_graphs):
        a0, m, n = int(batch.atom_offset[g]), int(batch.n_atoms[g]), int(counts[g])
        sl = slice(start, start + n)
        start += n
        offsite = blocks[:, sl]
        if weights is not None:
            offsite = divergence_free_antisymmetric(offsite, src[sl] - a0, dst[sl] - a0, m, weights[sl])
        out.append(with_onsite_each(masses[a0 : a0 + m], src[sl] - a0, dst[sl] - a0, shift[sl], offsite))
    return out


class Assembly(Protocol):
    """A force-constant kind's read-out of its bond virtual nodes: bond blocks → force constants."""

    def __call__(self, batch: GraphBatch, blocks: torch.Tensor,
                 weights: torch.Tensor | None) -> list[list[ForceConstants]]: ...


#: How each force-constant model kind turns bond blocks into force constants.
ASSEMBLIES: dict[str, Assembly] = {
    "kmvn": bond_force_constants,
    "mvn": pair_force_constants,
}

