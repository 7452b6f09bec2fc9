"""From force-constant blocks Φ_ij(T) to the dynamical matrix D(q) and frequencies.

    D_ij(q) = Σ_T Φ_ij(T) / √(M_i M_j) · exp(2πi q·T)

with ``q`` fractional in the reciprocal basis of the cell and ``T`` integer lattice
translations (phonopy's units: eV/Å², amu). The eigenvalues λ of D are turned into signed
frequencies ω = sign(λ)·√|λ| (negative = imaginary mode), in cm⁻¹, sorted per q-point.

The same code assembles a trained model's blocks and phonopy's exact force constants, so the
tests against phonopy check the very path a prediction takes.

Polar crystals: pass a :class:`~vgnn_core.phonons.nac.NonAnalyticCorrection` (``nac``) with the
*short-range* force constants (:meth:`~vgnn_core.phonons.nac.NonAnalyticCorrection.short_range`)
and the dipole–dipole term C(q)/√(M_i M_j) is added at every q (phonopy's Gonze–Lee NAC); a
:class:`~vgnn_core.phonons.nac.GammaJumpCorrection`, with the full force constants, adds only the
LO–TO jump at Γ (what the networks' force constants need). At Γ the term depends on the direction
of approach, ``q_directions``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..crystal.bonds import bond_keys
from .force_constants import ForceConstants, same_bonds
from .units import EV_ANGSTROM2_AMU_TO_CM1

if TYPE_CHECKING:
    from ..crystal.symmetry import Inversion, PrimitiveSites
    from .centrosymmetric import InversionPairs
    from .nac import NonAnalyticCorrection, WangCorrection

    Correction = NonAnalyticCorrection | WangCorrection

#: Below this |λ| (eV/Å²/amu) the gradient of √|λ| is capped, so training stays finite at
#: the exactly-zero acoustic modes. It does not change any value.
SQRT_GRAD_EPS = 1e-8


class _SignedSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lam: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = torch.sign(lam) * torch.sqrt(torch.abs(lam))
        ctx.save_for_backward(lam)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (lam,) = ctx.saved_tensors
        return grad / (2.0 * torch.sqrt(torch.clamp(torch.abs(lam), min=SQRT_GRAD_EPS)))


def signed_sqrt(lam: torch.Tensor) -> torch.Tensor:
    """sign(λ)·√|λ| with a finite gradient at λ = 0."""
    return _SignedSqrt.apply(lam)


def eigenvalues_to_cm1(lam: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of D (eV/Å²/amu) → signed frequencies in cm⁻¹."""
    return signed_sqrt(lam) * EV_ANGSTROM2_AMU_TO_CM1


def dynamical_matrices(
    fc: ForceConstants,
    qpoints: torch.Tensor,
    q_chunk: int | None = None,
    nac: Correction | None = None,
    q_directions: np.ndarray | None = None,
) -> torch.Tensor:
    """D(q) of one crystal at ``qpoints`` (n_q, 3): a complex (n_q, 3m, 3m) tensor in eV/Å²/amu.

    Assembled from the force constants summed per lattice translation (:class:`ShiftTable`);
    for a cell too large for that, bond by bond, ``q_chunk`` q-points at a time.
    With ``nac`` the dipole–dipole term is added (``fc`` then short-range for Gonze–Lee, full
    for :class:`~vgnn_core.phonons.nac.WangCorrection` and the jump at Γ); ``q_directions``
    ((n_q, 3) or (3,), fractional) is the direction from which Γ is approached, used at Γ only.
    """
    m = fc.n_atoms
    weighted = fc.mass_weighted_blocks()
    cdtype = torch.complex128 if weighted.dtype == torch.float64 else torch.complex64
    qpoints = qpoints.to(dtype=weighted.dtype, device=weighted.device).reshape(-1, 3)
    shift = fc.shift.to(weighted.dtype)
    w = weighted.reshape(-1, 9)
    # the blocks are real: Re D and Im D are sums of cos·Φ and sin·Φ (half a complex product's work)
    table = ShiftTable.from_bonds(w, block_entries(fc.src, fc.dst, m), shift, 9 * m * m)
    if table is not None:
        d = torch.complex(*table.cos_sin(qpoints)).reshape(-1, 3 * m, 3 * m)
    else:  # bond by bond, a chunk of q-points at a time
        pair = fc.src * m + fc.dst
        n_q = qpoints.shape[0]
        step = q_chunk or _q_chunk(fc, n_q)
        out = []
        for start in range(0, n_q, step):
            angle = 2 * torch.pi * (qpoints[start : start + step] @ shift.T)  # (nq, E)
            parts = [_phase_sum(wave, w, pair, m * m) for wave in (torch.cos(angle), torch.sin(angle))]
            out.append(_blocks_to_matrix(torch.complex(*parts), m))
        d = torch.cat(out, dim=0)
    if nac is not None:
        at, extra = correction_at(nac, fc, qpoints.detach().cpu().numpy(), q_directions)
        if len(at):
            d.index_add_(0, torch.as_tensor(at, device=d.device), torch.as_tensor(extra, dtype=cdtype, device=d.device))
    return d


def correction_at(nac: Correction, fc: ForceConstants, qpoints: np.ndarray,
                  q_directions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where a dipole–dipole correction acts among ``qpoints`` (n_q, 3), and what it adds there:
    the indices of those q-points and its term at them, (k, 3m, 3m) in eV/Å²/amu (the jump at Γ
    acts at a path's Γ ends only, so a path or a mesh skips computing zeros everywhere else)."""
    qpoints = np.asarray(qpoints, dtype=float).reshape(-1, 3)
    at = nac.acting_qpoints(qpoints, q_directions)
    if not len(at):
        return at, np.zeros((0, 3 * fc.n_atoms, 3 * fc.n_atoms), dtype=complex)
    dirs = None
    if q_directions is not None:
        dirs = np.broadcast_to(np.asarray(q_directions, dtype=float).reshape(-1, 3), qpoints.shape)[at]
    return at, nac.dynamical_term(fc, qpoints[at], dirs)


def is_time_reversal_invariant(qpoints: torch.Tensor, tol: float = 1e-9) -> bool:
    """Whether every q-point (fractional, (n_q, 3)) equals −q up to a reciprocal lattice vector
    (2q integer: Γ and the zone-boundary points of the 2×2×2 grid). There exp(2πi q·T) = ±1 for
    every integer T, so D(q) is real symmetric (:func:`real_dynamical_matrices`)."""
    twice = 2 * qpoints.detach().reshape(-1, 3).cpu().double()
    return bool(torch.all(torch.abs(twice - torch.round(twice)) <= tol))


def real_dynamical_matrices(fc: ForceConstants, qpoints: torch.Tensor) -> torch.Tensor:
    """D(q) of one crystal at q-points with 2q integer (:func:`is_time_reversal_invariant`): a real
    symmetric (n_q, 3m, 3m) tensor in eV/Å²/amu, exactly the real part of
    :func:`dynamical_matrices` (its imaginary part is zero there), built with the phases ±1 as
    exact signs. Half the memory of the complex matrices and a real eigen-solve (several times
    cheaper, on a GPU most of all)."""
    m = fc.n_atoms
    w = fc.mass_weighted_blocks().reshape(-1, 9)
    twice = torch.round(2 * qpoints.detach().reshape(-1, 3).to(device=w.device, dtype=torch.float64))
    shift = fc.shift.to(torch.float64)
    table = ShiftTable.from_bonds(w, block_entries(fc.src, fc.dst, m), shift, 9 * m * m)
    if table is not None:  # exp(2πi q·T) = (−1)^(2q·T): integers held exactly in float64
        sign = 1.0 - 2.0 * torch.remainder(twice @ table.shifts.T, 2.0)
        return table(sign).reshape(-1, 3 * m, 3 * m)
    pair = fc.src * m + fc.dst
    step = _q_chunk(fc, twice.shape[0])
    out = []
    for start in range(0, twice.shape[0], step):
        sign = (1.0 - 2.0 * torch.remainder(twice[start : start + step] @ shift.T, 2.0)).to(w.dtype)
        out.append(_blocks_to_matrix(_phase_sum(sign, w, pair, m * m), m))
    return torch.cat(out, dim=0)


def real_dynamical_matrices_each(fcs: Sequence[ForceConstants], qpoints: torch.Tensor) -> torch.Tensor:
    """:func:`real_dynamical_matrices` of K force constants on the same bonds (an ensemble's
    members: :func:`~vgnn_core.phonons.force_constants.same_bonds`), (K, n_q, 3m, 3m).

    With 2q integer the phase of a translation T is (−1)^(2q·T), which depends on T only through
    its parity, T mod 2: a :class:`ShiftTable` of the parities sums the blocks into the classes
    present (at most eight; an MVN's one), one table for all K where it fits in
    :data:`SHIFT_TABLE_MAX`, and each D(q) is a ±1 combination of them:
    the same matrices up to the order of the float sums (:func:`real_dynamical_matrices` keeps the
    per-translation sums of the complex matrices, so that one crystal's frequencies do not depend,
    to the last bit, on which q-points it is solved with)."""
    first, k = fcs[0], len(fcs)
    if not all(same_bonds(first, fc) for fc in fcs[1:]):
        raise ValueError("real_dynamical_matrices_each needs force constants on the same bonds")
    m = first.n_atoms
    n_entries = 9 * m * m
    w = torch.stack([fc.mass_weighted_blocks().reshape(-1, 9) for fc in fcs], dim=1)  # (E, K, 9)
    entries = block_entries(first.src, first.dst, m)[:, None, :] + n_entries * torch.arange(k, device=w.device)[:, None]
    parity = torch.remainder(first.shift.to(device=w.device, dtype=torch.float64), 2.0)  # T mod 2: the phase's only say
    table = ShiftTable.from_bonds(w.reshape(-1, 9 * k), entries.reshape(-1, 9 * k), parity, k * n_entries)
    if table is None:  # a large cell: each its own way
        return torch.stack([real_dynamical_matrices(fc, qpoints) for fc in fcs])
    twice = torch.round(2 * qpoints.detach().reshape(-1, 3).to(device=w.device, dtype=torch.float64))
    sign = 1.0 - 2.0 * torch.remainder(twice @ table.shifts.T, 2.0)  # (n_q, classes): exactly ±1
    return table(sign).reshape(-1, k, 3 * m, 3 * m).transpose(0, 1)


def gamma_dynamical_matrix(fc: ForceConstants, nac: Correction | None = None) -> torch.Tensor:
    """Real symmetric D(Γ) of one crystal, (3m, 3m) in eV/Å²/amu: the MVN output.

    With ``nac`` the dipole–dipole term at Γ without a direction is added (real there): on
    short-range ``fc`` (Gonze–Lee) that gives the TO modes, the full force constants' D(Γ); the
    jump at Γ adds nothing without a direction (``fc`` are already the full ones).
    """
    m = fc.n_atoms
    weighted = fc.mass_weighted_blocks().reshape(-1, 9)
    acc = torch.zeros(1, m * m, 9, dtype=weighted.dtype, device=weighted.device)
    acc.index_add_(1, fc.src * m + fc.dst, weighted[None])
    d = _blocks_to_matrix(acc, m)[0]
    return d if nac is None else gamma_dynamical_matrices_along(fc, nac, None, analytic=d)[0]


def gamma_dynamical_matrices_along(fc: ForceConstants, nac: Correction, q_directions: np.ndarray | None,
                                   analytic: torch.Tensor | None = None) -> torch.Tensor:
    """Real symmetric D at Γ approached along each of ``q_directions`` ((k, 3), fractional in the
    reciprocal basis, as phonopy's ``nac_q_direction``; ``None``: one matrix, no direction):
    (k, 3m, 3m) in eV/Å²/amu, the analytic D(Γ) (``analytic``, when already built) plus the
    dipole–dipole term of the limit q → 0 along each direction. That term is real at Γ (every
    phase is 1; the Ewald sums pair G with −G), so the LO and TO modes need only a real
    eigen-solve; a zero direction gives the TO matrix, as no direction does."""
    d = None if q_directions is None else np.asarray(q_directions, dtype=float).reshape(-1, 3)
    analytic = gamma_dynamical_matrix(fc) if analytic is None else analytic
    extra = nac.dynamical_term(fc, np.zeros((1, 3)) if d is None else np.zeros_like(d), d).real
    return analytic[None] + torch.as_tensor(extra, dtype=analytic.dtype, device=analytic.device)


def _q_chunk(fc: ForceConstants, n_q: int) -> int:
    """q-points assembled at once: the (n_q, bonds, 9) products stay under ~4e7 numbers."""
    return max(1, min(n_q, int(4e7 // max(1, 9 * fc.n_bonds))))


def _phase_sum(phase: torch.Tensor, w: torch.Tensor, pair: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Σ over bonds of phase(q, bond) · w(bond), per atom pair: (n_q, n_pairs, 9) from phases
    (n_q, E), mass-weighted blocks (E, 9) and each bond's pair index (E,) (row atom · m + column
    atom: ``n_pairs`` = m·m for a whole D(q)). The bond-by-bond sum, for cells too large for a
    :class:`ShiftTable`."""
    acc = torch.zeros(phase.shape[0], n_pairs, 9, dtype=w.dtype, device=w.device)
    return acc.index_add_(1, pair, phase[:, :, None] * w[None, :, :])


#: Largest :class:`ShiftTable` (distinct shifts × matrix entries; 128 MB in float64) an
#: assembly builds; beyond it (cells of a few hundred atoms, or over a hundred in the real form
#: of centrosymmetric crystals, whose eigen-solves dominate anyway) the bonds are summed one by
#: one at every q-point.
SHIFT_TABLE_MAX = 2**24


class ShiftTable:
    """A crystal's mass-weighted force constants summed per distinct bond shift s:
    ``table[s]`` is the matrix (flattened) that the phase of s multiplies, so that
    D(q) = Σ_s exp(2πi q·s) table[s].

    A crystal's bonds share few distinct shifts (the k-MVN's bonds on Togo cells of 10–154
    atoms: 21–37 lattice translations T), so D at n_q q-points is one product of the phases
    (n_q, S) with the table (S, entries), every entry already where the matrix wants it: on this
    CPU 2–5× faster than adding every bond's block at every q-point, at every cell size measured
    (``benchmarks/bench_assembly.py --by-size``); differentiable in the blocks.
    """

    def __init__(self, shifts: torch.Tensor, table: torch.Tensor):
        self.shifts = shifts  # (S, 3) fractional
        self.table = table  # (S, entries)

    @classmethod
    def from_bonds(cls, values: torch.Tensor, entries: torch.Tensor, shift: torch.Tensor, n_entries: int,
                   max_numbers: int | None = None) -> ShiftTable | None:
        """The table of bonds whose numbers ``values`` (E, k) go to the flat matrix ``entries``
        (E, k) under each bond's phase vector ``shift`` (E, 3) (values of equal entry and shift
        are summed); ``None`` when it would hold more than ``max_numbers`` (default
        :data:`SHIFT_TABLE_MAX`)."""
        shifts, column = distinct_shifts(shift)
        if len(shifts) * n_entries > (SHIFT_TABLE_MAX if max_numbers is None else max_numbers):
            return None
        flat = (column[:, None] * n_entries + entries).reshape(-1)  # each number's place in the flat table
        table = torch.zeros(len(shifts) * n_entries, dtype=values.dtype, device=values.device)
        return cls(shifts, table.index_add_(0, flat, values.reshape(-1)).reshape(len(shifts), n_entries))

    def __call__(self, phase: torch.Tensor) -> torch.Tensor:
        """Σ_s phase[:, s] table[s]: (n_q, entries) from ``phase`` (n_q, S)."""
        return phase.to(self.table.dtype) @ self.table

    def cos_sin(self, qpoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_s cos(2π q·s) table[s] and the same with sin at ``qpoints`` (n_q, 3): the real
        and imaginary parts of D(q), each (n_q, entries); one product for both."""
        angle = 2 * torch.pi * (qpoints.to(self.shifts.dtype) @ self.shifts.T)  # (n_q, S)
        both = self(torch.cat([torch.cos(angle), torch.sin(angle)]))
        return both[: len(angle)], both[len(angle) :]


def block_entries(row: torch.Tensor, col: torch.Tensor, n: int) -> torch.Tensor:
    """Flat index, in a (3n, 3n) matrix, of the 9 entries (α-major) of each 3×3 block at block
    row ``row`` and block column ``col``: (E, 9)."""
    k = torch.arange(3, device=row.device)
    r = (3 * row)[:, None, None] + k[None, :, None]
    c = (3 * col)[:, None, None] + k[None, None, :]
    return (r * (3 * n) + c).reshape(-1, 9)


def distinct_shifts(shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``shift`` (E, 3) and, for each row, its index among them; shifts
    that are multiples of ½ (lattice translations, and the centrosymmetric form's T + ΔL/2)
    are told apart by an exact integer key, any others by their values."""
    shift = shift.detach().reshape(-1, 3)
    twice = torch.round(2 * shift)
    if len(shift) and bool(torch.all(twice == 2 * shift)) and float(twice.abs().max()) < 2**20:
        ints = twice.cpu().numpy().astype(np.int64)
        zero = np.zeros(len(ints), dtype=np.int64)  # one "bond" 0 → 0 per shift: its key is the shift's
        key = bond_keys(zero, zero, ints, 1, int(np.abs(ints).max()))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = torch.as_tensor(inverse.reshape(-1), device=shift.device)
        return shift[torch.as_tensor(first, device=shift.device)], inverse
    distinct, inverse = torch.unique(shift, dim=0, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _blocks_to_matrix(acc: torch.Tensor, m: int) -> torch.Tensor:
    n = acc.shape[0]
    return acc.reshape(n, m, m, 3, 3).permute(0, 1, 3, 2, 4).reshape(n, 3 * m, 3 * m)


def eigvalsh_grouped(matrices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Eigenvalues of many Hermitian stacks (n_i, d_i, d_i), one batched solve per size d."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for k, mat in enumerate(matrices):
        groups[(mat.shape[-1], mat.dtype)].append(k)
    out: list[torch.Tensor | None] = [None] * len(matrices)
    for idx in groups.values():
        stack = torch.cat([matrices[k].reshape(-1, *matrices[k].shape[-2:]) for k in idx])
        lam = torch.linalg.eigvalsh(stack)
        start = 0
        for k in idx:
            n = matrices[k].reshape(-1, *matrices[k].shape[-2:]).shape[0]
            out[k] = lam[start : start + n].reshape(*matrices[k].shape[:-1])
            start += n
    return out  # type: ignore[return-value]


def band_frequencies(
    fcs: Sequence[ForceConstants],
    qpoints: Sequence[torch.Tensor],
    max_bytes: int = 256 * 2**20,
    nacs: Sequence[Correction | None] | None = None,
    q_directions: Sequence[np.ndarray | None] | None = None,
    inversions: Sequence[Inversion | InversionPairs | None] | None = None,
) -> list[torch.Tensor]:
    """Signed frequencies (cm⁻¹), (n_q, 3m) per crystal, sorted per q-point.

    D(q) matrices are built and diagonalised in waves of at most ``max_bytes``, so a large
    cell's band structure never holds all its matrices at once; small crystals of equal size
    share one batched eigen-solve. A q-point given twice (a path's shared segment ends) is
    solved once; a crystal whose q-points all have 2q integer (Γ, the zone boundary of the 2×2×2
    grid) is solved with real symmetric matrices (the same eigenvalues; where modes are degenerate
    their gradients may differ from the complex path's, both valid). ``nacs`` (one per crystal,
    or None) add the dipole–dipole term (to short-range ``fcs`` for Gonze–Lee, full ones for Wang
    and the jump at Γ); ``q_directions`` (one (n_q, 3) array per
    crystal, or None) give the direction of approach at Γ (e.g.
    :func:`~vgnn_core.phonons.nac.path_q_directions`); a q-point given with two directions is
    solved twice. ``inversions`` (one :class:`~vgnn_core.crystal.symmetry.Inversion` of the
    force constants' cell or None per crystal, e.g. :attr:`~vgnn_core.crystal.crystal.Crystal.inversion`):
    a centrosymmetric crystal's D(q) is solved in its real symmetric form
    (:mod:`~vgnn_core.phonons.centrosymmetric`: the eigenvalues of its force constants made
    exactly inversion-symmetric, a real solve 2–3× faster than a complex one),
    unless the force constants, masses or Born charges break the inversion
    (:func:`~vgnn_core.phonons.centrosymmetric.inversion_pairs`: by more than 1e-5 of their
    largest entry; an :class:`~vgnn_core.phonons.centrosymmetric.InversionPairs` already prepared
    for these force constants is taken as it is); a crystal whose q-points all have 2q integer is
    solved real anyway, as given.
    """
    from .centrosymmetric import centrosymmetric_matrices, prepared_pairs

    nacs = list(nacs) if nacs is not None else [None] * len(fcs)
    inversions = list(inversions) if inversions is not None else [None] * len(fcs)
    dirs_in = list(q_directions) if q_directions is not None else [None] * len(fcs)
    dirs: list[np.ndarray | None] = []
    distinct = []
    # one tensor of q-points shared by many crystals (an ensemble's spread) is read to the host once
    seen: dict[int, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], bool]] = {}  # id → (q kept alive, ...)
    real: list[bool] = []  # every q-point of the crystal has 2q integer (and no NAC): solved real
    for q, d, nac in zip(qpoints, dirs_in, nacs):
        if d is None:
            if id(q) not in seen:
                seen[id(q)] = (q, _distinct_rows(q), is_time_reversal_invariant(q))
            _, rows, invariant = seen[id(q)]
            distinct.append(rows)
            real.append(invariant and nac is None)
            dirs.append(None)
            continue
        real.append(False)
        d = np.array(np.broadcast_to(np.asarray(d, dtype=float).reshape(-1, 3), tuple(q.reshape(-1, 3).shape)))
        # a q-point reached from two directions (Γ between two segments) is two problems
        both, rows = _distinct_rows(torch.cat([q.reshape(-1, 3).detach().cpu().double(), torch.as_tensor(d)], 1),
                                    width=6)
        distinct.append((both[:, :3].to(dtype=q.dtype, device=q.device), rows.to(q.device)))
        dirs.append(both[:, 3:].numpy())
    qpoints = [q for q, _ in distinct]
    pairs = [None if inv is None or real[k] else prepared_pairs(fcs[k], inv, nacs[k])
             for k, inv in enumerate(inversions)]
    jobs: list[tuple[int, int, int]] = []  # (crystal, first q, end q)
    for k, (fc, q) in enumerate(zip(fcs, qpoints)):
        per_q = 16 * (3 * fc.n_atoms) ** 2
        step = max(1, max_bytes // per_q)
        jobs += [(k, a, min(len(q), a + step)) for a in range(0, len(q), step)]
    parts: list[list[torch.Tensor]] = [[] for _ in fcs]
    wave: list[tuple[int, int, int]] = []
    size = 0

    def matrices(k: int, a: int, b: int) -> torch.Tensor:
        if real[k]:
            return real_dynamical_matrices(fcs[k], qpoints[k][a:b])  # the same eigenvalues, solved real
        if pairs[k] is not None:  # the same eigenvalues, solved real
            return centrosymmetric_matrices(fcs[k], pairs[k], qpoints[k][a:b], nac=nacs[k],
                                            q_directions=None if dirs[k] is None else dirs[k][a:b])
        return dynamical_matrices(fcs[k], qpoints[k][a:b], nac=nacs[k],
                                  q_directions=None if dirs[k] is None else dirs[k][a:b])

    def solve() -> None:
        mats = [matrices(k, a, b) for k, a, b in wave]
        for (k, _, _), lam in zip(wave, eigvalsh_grouped(mats)):
            parts[k].append(lam)

    for job in jobs:
        k, a, b = job
        wave.append(job)
        size += (b - a) * 16 * (3 * fcs[k].n_atoms) ** 2
        if size >= max_bytes:
            solve()
            wave, size = [], 0
    if wave:
        solve()
    return [
        eigenvalues_to_cm1(torch.cat(p))[rows] if p else torch.zeros(0, 3 * fc.n_atoms)
        for p, fc, (_, rows) in zip(parts, fcs, distinct)
    ]


def primitive_frequencies(fcs: Sequence[ForceConstants], sites: PrimitiveSites, kpoints: torch.Tensor) -> torch.Tensor:
    """Signed frequencies (cm⁻¹), (K, n_k, 3p), of the primitive cell that the cell of the K force
    constants ``fcs`` (an ensemble's members, on the same bonds) repeats (``sites``:
    :attr:`~vgnn_core.crystal.crystal.Crystal.primitive_sites`), at its fractional ``kpoints``
    (n_k, 3) with 2k integer, without folded modes: the cell's D(q) at q = M k projected onto the
    waves that have k's phase e^{2πi k·n} in every primitive cell n,

        D_prim(k)_bb' = (1/N) Σ_{i ∈ b, j ∈ b'} e^{-2πi k·n_i} D(q)_ij e^{2πi k·n_j}

    (N repeats, b and b' primitive atoms), summed bond by bond: a bond i → j + T adds its block at
    (b, b') with the phase of the primitive translation T·M + n_j − n_i. That is the primitive
    cell's own D(k) when the force constants repeat with the cell's lattice points (a VGNN's do, by
    construction), and still a real symmetric matrix with exact acoustic zeros at Γ when noise
    breaks the repetition. Costs O(bonds) per point, never a matrix of the whole cell."""
    first = fcs[0]
    if not all(same_bonds(first, fc) for fc in fcs[1:]):
        raise ValueError("primitive_frequencies needs force constants on the same bonds")
    if first.n_atoms != len(sites.site):
        raise ValueError(f"primitive sites of {len(sites.site)} atoms for force constants of {first.n_atoms}")
    device = first.blocks.device
    k = kpoints.detach().reshape(-1, 3).to(device=device, dtype=torch.float64)
    if not is_time_reversal_invariant(k):
        raise ValueError("primitive_frequencies solves k-points with 2k integer only")
    p, n = len(sites.representatives), first.n_atoms // len(sites.representatives)
    site = torch.as_tensor(sites.site, device=device)
    offset = torch.as_tensor(sites.offset, dtype=torch.float64, device=device)
    matrix = torch.as_tensor(sites.matrix, dtype=torch.float64, device=device)
    translation = first.shift.to(torch.float64) @ matrix + offset[first.dst] - offset[first.src]  # (E, 3), integers
    phase = 1.0 - 2.0 * torch.remainder(torch.round(2 * k) @ translation.T, 2.0)  # (n_k, E): (−1)^{2k·R}, exactly ±1
    w = torch.stack([fc.mass_weighted_blocks().reshape(-1, 9) for fc in fcs])  # (K, E, 9)
    pair = site[first.src] * p + site[first.dst]
    eigenvalues = []
    for sign in phase:  # a k at a time: K matrices of the primitive cell's size in memory, never more
        blocks = torch.zeros(len(fcs), p * p, 9, dtype=w.dtype, device=device).index_add_(1, pair, sign.to(w.dtype)[None, :, None] * w)
        d = (blocks / n).reshape(len(fcs), p, p, 3, 3).transpose(-3, -2).reshape(len(fcs), 3 * p, 3 * p)
        eigenvalues.append(torch.linalg.eigvalsh(d))
    return eigenvalues_to_cm1(torch.stack(eigenvalues, dim=1))  # (K, n_k, 3p)


def member_frequencies(
    members: Sequence[Sequence[ForceConstants]],
    qpoints: Sequence[torch.Tensor],
    max_bytes: int = 256 * 2**20,
) -> list[torch.Tensor]:
    """Signed frequencies (cm⁻¹), (K, n_q, 3m) per crystal, of each crystal's K force constants
    on the same bonds (an ensemble's members, :meth:`~vgnn_core.nn.model.ForceConstantModel.assemble_members`)
    at fractional ``qpoints`` (n_q, 3) with 2q integer (Γ and the 2×2×2 grid's zone boundary),
    sorted per q-point: :func:`band_frequencies` of each member, with the K real matrices of a
    crystal built from one table (:func:`real_dynamical_matrices_each`) and small crystals of
    equal size solved in one batch; at most ``max_bytes`` of matrices at once."""
    invariant: dict[int, tuple[torch.Tensor, bool]] = {}  # id → (q kept alive, 2q integer)
    for q in qpoints:
        if id(q) not in invariant:
            invariant[id(q)] = (q, is_time_reversal_invariant(q))
        if not invariant[id(q)][1]:
            raise ValueError("member_frequencies solves q-points with 2q integer only; use band_frequencies")
    out: list[torch.Tensor | None] = [None] * len(members)
    wave: list[tuple[int, torch.Tensor]] = []
    size = 0

    def solve() -> None:
        for (c, _), lam in zip(wave, eigvalsh_grouped([mats for _, mats in wave])):
            out[c] = eigenvalues_to_cm1(lam)

    for c, (fcs, q) in enumerate(zip(members, qpoints)):
        n_q = q.reshape(-1, 3).shape[0]
        nbytes = len(fcs) * n_q * 8 * (3 * fcs[0].n_atoms) ** 2
        if nbytes > max_bytes:  # a large cell: each member in waves of its own
            out[c] = torch.stack([band_frequencies([fc], [q], max_bytes=max_bytes)[0] for fc in fcs])
            continue
        wave.append((c, real_dynamical_matrices_each(fcs, q)))
        size += nbytes
        if size >= max_bytes:
            solve()
            wave, size = [], 0
    if wave:
        solve()
    return out  # type: ignore[return-value]


def _distinct_rows(q: torch.Tensor, decimals: int = 10, width: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``q`` (equal to ``decimals``) and, for each row of ``q``, its index
    among them."""
    key = np.round(q.detach().cpu().numpy().reshape(-1, width), decimals) + 0.0  # + 0.0: no −0.0
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    q = q.reshape(-1, width)
    return q[torch.as_tensor(first, device=q.device)], torch.as_tensor(inverse.reshape(-1), device=q.device)


def gamma_frequencies(
    fcs: Sequence[ForceConstants], nacs: Sequence[Correction | None] | None = None
) -> list[torch.Tensor]:
    """Signed Γ frequencies (cm⁻¹), (3m,) per crystal, sorted ascending (with ``nacs``: the TO
    frequencies, no direction of approach)."""
    nacs = list(nacs) if nacs is not None else [None] * len(fcs)
    mats = [gamma_dynamical_matrix(fc, nac) for fc, nac in zip(fcs, nacs)]
    return [eigenvalues_to_cm1(lam) for lam in eigvalsh_grouped(mats)]
