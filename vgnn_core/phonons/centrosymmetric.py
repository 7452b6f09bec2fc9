"""Real symmetric dynamical matrices of crystals with an inversion centre.

Time reversal gives D(−q) = D(q)*; an inversion centre maps atom i onto atom p(i) in the cell
translated by L_i (:class:`~vgnn_core.crystal.symmetry.Inversion`) and gives

    D_p(i)p(j)(q) = exp(2πi q·(L_j − L_i)) · D_ij(q)*.

In the gauge D̃_ij(q) = exp(iπ q·(L_i − L_j)) D_ij(q) (bond phases taken at T + (L_i − L_j)/2)
the phases drop out, D̃_p(i)p(j) = D̃_ij*, and in the basis

    (e_i + e_p(i))/√2,  e_f (an atom its own partner),  i(e_i − e_p(i))/√2   (i < p(i))

the matrix is real symmetric. Its blocks need only the rows of the atoms i ≤ p(i), about half
of D̃:

    [[Re(D̃₁₁ + D̃₁₂),  √2 Re D̃₁f,  Im(D̃₁₂ − D̃₁₁)],
     [ ·ᵀ,             Re D̃ff,     (√2 Im D̃₁f)ᵀ  ],
     [ ·ᵀ,             ·ᵀ,          Re(D̃₁₁ − D̃₁₂)]]

(1: the first atoms of the pairs, 2: their partners, f: atoms their own partner). Same
eigenvalues as D(q), from half the assembly and a real eigen-solve. It relies on the force
constants having the inversion symmetry, which :func:`inversion_pairs` checks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..crystal.bonds import bond_keys
from .dynamical_matrix import _phase_sum, _q_chunk
from .force_constants import ForceConstants
from .nac import NonAnalyticCorrection

if TYPE_CHECKING:
    from ..crystal.symmetry import Inversion
    from .dynamical_matrix import Correction

#: Largest |Φ_ij(T) − Φ_p(i)p(j)(L_j − L_i − T)| accepted, relative to max |Φ|: float32 round-off
#: of a network's output passes; force constants of a cell that lacks the inversion do not.
INVERSION_TOL = 1e-5


@dataclass(frozen=True)
class InversionPairs:
    """A centrosymmetric cell's atoms sorted for :func:`centrosymmetric_matrices`: ``first`` the
    atoms i < p(i), ``second`` their partners p(i) (same order), ``fixed`` the atoms p(i) = i;
    ``lattice_shift`` (m, 3) the L_i; ``force_constants`` made exactly inversion-symmetric
    (:func:`symmetrized_under_inversion`), which the real form is exact for."""

    first: torch.Tensor
    second: torch.Tensor
    fixed: torch.Tensor
    lattice_shift: torch.Tensor
    force_constants: ForceConstants

    @property
    def partner(self) -> np.ndarray:
        """p(i) of every atom (the :class:`~vgnn_core.crystal.symmetry.Inversion`'s map)."""
        p = np.arange(len(self.lattice_shift))
        p[self.first.numpy()], p[self.second.numpy()] = self.second.numpy(), self.first.numpy()
        return p

    @property
    def column_components(self) -> torch.Tensor:
        """Index 3a + α of the Cartesian displacement of atom a each column of the real form
        stands for ([first, fixed, first] atoms, α = x, y, z each): a mode's weight on a pair's
        two columns is the pair's |e|²."""
        atoms = torch.repeat_interleave(torch.cat([self.first, self.fixed, self.first]), 3)
        return 3 * atoms + torch.arange(3).repeat(len(atoms) // 3)


def symmetrized_under_inversion(fc: ForceConstants, inversion: Inversion,
                                tol: float = INVERSION_TOL) -> ForceConstants | None:
    """``fc`` averaged with its image under ``inversion``: Φ'_ij(T) = ½(Φ_ij(T) + Φ_p(i)p(j)(L_j − L_i − T))
    (a bond whose image is missing, which the tolerance allows only for blocks below it, gets
    the image with half the block). Keeps the acoustic sum rule and Φ_ji(−T) = Φ_ij(T)ᵀ exactly.
    ``None`` when that moves a block entry by more than ``tol`` times the largest (force
    constants of a cell without that inversion)."""
    partner = np.asarray(inversion.partner, dtype=np.int64)
    shift = np.asarray(inversion.lattice_shift, dtype=np.int64)
    m = fc.n_atoms
    if partner.shape != (m,) or shift.shape != (m, 3):
        raise ValueError(f"an inversion of {len(partner)} atoms for force constants of {m}")
    device = fc.blocks.device
    fc = fc.cpu()
    src, dst, cells = fc.src.numpy(), fc.dst.numpy(), fc.shift.numpy().astype(np.int64)
    all_src = np.concatenate([src, partner[src]])
    all_dst = np.concatenate([dst, partner[dst]])
    all_cells = np.concatenate([cells, shift[dst] - shift[src] - cells])
    # every bond and its image, merged by (i, j, T): the sum of a block and its image's
    first, inverse = _unique_bonds(all_src, all_dst, all_cells, m)
    inverse = torch.as_tensor(inverse)
    n = len(first)
    blocks = fc.blocks
    total = torch.zeros(n, 3, 3, dtype=blocks.dtype).index_add_(0, inverse, torch.cat([blocks, blocks]))
    own = torch.zeros(n, 3, 3, dtype=blocks.dtype).index_add_(0, inverse[: len(src)], blocks)
    sym_blocks = 0.5 * total
    scale = float(blocks.abs().max()) if len(src) else 0.0
    if scale > 0 and float((sym_blocks - own).abs().max()) > tol * scale:
        return None
    first = torch.as_tensor(first)
    return ForceConstants(fc.masses.to(device), torch.as_tensor(all_src)[first].to(device),
                          torch.as_tensor(all_dst)[first].to(device),
                          torch.as_tensor(all_cells)[first].to(device=device, dtype=fc.shift.dtype), sym_blocks.to(device))


def inversion_pairs(fc: ForceConstants, inversion: Inversion, nac=None,
                    tol: float = INVERSION_TOL) -> InversionPairs | None:
    """:class:`InversionPairs` of ``fc``'s cell under ``inversion`` (with the force constants
    symmetrized under it), or ``None`` where the real form would not be exact: force constants
    that break the inversion (:func:`symmetrized_under_inversion`), partners of different masses,
    or a dipole–dipole correction ``nac`` without the inversion (:func:`nac_has_inversion`)."""
    partner = np.asarray(inversion.partner, dtype=np.int64)
    masses = fc.masses.detach().cpu().double().numpy()
    if partner.shape != masses.shape:
        raise ValueError(f"an inversion of {len(partner)} atoms for force constants of {len(masses)}")
    if not np.allclose(masses[partner], masses, rtol=1e-12, atol=0):
        return None
    if not nac_has_inversion(nac, partner, tol):
        return None
    sym = symmetrized_under_inversion(fc, inversion, tol)
    if sym is None:
        return None
    atoms = np.arange(fc.n_atoms)
    return InversionPairs(first=torch.as_tensor(atoms[atoms < partner]), second=torch.as_tensor(partner[atoms < partner]),
                          fixed=torch.as_tensor(atoms[atoms == partner]),
                          lattice_shift=torch.as_tensor(np.asarray(inversion.lattice_shift, dtype=np.int64)),
                          force_constants=sym)


def prepared_pairs(fc: ForceConstants, inversion: Inversion | InversionPairs, nac=None) -> InversionPairs | None:
    """``inversion`` itself when the caller already made it the :class:`InversionPairs` of these
    force constants (once per crystal, for its path and its mesh), else :func:`inversion_pairs`."""
    return inversion if isinstance(inversion, InversionPairs) else inversion_pairs(fc, inversion, nac)


def _unique_bonds(src: np.ndarray, dst: np.ndarray, cells: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first occurrence of every distinct bond (i, j, T) and, for every bond, the index of its
    distinct bond: one integer key per bond where it fits in int64, rows compared otherwise."""
    bound = int(np.abs(cells).max()) if len(cells) else 0
    if m * m * (2 * bound + 1) ** 3 < 2**62:
        keys = bond_keys(src, dst, cells, m, bound)
    else:  # a key would overflow: compare the rows themselves
        keys = np.column_stack([src, dst, cells])
    _, first, inverse = np.unique(keys, axis=0 if keys.ndim == 2 else None, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def nac_has_inversion(nac, partner: np.ndarray, tol: float = INVERSION_TOL) -> bool:
    """Whether a dipole–dipole correction keeps the inversion that pairs atom i with ``partner[i]``:
    Gonze–Lee (and its jump at Γ) do when partners carry the same Born charges (to ``tol`` of the
    largest entry, or of 1 e); Wang's correction, built on the bonds, is not checked and so not
    taken."""
    if nac is None:
        return True
    if not isinstance(nac, NonAnalyticCorrection):
        return False
    born = np.asarray(nac.born)
    return bool(np.abs(born - born[partner]).max() <= tol * max(1.0, float(np.abs(born).max())))


def centrosymmetric_matrices(
    fc: ForceConstants,
    pairs: InversionPairs,
    qpoints: torch.Tensor,
    nac: Correction | None = None,
    q_directions: np.ndarray | None = None,
) -> torch.Tensor:
    """The real symmetric form of D(q) (module docstring): (n_q, 3m, 3m) in eV/Å²/amu, the
    eigenvalues of :func:`~vgnn_core.phonons.dynamical_matrix.dynamical_matrices` with the same
    arguments and ``pairs.force_constants`` (``fc`` made exactly inversion-symmetric; ``fc``
    itself only names the cell for ``nac``); columns as ``pairs.column_components``."""
    nac_fc, fc = fc, pairs.force_constants
    m = fc.n_atoms
    w_all = fc.mass_weighted_blocks()
    dtype = w_all.dtype
    rows = torch.cat([pairs.first, pairs.fixed]).to(fc.src.device)
    row_of = torch.full((m,), -1, dtype=torch.long, device=fc.src.device)
    row_of[rows] = torch.arange(len(rows), device=fc.src.device)
    keep = row_of[fc.src] >= 0
    w = w_all[keep].reshape(-1, 9)
    src, dst = row_of[fc.src[keep]], fc.dst[keep]
    pair = src * m + dst  # (row atom, column atom) of every kept bond
    lshift = pairs.lattice_shift.to(device=w.device, dtype=dtype)
    # the bond phases of D̃: at T + (L_i − L_j)/2
    shift = fc.shift[keep].to(dtype) + 0.5 * (lshift[fc.src[keep]] - lshift[dst])
    q_all = qpoints.to(dtype=dtype, device=w.device).reshape(-1, 3)
    if q_all.shape[0] == 0:
        return torch.zeros(0, 3 * m, 3 * m, dtype=dtype, device=w.device)
    r = len(rows)
    blocks = []
    step = _q_chunk(fc, q_all.shape[0])
    for start in range(0, q_all.shape[0], step):
        angle = 2 * torch.pi * (q_all[start : start + step] @ shift.T)
        re, im = (_phase_sum(wave, w, pair, r * m).reshape(-1, r, m, 3, 3) for wave in (torch.cos(angle), torch.sin(angle)))
        blocks.append((re, im))
    re = torch.cat([b[0] for b in blocks])  # (n_q, r, m, 3, 3)
    im = torch.cat([b[1] for b in blocks])
    if nac is not None:
        extra = nac.dynamical_term(nac_fc, q_all.detach().cpu().numpy(), q_directions)
        extra = torch.as_tensor(extra).reshape(-1, m, 3, m, 3).permute(0, 1, 3, 2, 4)
        phase = torch.exp(1j * torch.pi * (q_all.cpu().double() @ pairs.lattice_shift.double().T))  # (n_q, m)
        extra = extra * phase[:, :, None, None, None] * phase.conj()[:, None, :, None, None]
        extra = extra[:, rows.cpu()].to(device=re.device)
        re, im = re + extra.real.to(dtype), im + extra.imag.to(dtype)
    n1 = len(pairs.first)
    first, second, fixed = (t.to(re.device) for t in (pairs.first, pairs.second, pairs.fixed))
    re11, re12, re1f = re[:, :n1][:, :, first], re[:, :n1][:, :, second], re[:, :n1][:, :, fixed]
    im11, im12, im1f = im[:, :n1][:, :, first], im[:, :n1][:, :, second], im[:, :n1][:, :, fixed]
    reff = re[:, n1:][:, :, fixed]
    root2 = 2.0**0.5
    top = torch.cat([re11 + re12, root2 * re1f, im12 - im11], dim=2)  # block rows of atoms
    mid_f = torch.cat([root2 * re1f.transpose(1, 2).transpose(-1, -2), reff,
                       root2 * im1f.transpose(1, 2).transpose(-1, -2)], dim=2)
    bottom = torch.cat([(im12 - im11).transpose(1, 2).transpose(-1, -2), root2 * im1f, re11 - re12], dim=2)
    full = torch.cat([top, mid_f, bottom], dim=1)  # (n_q, m, m, 3, 3)
    n = full.shape[0]
    d = full.permute(0, 1, 3, 2, 4).reshape(n, 3 * m, 3 * m)
    return 0.5 * (d + d.transpose(-1, -2))

