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
eigenvalues as D(q), from a real eigen-solve. Every entry is a sum over bonds of a block times
the cosine or the sine of 2π q·s, s = T + (L_i − L_j)/2, and a crystal's bonds share few
distinct s (tens; up to ~80 on Togo cells of up to 100 atoms): :class:`RealFormTable` sums the
blocks per s once, into the entries they feed, and the matrix at any number of q-points is then
one matrix product. It relies on the force constants having the inversion symmetry, which
:func:`inversion_pairs` checks first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..crystal.bonds import bond_keys
from . import dynamical_matrix
from .dynamical_matrix import _phase_sum, _q_chunk, block_entries, correction_at, distinct_shifts
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
    _kept: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def real_form_table(self) -> RealFormTable | None:
        """:func:`real_form_table` of these force constants, built on first use and kept (a
        crystal's path, mesh and modes share it) — except where gradients are recorded through
        the blocks, which get a table of their own each time; ``None`` for a cell too large."""
        if torch.is_grad_enabled() and self.force_constants.blocks.requires_grad:
            return real_form_table(self)
        if "table" not in self._kept:  # two threads may both build it: the same table
            self._kept["table"] = real_form_table(self)
        return self._kept["table"]

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
    itself only names the cell for ``nac``); columns as ``pairs.column_components``. Built from
    ``pairs.real_form_table()`` (one matrix product for all q-points), or, for a cell too large
    for that table, bond by bond."""
    nac_fc, fc = fc, pairs.force_constants
    m = fc.n_atoms
    dtype = fc.blocks.dtype
    q_all = qpoints.to(dtype=dtype, device=fc.blocks.device).reshape(-1, 3)
    table = pairs.real_form_table()
    d = table(q_all) if table is not None else _real_form(*_tilde_blocks(pairs, q_all), pairs)
    if isinstance(nac, NonAnalyticCorrection):  # the form below reads one atom of each pair: their charges made equal
        nac = nac.inversion_symmetric(pairs.partner)
    at, extra = correction_at(nac, nac_fc, q_all.detach().cpu().numpy(), q_directions) if nac is not None else ([], None)
    if len(at):  # the correction in the gauge of D̃ and the real form, at the q-points where it acts
        at = torch.as_tensor(at)
        extra = torch.as_tensor(extra).reshape(-1, m, 3, m, 3).permute(0, 1, 3, 2, 4)
        phase = torch.exp(1j * torch.pi * (q_all.cpu().double()[at] @ pairs.lattice_shift.double().T))  # (k, m)
        extra = extra * phase[:, :, None, None, None] * phase.conj()[:, None, :, None, None]
        extra = extra[:, torch.cat([pairs.first, pairs.fixed])].to(device=d.device)
        d.index_add_(0, at.to(d.device), _real_form(extra.real.to(dtype), extra.imag.to(dtype), pairs))
    return d


@dataclass(frozen=True)
class RealFormTable:
    """The real form of D(q) as Σ_s [cos(2π q·s) C_s + sin(2π q·s) S_s] over the distinct bond
    shifts s = T + (L_i − L_j)/2 (``shifts``, (S, 3)): ``stacked`` (2S, 9m²) holds the flattened
    C_s then S_s, each exactly symmetric."""

    shifts: torch.Tensor
    stacked: torch.Tensor
    n_atoms: int

    def __call__(self, qpoints: torch.Tensor) -> torch.Tensor:
        """The real form at ``qpoints`` (n_q, 3): (n_q, 3m, 3m)."""
        angle = 2 * torch.pi * (qpoints.to(self.shifts.dtype) @ self.shifts.T)
        d = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1).to(self.stacked.dtype) @ self.stacked
        return d.reshape(-1, 3 * self.n_atoms, 3 * self.n_atoms)


def real_form_table(pairs: InversionPairs, max_numbers: int | None = None) -> RealFormTable | None:
    """The :class:`RealFormTable` of ``pairs.force_constants``, or ``None`` when it would hold more
    than ``max_numbers`` (default :data:`~vgnn_core.phonons.dynamical_matrix.SHIFT_TABLE_MAX`).

    The matrix (module docstring) needs D̃'s blocks of first-atom rows, and of fixed rows in
    fixed columns only: each such bond adds its block, under the phase of its shift, to the
    entries its pair feeds (a first–first or first–partner bond to both diagonal blocks of the
    pair and to the block between them, first–fixed to two blocks, fixed–fixed to one); the
    other bonds (partner rows; fixed rows in first or partner columns) hold nothing more, being
    inversion images or transposes of these, and are left out. The blocks below the diagonal
    are the transposes of those above, and the diagonal blocks are symmetrized."""
    fc = pairs.force_constants
    m, device = fc.n_atoms, fc.blocks.device
    w = fc.mass_weighted_blocks()
    shifts, column = distinct_shifts(_tilde_shifts(pairs))
    n_shifts = len(shifts)
    if 2 * n_shifts * 9 * m * m > (dynamical_matrix.SHIFT_TABLE_MAX if max_numbers is None else max_numbers):
        return None
    n1, nf = len(pairs.first), len(pairs.fixed)
    first, second, fixed = (t.to(device) for t in (pairs.first, pairs.second, pairs.fixed))
    role = torch.full((m,), -1, dtype=torch.long, device=device)  # 0 first, 1 partner, 2 fixed
    index = torch.zeros(m, dtype=torch.long, device=device)  # among the first atoms / the fixed
    for k, atoms in enumerate((first, second, fixed)):
        role[atoms] = k
        index[atoms] = torch.arange(len(atoms), device=device)
    top, mid, bottom = (lambda a: a), (lambda c: n1 + c), (lambda a: n1 + nf + a)
    ri, rj, ii, jj = role[fc.src], role[fc.dst], index[fc.src], index[fc.dst]
    root2 = 2.0**0.5
    # (bonds, sine?, block row, block column, factor, transposed block?)
    terms = []
    for partner, sign in ((0, 1.0), (1, -1.0)):  # j the first atom b of a pair, or its partner
        b = (ri == 0) & (rj == partner)
        terms += [(b, 0, top(ii[b]), top(jj[b]), 1.0, False), (b, 0, bottom(ii[b]), bottom(jj[b]), sign, False),
                  (b, 1, top(ii[b]), bottom(jj[b]), -sign, False)]
    b = (ri == 0) & (rj == 2)
    terms += [(b, 0, top(ii[b]), mid(jj[b]), root2, False), (b, 1, mid(jj[b]), bottom(ii[b]), root2, True)]
    b = (ri == 2) & (rj == 2)
    terms.append((b, 0, mid(ii[b]), mid(jj[b]), 1.0, False))
    rows, entries, values = [], [], []
    for bonds, sine, block_row, block_col, factor, transposed in terms:
        blocks = w[bonds].transpose(-1, -2) if transposed else w[bonds]
        rows.append((column[bonds] + sine * n_shifts)[:, None].expand(-1, 9))
        entries.append(block_entries(block_row, block_col, m))
        values.append(factor * blocks.reshape(-1, 9))
    upper = torch.zeros(2 * n_shifts, 9 * m * m, dtype=w.dtype, device=device)
    upper.index_put_((torch.cat(rows).reshape(-1), torch.cat(entries).reshape(-1)), torch.cat(values).reshape(-1),
                     accumulate=True)
    upper = upper.reshape(2 * n_shifts, 3 * m, 3 * m)
    full = upper + upper.transpose(-1, -2)
    for lo, hi in ((0, n1), (n1, n1 + nf), (n1 + nf, m)):  # the diagonal blocks: their symmetric part
        full[:, 3 * lo : 3 * hi, 3 * lo : 3 * hi] *= 0.5
    return RealFormTable(shifts, full.reshape(2 * n_shifts, 9 * m * m), m)


def _tilde_shifts(pairs: InversionPairs) -> torch.Tensor:
    """Every bond's phase vector in D̃'s gauge, T + (L_i − L_j)/2: (E, 3), the blocks' dtype."""
    fc = pairs.force_constants
    lshift = pairs.lattice_shift.to(device=fc.blocks.device, dtype=fc.blocks.dtype)
    return fc.shift.to(fc.blocks.dtype) + 0.5 * (lshift[fc.src] - lshift[fc.dst])


def _tilde_blocks(pairs: InversionPairs, qpoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Re and Im of D̃'s blocks in the rows of the first and the fixed atoms, bond by bond:
    each (n_q, r, m, 3, 3) (r = first + fixed atoms)."""
    fc = pairs.force_constants
    m = fc.n_atoms
    w_all = fc.mass_weighted_blocks()
    rows = torch.cat([pairs.first, pairs.fixed]).to(fc.src.device)
    row_of = torch.full((m,), -1, dtype=torch.long, device=fc.src.device)
    row_of[rows] = torch.arange(len(rows), device=fc.src.device)
    keep = row_of[fc.src] >= 0
    w = w_all[keep].reshape(-1, 9)
    src, dst = row_of[fc.src[keep]], fc.dst[keep]
    pair = src * m + dst  # (row atom, column atom) of every kept bond
    shift = _tilde_shifts(pairs)[keep]
    r = len(rows)
    re, im = [], []
    step = _q_chunk(fc, qpoints.shape[0])
    for start in range(0, qpoints.shape[0], step):
        angle = 2 * torch.pi * (qpoints[start : start + step] @ shift.T)
        re.append(_phase_sum(torch.cos(angle), w, pair, r * m).reshape(-1, r, m, 3, 3))
        im.append(_phase_sum(torch.sin(angle), w, pair, r * m).reshape(-1, r, m, 3, 3))
    empty = torch.zeros(0, r, m, 3, 3, dtype=w.dtype, device=w.device)
    return torch.cat(re) if re else empty, torch.cat(im) if im else empty


def _real_form(re: torch.Tensor, im: torch.Tensor, pairs: InversionPairs) -> torch.Tensor:
    """The module docstring's real symmetric matrix (n, 3m, 3m) from Re and Im of D̃'s blocks in
    the rows of the first and the fixed atoms, (n, r, m, 3, 3)."""
    m = re.shape[2]
    n1, nf = len(pairs.first), len(pairs.fixed)
    first, second, fixed = (t.to(re.device) for t in (pairs.first, pairs.second, pairs.fixed))
    re1, im1 = re[:, :n1], im[:, :n1]
    re11, re12, re1f = re1[:, :, first], re1[:, :, second], re1[:, :, fixed]
    im11, im12, im1f = im1[:, :, first], im1[:, :, second], im1[:, :, fixed]
    reff = re[:, n1:][:, :, fixed]
    root2 = 2.0**0.5
    # block rows and columns of atoms [first, fixed, first]; the off-diagonal blocks below the
    # diagonal are the transposes of those above, the diagonal ones are symmetrized
    n = re.shape[0]
    d = torch.empty(n, m, 3, m, 3, dtype=re.dtype, device=re.device)
    cut = (0, n1, n1 + nf, m)
    blocks = {(0, 0): _symmetric(re11 + re12), (0, 1): root2 * re1f, (0, 2): im12 - im11,
              (1, 1): _symmetric(reff), (1, 2): root2 * _transposed(im1f), (2, 2): _symmetric(re11 - re12)}
    for (a, b), block in blocks.items():
        d[:, cut[a]:cut[a + 1], :, cut[b]:cut[b + 1]] = block.permute(0, 1, 3, 2, 4)
        if a != b:
            d[:, cut[b]:cut[b + 1], :, cut[a]:cut[a + 1]] = _transposed(block).permute(0, 1, 3, 2, 4)
    return d.reshape(n, 3 * m, 3 * m)


def _transposed(blocks: torch.Tensor) -> torch.Tensor:
    """(n, a, b, 3, 3) blocks X_ij → the blocks of the transposed matrix, X_jiᵀ, (n, b, a, 3, 3)."""
    return blocks.transpose(1, 2).transpose(-1, -2)


def _symmetric(blocks: torch.Tensor) -> torch.Tensor:
    """The symmetric part of a square block matrix (n, a, a, 3, 3) (round-off of the sums removed)."""
    return 0.5 * (blocks + _transposed(blocks))
