"""Real-space force constants Φ_ij(T) of one crystal, and the rules that make them physical.

A :class:`ForceConstants` is a list of bonds ``(i, j, T)`` with 3×3 blocks ``Φ_ij(T)`` in
eV/Å² — the quantity k-MVN predicts and phonopy computes. Two constructions make any set of
blocks physical:

* :func:`symmetrize_bond_blocks` — ``Φ_ji(−T) = Φ_ij(T)ᵀ``, hence a Hermitian ``D(q)``;
* :func:`acoustic_sum_rule_onsite` — the on-site block ``Φ_ii(0) = −Σ' Φ_ij(T)`` so that
  ``Σ_{j,T} Φ_ij(T) = 0`` exactly (translations cost no energy, ω_acoustic(Γ) = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..crystal.bonds import reverse_bond_index


@dataclass
class ForceConstants:
    """Force-constant blocks of one crystal, as bonds ``(src=i, dst=j, shift=T)``."""

    masses: torch.Tensor  # (m,) amu
    src: torch.Tensor  # (E,) long
    dst: torch.Tensor  # (E,) long
    shift: torch.Tensor  # (E, 3) long, lattice translation of j's image
    blocks: torch.Tensor  # (E, 3, 3) eV/Å²

    @property
    def n_atoms(self) -> int:
        return int(self.masses.shape[0])

    @property
    def n_bonds(self) -> int:
        return int(self.src.shape[0])

    def to(self, dtype: torch.dtype) -> ForceConstants:
        """The same force constants with floating-point tensors cast to ``dtype``."""
        return ForceConstants(self.masses.to(dtype), self.src, self.dst, self.shift, self.blocks.to(dtype))

    def cpu(self) -> ForceConstants:
        """The same force constants in host memory (for numpy-facing analyses)."""
        return ForceConstants(self.masses.cpu(), self.src.cpu(), self.dst.cpu(), self.shift.cpu(), self.blocks.cpu())

    def mass_weighted_blocks(self) -> torch.Tensor:
        """Φ_ij(T) / √(M_i M_j) in eV/Å²/amu."""
        inv_sqrt = torch.rsqrt(self.masses.to(self.blocks.dtype))
        return self.blocks * (inv_sqrt[self.src] * inv_sqrt[self.dst])[:, None, None]

    def coalesced(self) -> ForceConstants:
        """Merge repeated bonds (same i, j, T) by summing their blocks."""
        keys = torch.cat([self.src[:, None], self.dst[:, None], self.shift], dim=1)
        unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
        blocks = torch.zeros(unique.shape[0], 3, 3, dtype=self.blocks.dtype, device=self.blocks.device)
        blocks.index_add_(0, inverse, self.blocks)
        return ForceConstants(self.masses, unique[:, 0], unique[:, 1], unique[:, 2:], blocks)

    def reverse_index(self) -> torch.Tensor:
        """Index of the reverse bond ``(j, i, −T)`` of every bond."""
        rev = reverse_bond_index(
            self.src.cpu().numpy(), self.dst.cpu().numpy(), self.shift.cpu().numpy(), self.n_atoms
        )
        return torch.as_tensor(rev, device=self.src.device)

    def symmetrized(self) -> ForceConstants:
        """The same bonds with ``Φ_ji(−T) = Φ_ij(T)ᵀ`` imposed (averaging each pair)."""
        fc = self.coalesced()
        blocks = symmetrize_bond_blocks(fc.blocks, fc.reverse_index())
        return ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, blocks)

    def acoustic_sum_residual(self) -> torch.Tensor:
        """``max_i |Σ_{j,T} Φ_ij(T)|`` (eV/Å²): zero when the sum rule holds."""
        total = torch.zeros(self.n_atoms, 3, 3, dtype=self.blocks.dtype, device=self.blocks.device)
        total.index_add_(0, self.src, self.blocks)
        return total.abs().amax() if self.n_atoms else torch.zeros(())


def symmetrize_bond_blocks(blocks: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
    """``½ (Φ_e + Φ_rev(e)ᵀ)``: the blocks of a bond and its reverse become transposes."""
    return 0.5 * (blocks + blocks[reverse].transpose(-1, -2))


def acoustic_sum_rule_onsite(blocks: torch.Tensor, src: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """On-site blocks ``Φ_ii(0) = −Σ_{(j,T)≠(i,0)} Φ_ij(T)`` for every atom, (n_atoms, 3, 3).

    Symmetric whenever the off-site blocks are symmetric.
    """
    onsite = torch.zeros(n_atoms, 3, 3, dtype=blocks.dtype, device=blocks.device)
    onsite.index_add_(0, src, blocks)
    return -onsite


def divergence_free_antisymmetric(
    blocks: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, n_atoms: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Off-site blocks whose antisymmetric parts sum to zero around every atom.

    With ``Φ_ji(−T) = Φ_ij(T)ᵀ`` the antisymmetric part ``A_e`` of a bond is a flow on the
    bond graph (``A_rev(e) = −A_e``). The on-site block ``−Σ Φ_ij(T)`` must be symmetric (it is
    the second derivative of the energy by one atom's displacement), so the flow must leave
    no atom: ``Σ_{e from i} A_e = 0``. The flow removed is ``w_e (p_i − p_j)``, with
    ``L_w p = div A`` on the graph Laplacian weighted by ``w`` (least squares: ``L_w`` is singular
    on each connected component, where ``div A`` sums to zero). With ``w`` the bonds' smooth
    cutoff envelope, a bond entering at the cutoff (block and weight both zero) changes nothing:
    the force constants stay continuous. Symmetric parts are untouched; the map is linear,
    equivariant and the same for a cell and its supercells.

    ``blocks`` is (E, 3, 3), or (K, E, 3, 3) for K sets of blocks on the same bonds (an
    ensemble's members), which share one Laplacian and its pseudo-inverse.
    """
    n_bonds, k = blocks.shape[-3], math.prod(blocks.shape[:-3])  # k counted, not inferred: E may be 0
    anti = 0.5 * (blocks - blocks.transpose(-1, -2))
    flows = anti.reshape(k, n_bonds, 9).transpose(0, 1).reshape(n_bonds, 9 * k)  # (E, K·9)
    div = torch.zeros(n_atoms, flows.shape[1], dtype=blocks.dtype, device=blocks.device).index_add_(0, src, flows)
    laplacian = torch.zeros(n_atoms, n_atoms, dtype=blocks.dtype, device=blocks.device)
    w = torch.ones_like(src, dtype=blocks.dtype) if weights is None else weights.to(blocks.dtype)
    laplacian.index_put_((src, src), w, accumulate=True)
    laplacian.index_put_((src, dst), -w, accumulate=True)
    potential = torch.linalg.pinv(laplacian, hermitian=True) @ div  # (n_atoms, K·9)
    potential = potential.reshape(n_atoms, k, 9).transpose(0, 1).reshape(*blocks.shape[:-3], n_atoms, 3, 3)
    return blocks - w[:, None, None] * (potential[..., src, :, :] - potential[..., dst, :, :])


def with_onsite(
    masses: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    shift: torch.Tensor,
    offsite: torch.Tensor,
) -> ForceConstants:
    """Off-site bonds plus the on-site blocks that satisfy the acoustic sum rule exactly."""
    return with_onsite_each(masses, src, dst, shift, offsite[None])[0]


def with_onsite_each(
    masses: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    shift: torch.Tensor,
    offsite: torch.Tensor,
) -> list[ForceConstants]:
    """:func:`with_onsite` of K sets of off-site blocks on the same bonds, ``offsite`` (K, E, 3, 3)
    (an ensemble's members): K force constants that share one ``src``, ``dst`` and ``shift``."""
    m = masses.shape[0]
    atoms = torch.arange(m, device=src.device)
    all_src, all_dst = torch.cat([src, atoms]), torch.cat([dst, atoms])
    all_shift = torch.cat([shift, torch.zeros(m, 3, dtype=shift.dtype, device=shift.device)])
    return [ForceConstants(masses, all_src, all_dst, all_shift, torch.cat([b, acoustic_sum_rule_onsite(b, src, m)]))
            for b in offsite]


def same_bonds(a: ForceConstants, b: ForceConstants) -> bool:
    """Whether ``a`` and ``b`` list the same bonds (i, j, T) in the same order, of the same masses."""
    def same(x: torch.Tensor, y: torch.Tensor) -> bool:
        return x is y or (x.shape == y.shape and bool(torch.equal(x, y)))

    return same(a.src, b.src) and same(a.dst, b.dst) and same(a.shift, b.shift) and same(a.masses, b.masses)


def mean_force_constants(members: Sequence[ForceConstants]) -> ForceConstants:
    """The force constants whose blocks are the mean of ``members``' (the same bonds: e.g.
    :func:`with_onsite_each`). Every rule above is linear, so the mean keeps them."""
    first = members[0]
    if not all(same_bonds(first, fc) for fc in members[1:]):
        raise ValueError("force constants on different bonds have no bond-by-bond mean")
    return ForceConstants(first.masses, first.src, first.dst, first.shift,
                          torch.stack([fc.blocks for fc in members]).mean(0))


def phonopy_bonds(phonon) -> dict[str, np.ndarray]:
    """A phonopy object's supercell force constants as primitive-cell bonds ``(i, j, T)``.

    Each (primitive atom, supercell atom) constant appears once per shortest periodic image,
    with that image count as ``multiplicity`` (phonopy shares the constant equally among them).
    Returns arrays ``src``, ``dst``, ``shift`` (E, 3), ``blocks`` (E, 3, 3) in eV/Å², not yet
    divided by the multiplicity, and ``multiplicity`` (E,).
    """
    fc = phonon.force_constants
    if fc is None or np.asarray(fc).ndim != 4:
        raise ValueError("phonopy object has no force constants; call produce_force_constants()")
    fc = np.asarray(fc)
    primitive = phonon.primitive
    svecs, multi = primitive.get_smallest_vectors()
    p2s, s2p, p2p = np.asarray(primitive.p2s_map), np.asarray(primitive.s2p_map), primitive.p2p_map
    compact = fc.shape[0] != fc.shape[1]
    pos = np.asarray(primitive.scaled_positions)
    src, dst, shifts, blocks, mult = [], [], [], [], []
    for i, s_i in enumerate(p2s):
        row = fc[i] if compact else fc[s_i]
        for k in range(fc.shape[1]):
            j = p2p[s2p[k]]
            count, address = multi[k, i]
            t = svecs[address : address + count] - (pos[j] - pos[i])
            t_int = np.rint(t)
            if np.abs(t - t_int).max() > 1e-5:
                raise ValueError("phonopy smallest vectors are not lattice translations")
            for tt in t_int.astype(np.int64):
                src.append(i)
                dst.append(j)
                shifts.append(tt)
                blocks.append(row[k])
                mult.append(count)
    return {
        "src": np.array(src, dtype=np.int64),
        "dst": np.array(dst, dtype=np.int64),
        "shift": np.array(shifts, dtype=np.int64).reshape(-1, 3),
        "blocks": np.array(blocks, dtype=float).reshape(-1, 3, 3),
        "multiplicity": np.array(mult, dtype=np.int64),
    }


def from_phonopy(phonon, dtype: torch.dtype = torch.float64) -> ForceConstants:
    """Exact force constants of a ``phonopy.Phonopy`` object with force constants produced.

    The supercell force constants are mapped onto bonds of the primitive cell following
    phonopy's own convention: each (primitive atom, supercell atom) constant is shared
    equally among the shortest periodic images. Frequencies from the result equal phonopy's
    (without non-analytic correction).
    """
    bonds = phonopy_bonds(phonon)
    out = ForceConstants(
        masses=torch.as_tensor(np.asarray(phonon.primitive.masses), dtype=dtype),
        src=torch.as_tensor(bonds["src"], dtype=torch.long),
        dst=torch.as_tensor(bonds["dst"], dtype=torch.long),
        shift=torch.as_tensor(bonds["shift"], dtype=torch.long),
        blocks=torch.as_tensor(bonds["blocks"] / bonds["multiplicity"][:, None, None], dtype=dtype),
    )
    # phonopy hermitianises D(q); the equivalent real-space operation is symmetrisation.
    return out.symmetrized()


def central_spring_force_constants(
    structure,
    spring_constant: float | Callable[[np.ndarray], np.ndarray],
    r_max: float,
    dtype: torch.dtype = torch.float64,
) -> ForceConstants:
    """Force constants of central (longitudinal) springs between all atoms within ``r_max``.

    ``Φ_ij(T) = −k(r) r̂ r̂ᵀ`` for every bond and the on-site block from the sum rule: an exactly
    solvable model with analytic dispersions for simple lattices. ``spring_constant`` is in eV/Å²,
    a number or a function of the bond length.
    """
    from ..crystal.graph import build_graph

    g = build_graph(structure, r_max=r_max)
    length = np.linalg.norm(g.edge_vec, axis=1)
    k = spring_constant(length) if callable(spring_constant) else np.full_like(length, spring_constant)
    unit = g.edge_vec / length[:, None]
    offsite = -k[:, None, None] * unit[:, :, None] * unit[:, None, :]
    return with_onsite(
        masses=torch.as_tensor(g.masses, dtype=dtype),
        src=torch.as_tensor(g.edge_src),
        dst=torch.as_tensor(g.edge_dst),
        shift=torch.as_tensor(g.edge_shift),
        offsite=torch.as_tensor(offsite, dtype=dtype),
    )
