"""The non-analytic (dipole–dipole) correction of polar crystals: LO–TO splitting.

In an insulator with Born effective charges ``Z*`` the long-range Coulomb interaction of the
displacement-induced dipoles makes D(q) non-analytic at Γ: the limit q → 0 depends on the
direction q̂ and splits the longitudinal optical (LO) modes from the transverse (TO) ones.
This module implements the Gonze–Lee treatment exactly as phonopy applies it by default
(``nac_params`` with method ``'gonze'``, reciprocal-space terms only):

* the dipole–dipole matrix, an Ewald-damped sum over reciprocal vectors K = q + G,

      C_iα,jβ(q) = (4π e²/4πε₀ / Ω) [ Σ_{|G|<G_c} (Z_iᵀK)_α (Z_jᵀK)_β / (K·ε∞·K)
                   · exp(−K·ε∞·K / 4Λ²) · exp(2πi K·(r_i − r_j))  −  δ_ij C⁰_i,αβ ]

  with ``C⁰_i`` the Hermitian part of ``Σ_j [same sum at q = 0, G = 0 left out]``: C(Γ) then
  annihilates a rigid translation up to an antisymmetric on-site remainder (non-zero only
  for non-symmetric Z*), which the short-range force constants absorb; at K = 0 (|K| < :data:`GAMMA_TOLERANCE`) the term is
  ``q̂ q̂ᵀ / (q̂·ε∞·q̂)`` when the direction q̂ of approach is known and zero otherwise;
* the short-range force constants: C(q) at the supercell's commensurate q-points, Fourier
  transformed to the supercell, subtracted from the force constants;
* D(q) = D_short-range(q) + C(q)/√(M_i M_j) at every q.

Conventions are those of :mod:`~vgnn_core.phonons.dynamical_matrix`: D(q) = Σ_T Φ(T) e^{2πi q·T}
with integer translations T of the cell whose fractional positions are given (hence the phase
with K = q + G above). Wave vectors K are Cartesian in Å⁻¹ *without* the 2π (phonopy's); the
result does not depend on that choice except through Λ and G_c, which follow phonopy.

:class:`WangCorrection` is phonopy's other method (``'wang'``), added to the full force constants.

Units: Z* in elementary charges e, ε∞ dimensionless, lengths in Å, C(q) in eV/Å² (as force
constants), D(q) in eV/(Å²·amu), frequencies in cm⁻¹. ``factor`` is e²/(4πε₀) in eV·Å
(CODATA 14.3996…; phonopy's BORN files may state their own, e.g. 14.400).
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import constants as _c

from ..crystal.structures import NON_FINITE_CELL, is_finite_cell
from ..crystal.symmetry import image_distances
from .force_constants import ForceConstants

#: e²/(4πε₀·1 Å) in eV: the Coulomb energy of two elementary charges 1 Å apart (CODATA).
COULOMB_EV_ANGSTROM: float = _c.elementary_charge / (4.0 * np.pi * _c.epsilon_0 * _c.angstrom)
#: Å⁻¹ (no 2π): a wave vector q + G shorter than this is Γ, where the direction of approach counts.
GAMMA_TOLERANCE: float = 1e-5
#: Reciprocal vectors per unit volume that set the cutoff G_c (phonopy's default: 300 in the cell).
NUM_G_POINTS: int = 300
#: exp(−G_c·ε̄·G_c / 4Λ²) at the cutoff: fixes the Ewald parameter Λ (phonopy's default).
EWALD_EXP_CUTOFF: float = 1e-10


def enforce_charge_neutrality(born: np.ndarray) -> np.ndarray:
    """Born charges with ``Σ_i Z*_i = 0`` exactly: the mean tensor is subtracted from every atom.

    ``born`` is (n_atoms, 3, 3) in e; DFT charges violate the sum rule slightly (k-point
    sampling), which would give the acoustic modes a spurious LO–TO splitting at Γ.
    """
    born = np.asarray(born, dtype=float)
    if born.ndim != 3 or born.shape[1:] != (3, 3):
        raise ValueError(f"Born charges must have shape (n_atoms, 3, 3), got {born.shape}")
    return born - born.mean(axis=0, keepdims=True)


def expand_born_charges(
    independent: np.ndarray, lattice: np.ndarray, frac_coords: np.ndarray, numbers: Sequence[int],
    symprec: float = 1e-5,
) -> np.ndarray:
    """Born charges of every atom from those of the symmetry-independent atoms (phonopy's BORN).

    ``independent`` holds one 3×3 tensor (e) per equivalence class, in the order of each
    class's lowest atom index (phonopy's order). Atom ``i`` = g(r) of its representative r by a
    space-group operation g with Cartesian rotation R gets ``Z*_i = R Z*_r Rᵀ``. The
    operations come from spglib with ``symprec`` (Å; phonopy's BORN default 1e-5).
    """
    import spglib

    lattice = np.asarray(lattice, dtype=float)
    frac = np.asarray(frac_coords, dtype=float)
    numbers = np.asarray(numbers)
    if not is_finite_cell(lattice, frac):
        raise ValueError(NON_FINITE_CELL)
    try:
        data = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=symprec)
    except Exception:  # noqa: BLE001 - spglib raises on degenerate cells: identity only then
        data = None
    if data is None:
        rotations, translations = np.eye(3, dtype=int)[None], np.zeros((1, 3))
    else:
        rotations, translations = np.asarray(data.rotations), np.asarray(data.translations)
    n = len(frac)
    # images[o, a] = atom that operation o sends atom a to
    images = np.full((len(rotations), n), -1, dtype=int)
    for o, (rot, trans) in enumerate(zip(rotations, translations)):
        dist = image_distances(lattice, frac, numbers, rot, trans)
        images[o] = np.where(dist.min(axis=1) < symprec * 10, dist.argmin(axis=1), -1)
    representative = np.arange(n)
    for a in range(n):
        orbit = images[:, a][images[:, a] >= 0]
        representative[orbit] = np.minimum(representative[orbit], a)
    reps = np.unique(representative)
    independent = np.asarray(independent, dtype=float).reshape(-1, 3, 3)
    if len(independent) != len(reps):
        raise ValueError(f"{len(independent)} Born tensors given but the cell has {len(reps)} independent atoms")
    out = np.zeros((n, 3, 3))
    to_cart = lattice.T  # Cartesian column = Lᵀ · fractional column
    for a in range(n):
        r = representative[a]
        o = int(np.nonzero(images[:, r] == a)[0][0])
        rot = to_cart @ rotations[o] @ np.linalg.inv(to_cart)
        out[a] = rot @ independent[int(np.searchsorted(reps, r))] @ rot.T
    return out


@dataclass(frozen=True)
class BornCharges:
    """Dielectric response of one crystal: ε∞ (3, 3), Z* (n_atoms, 3, 3) in e with
    ``born[i, α, β] = ∂P_α/∂u_iβ``, and the e²/(4πε₀) factor (eV·Å) a BORN file states, if any."""

    epsilon: np.ndarray
    born: np.ndarray
    factor: float | None = None

    def neutral(self) -> BornCharges:
        """The same with Σ_i Z*_i = 0 enforced (:func:`enforce_charge_neutrality`)."""
        return BornCharges(self.epsilon, enforce_charge_neutrality(self.born), self.factor)


class NonAnalyticCorrection:
    """Gonze–Lee dipole–dipole interaction of one crystal (phonopy's default NAC).

    ``lattice`` rows in Å, ``frac_coords`` (m, 3) the positions the force constants' translations
    refer to, ``born`` (m, 3, 3) in e with ``born[i, α, β] = ∂P_α/∂u_iβ`` (phonopy's order),
    ``epsilon`` (3, 3) ε∞, ``factor`` e²/(4πε₀) in eV·Å. ``g_cutoff`` (Å⁻¹, no 2π) and
    ``ewald_lambda`` default to phonopy's choices.

    The G sum is a sphere centred on Γ, so C(q) is accurate (and periodic in q, as it must be in
    this phase convention) only for q near the first Brillouin zone; phonopy evaluates q as
    given. ``fold_q=True`` moves each q into the first zone first: D(q) then is exactly
    periodic, and differs from phonopy's by ~1e-4 cm⁻¹ at q inside [−½, ½)³ but outside
    the zone (more further out). The default, False, is phonopy's behaviour.
    """

    def __init__(
        self,
        lattice: np.ndarray,
        frac_coords: np.ndarray,
        born: np.ndarray,
        epsilon: np.ndarray,
        factor: float | None = None,
        g_cutoff: float | None = None,
        ewald_lambda: float | None = None,
        fold_q: bool = False,
    ) -> None:
        self.lattice = np.array(lattice, dtype=float).reshape(3, 3)
        self.frac_coords = np.array(frac_coords, dtype=float).reshape(-1, 3)
        self.born = np.array(born, dtype=float)
        self.epsilon = np.array(epsilon, dtype=float).reshape(3, 3)
        m = len(self.frac_coords)
        if self.born.shape != (m, 3, 3):
            raise ValueError(f"Born charges of shape {self.born.shape} for a cell of {m} atoms")
        if np.any(np.linalg.eigvalsh(0.5 * (self.epsilon + self.epsilon.T)) <= 0):
            raise ValueError("dielectric tensor ε∞ is not positive definite")
        self.factor = COULOMB_EV_ANGSTROM if factor is None else float(factor)
        self.fold_q = bool(fold_q)
        self.volume = abs(float(np.linalg.det(self.lattice)))
        #: reciprocal vectors (rows, Å⁻¹, no 2π)
        self.reciprocal = np.linalg.inv(self.lattice).T
        self.positions = self.frac_coords @ self.lattice  # Cartesian, Å
        self.g_cutoff = (
            (3.0 * NUM_G_POINTS / (4.0 * np.pi) / self.volume) ** (1.0 / 3.0) if g_cutoff is None else float(g_cutoff)
        )
        if ewald_lambda is None:
            geg = self.g_cutoff**2 * np.trace(self.epsilon) / 3.0
            ewald_lambda = np.sqrt(-geg / 4.0 / np.log(EWALD_EXP_CUTOFF))
        self.ewald_lambda = float(ewald_lambda)

    @functools.cached_property
    def g_vectors(self) -> np.ndarray:
        """The reciprocal vectors of the Ewald sum (computed on first use: the Γ jump alone,
        :class:`GammaJumpCorrection`, needs none)."""
        return self._g_vectors()

    @functools.cached_property
    def _onsite(self) -> np.ndarray:
        return self._onsite_term()

    @classmethod
    def from_structure(cls, structure, born: np.ndarray, epsilon: np.ndarray, **kwargs) -> NonAnalyticCorrection:
        """The correction for a pymatgen ``Structure`` (its lattice and fractional coordinates)."""
        return cls(np.asarray(structure.lattice.matrix), np.asarray(structure.frac_coords), born, epsilon, **kwargs)

    @classmethod
    def from_born(cls, structure, charges: BornCharges, **kwargs) -> NonAnalyticCorrection:
        """The correction for a ``Structure`` with :class:`BornCharges` (their factor, if stated)."""
        kwargs.setdefault("factor", charges.factor)
        return cls.from_structure(structure, charges.born, charges.epsilon, **kwargs)

    @property
    def n_atoms(self) -> int:
        return int(self.frac_coords.shape[0])

    def inversion_symmetric(self, partner: np.ndarray) -> NonAnalyticCorrection:
        """This correction with the Born charges of every atom i and its inversion partner
        ``partner[i]`` replaced by their mean, so that they are equal to the last bit (Σ Z* is
        kept): the real form of D(q) in a centrosymmetric cell
        (:func:`~vgnn_core.phonons.centrosymmetric.centrosymmetric_matrices`) reads the partners'
        charges as equal, and charges equal only to a network's round-off would move the acoustic
        modes at Γ off zero by ~0.05 cm⁻¹. ``self`` when they are equal already; else made once
        per partner map and kept (the path and the mesh of a crystal share it)."""
        partner = np.asarray(partner, dtype=np.int64)
        if np.array_equal(self.born[partner], self.born):
            return self
        kept = self.__dict__.setdefault("_inversion_symmetric", {})
        key = partner.tobytes()
        if key not in kept:  # two threads may both make it: the same numbers
            twin = copy.copy(self)
            twin.__dict__.pop("_inversion_symmetric", None)
            twin.__dict__.pop("_onsite", None)  # depends on the charges; the G vectors do not
            twin.born = 0.5 * (self.born + self.born[partner])
            kept[key] = twin
        return kept[key]

    # --- the dipole–dipole matrix ----------------------------------------------------------

    def _g_vectors(self) -> np.ndarray:
        """All reciprocal vectors (Cartesian, Å⁻¹, no 2π) with |G| < G_c."""
        # |n_i| = |G·a_i| ≤ G_c |a_i|: this box holds the whole sphere
        bound = np.floor(self.g_cutoff * np.linalg.norm(self.lattice, axis=1)).astype(int)
        grid = np.array(list(itertools.product(*(range(-b, b + 1) for b in bound))), dtype=float)
        g = grid @ self.reciprocal
        return g[np.einsum("gi,gi->g", g, g) < self.g_cutoff**2]

    def _ewald_sum(self, q_cart: np.ndarray, directions: np.ndarray | None) -> np.ndarray:
        """Σ_G (Z_iᵀK)(Z_jᵀK)ᵀ w(K) e^{2πi K·(r_i−r_j)} for q-points (n, 3): (n, 3m, 3m) complex."""
        m = self.n_atoms
        k = q_cart[:, None, :] + self.g_vectors[None, :, :]  # (n, G, 3)
        kek = np.einsum("ngi,ij,ngj->ng", k, self.epsilon, k)
        at_gamma = np.linalg.norm(k, axis=-1) < GAMMA_TOLERANCE
        safe = np.where(at_gamma, 1.0, kek)
        weight = np.where(at_gamma, 0.0, np.exp(-kek / (4.0 * self.ewald_lambda**2)) / safe)
        zk_vec = k.copy()
        if directions is not None and at_gamma.any():
            d = directions.astype(float)
            ded = np.einsum("ni,ij,nj->n", d, self.epsilon, d)
            has_dir = np.linalg.norm(d, axis=1) > 0
            rows, cols = np.nonzero(at_gamma & has_dir[:, None])
            zk_vec[rows, cols] = d[rows]
            weight[rows, cols] = 1.0 / ded[rows]
        phase = np.exp(2j * np.pi * np.einsum("ngi,ai->nga", k, self.positions))  # (n, G, m)
        zk = np.einsum("ngi,aij->ngaj", zk_vec, self.born)  # (Z_aᵀK)_β, (n, G, m, 3)
        u = (zk * phase[..., None]).reshape(len(q_cart), -1, 3 * m)
        return np.einsum("ng,ngx,ngy->nxy", weight, u, u.conj(), optimize=True)

    def _onsite_term(self) -> np.ndarray:
        """C⁰_i (m, 3, 3): the q = 0 sum over partners j, its Hermitian part (no prefactor)."""
        m = self.n_atoms
        total = self._ewald_sum(np.zeros((1, 3)), None)[0].reshape(m, 3, m, 3).sum(axis=2)
        return 0.5 * (total + total.conj().transpose(0, 2, 1))

    def dipole_matrices(self, qpoints: np.ndarray, q_directions: np.ndarray | None = None,
                        chunk: int = 64) -> np.ndarray:
        """C(q) (n_q, 3m, 3m) complex, eV/Å², not mass-weighted, in our D(q) phase convention.

        ``qpoints`` fractional in the reciprocal basis (n_q, 3); ``q_directions`` (n_q, 3) or (3,),
        fractional, the direction from which Γ is approached (used only where q is at Γ; a zero
        row means unknown: the K = 0 term is left out, as phonopy does without a direction).
        With ``fold_q`` each q is first moved into the first Brillouin zone (see the class).
        """
        q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
        if self.fold_q:
            q = _nearest_to_gamma(q, self.reciprocal)
        dirs = None
        if q_directions is not None:
            dirs = np.broadcast_to(np.asarray(q_directions, dtype=float).reshape(-1, 3), q.shape) @ self.reciprocal
        m = self.n_atoms
        prefactor = self.factor * 4.0 * np.pi / self.volume
        out = np.empty((len(q), 3 * m, 3 * m), dtype=complex)
        for a in range(0, len(q), chunk):
            b = min(len(q), a + chunk)
            block = self._ewald_sum(q[a:b] @ self.reciprocal, None if dirs is None else dirs[a:b])
            block = block.reshape(b - a, m, 3, m, 3)
            block[:, np.arange(m), :, np.arange(m), :] -= self._onsite[:, None]
            out[a:b] = prefactor * block.reshape(b - a, 3 * m, 3 * m)
        return out

    def mass_weighted(self, qpoints: np.ndarray, masses: np.ndarray,
                      q_directions: np.ndarray | None = None) -> np.ndarray:
        """C(q)/√(M_i M_j) (n_q, 3m, 3m) in eV/(Å²·amu): what the correction adds to D(q)."""
        inv = np.repeat(1.0 / np.sqrt(np.asarray(masses, dtype=float)), 3)
        return self.dipole_matrices(qpoints, q_directions) * np.outer(inv, inv)[None]

    def dynamical_term(self, fc: ForceConstants, qpoints: np.ndarray,
                       q_directions: np.ndarray | None = None) -> np.ndarray:
        """What the correction adds to D(q) of the short-range ``fc``: C(q)/√(M_i M_j), (n_q, 3m, 3m)."""
        return self.mass_weighted(qpoints, fc.masses.detach().cpu().numpy(), q_directions)

    def acting_qpoints(self, qpoints: np.ndarray, q_directions: np.ndarray | None = None) -> np.ndarray:
        """Indices of the q-points where :meth:`dynamical_term` may be non-zero: all of them."""
        return np.arange(len(np.asarray(qpoints).reshape(-1, 3)))

    # --- short-range force constants ---------------------------------------------------------

    def dipole_force_constants(self, src: np.ndarray, dst: np.ndarray, shift: np.ndarray,
                               supercell_matrix: np.ndarray) -> np.ndarray:
        """The dipole–dipole part Φᵈᵈ_ij(T) (E, 3, 3) in eV/Å² of the bonds (i, j, T), as the
        supercell sees it: C(q) at the supercell's commensurate q-points, transformed back.

        ``supercell_matrix`` (3, 3) integer: supercell lattice rows = M · cell lattice rows.
        Bonds that are images of one another in the supercell get the same value.
        """
        qc = _nearest_to_gamma(commensurate_qpoints(supercell_matrix), self.reciprocal)
        c = self.dipole_matrices(qc).reshape(len(qc), self.n_atoms, 3, self.n_atoms, 3)
        src, dst, shift = np.asarray(src), np.asarray(dst), np.asarray(shift, dtype=float)
        phase = np.exp(-2j * np.pi * qc @ shift.T)  # (n_q, E)
        pair = c[:, src, :, dst, :]  # (E, n_q, 3, 3)
        return np.einsum("qe,eqab->eab", phase, pair).real / len(qc)

    def short_range(self, fc: ForceConstants, supercell_matrix: np.ndarray) -> ForceConstants:
        """``fc`` minus its dipole–dipole part: the short-range force constants (phonopy's
        Gonze force constants) on the same bonds.

        ``fc`` holds the full force constants of a ``supercell_matrix`` supercell in the bond
        form of :func:`~vgnn_core.phonons.force_constants.from_phonopy` (each supercell pair
        shared equally among its bonds); the dipole constant of a pair is shared the same way,
        so ``D(q) = D[short_range](q) + C(q)/√(M_i M_j)`` reproduces phonopy's NAC frequencies.
        """
        return ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, self.short_range_blocks(fc, supercell_matrix))

    def short_range_blocks(self, fc: ForceConstants, supercell_matrix: np.ndarray) -> torch.Tensor:
        """The blocks of :meth:`short_range` (E, 3, 3), eV/Å², same dtype/device as ``fc``."""
        if fc.n_atoms != self.n_atoms:
            raise ValueError(f"force constants for {fc.n_atoms} atoms but the correction has {self.n_atoms}")
        src, dst, shift = fc.src.cpu().numpy(), fc.dst.cpu().numpy(), fc.shift.cpu().numpy()
        dd = self.dipole_force_constants(src, dst, shift, supercell_matrix)
        share = _images_per_pair(src, dst, shift, supercell_matrix, self.n_atoms)
        dd = torch.as_tensor(dd / share[:, None, None], dtype=fc.blocks.dtype, device=fc.blocks.device)
        return fc.blocks - dd


def long_wavelength_term(v: np.ndarray, born: np.ndarray, epsilon: np.ndarray, factor: float,
                         volume: float) -> np.ndarray:
    """The dipole field's q → 0 limit along Cartesian directions ``v`` (n, 3; any length):
    (4π e²/4πε₀ Ω) (Z_iᵀv)(Z_jᵀv)ᵀ / (v·ε∞·v), (n, 3m, 3m) in eV/Å² — the Ewald sum's G = 0
    term, which alone depends on the direction at Γ; zero where v = 0."""
    v = np.asarray(v, dtype=float).reshape(-1, 3)
    active = np.linalg.norm(v, axis=1) >= GAMMA_TOLERANCE
    vev = np.where(active, np.einsum("ni,ij,nj->n", v, epsilon, v), 1.0)
    zv = np.einsum("ni,aij->naj", v, born).reshape(len(v), -1)  # (Z_aᵀv)_β
    scale = factor * 4.0 * np.pi / volume * np.where(active, 1.0 / vev, 0.0)
    return scale[:, None, None] * zv[:, :, None] * zv[:, None, :]


class GammaJumpCorrection(NonAnalyticCorrection):
    """Only the non-analytic jump at Γ: C(Γ, q̂) − C(Γ), mass-weighted, added at q = 0 when a
    direction q̂ is given; nothing anywhere else.

    For force constants that already hold the analytic long-range part — a network fitted to
    DFPT bands, whose points near Γ carry it — adding the whole C(q) counts it twice; what no
    finite-range force constants can give is the direction-dependent LO–TO jump at Γ itself.
    The force constants are used as they are (they are the full ones): D(Γ) alone gives the TO
    modes, and every q ≠ 0 is left unchanged.

    Of the Ewald sum only its G = 0 term depends on q̂ as q → 0, so the jump is that term in
    closed form (:func:`long_wavelength_term`) over √(M_i M_j): no lattice sums (equal to the
    difference of the two Ewald sums to ~1e-14, tested).
    """

    def dynamical_term(self, fc: ForceConstants, qpoints: np.ndarray,
                       q_directions: np.ndarray | None = None) -> np.ndarray:
        q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
        m3 = 3 * self.n_atoms
        out = np.zeros((len(q), m3, m3), dtype=complex)
        rows = self.acting_qpoints(q, q_directions)
        if len(rows):
            d = np.broadcast_to(np.asarray(q_directions, dtype=float).reshape(-1, 3), q.shape)
            w = long_wavelength_term(d[rows] @ self.reciprocal, self.born, self.epsilon, self.factor, self.volume)
            inv = np.repeat(1.0 / np.sqrt(fc.masses.detach().cpu().numpy().astype(float)), 3)
            out[rows] = w * np.outer(inv, inv)[None]
        return out

    def acting_qpoints(self, qpoints: np.ndarray, q_directions: np.ndarray | None = None) -> np.ndarray:
        """Indices of the q-points where :meth:`dynamical_term` is non-zero: Γ approached from a
        direction (a path's Γ ends); a band path or a mesh needs the jump at a few points only."""
        q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
        if q_directions is None:
            return np.zeros(0, dtype=np.int64)
        d = np.broadcast_to(np.asarray(q_directions, dtype=float).reshape(-1, 3), q.shape)
        return np.flatnonzero((np.abs(q).max(axis=1) < GAMMA_TOLERANCE) & (np.linalg.norm(d, axis=1) > 0))

    def ewald_jump(self, fc: ForceConstants, q_directions: np.ndarray) -> np.ndarray:
        """The same jump as the difference of two Gonze–Lee Ewald sums at Γ, C(Γ, q̂) − C(Γ)
        (mass-weighted; the reference :meth:`dynamical_term` is checked against)."""
        d = np.asarray(q_directions, dtype=float).reshape(-1, 3)
        masses, zero = fc.masses.detach().cpu().numpy(), np.zeros((len(d), 3))
        return self.mass_weighted(zero, masses, d) - self.mass_weighted(zero, masses, None)


class WangCorrection:
    """Wang et al.'s mixed-space correction (phonopy's method ``'wang'``; J. Phys.: Condens.
    Matter 22, 202201 (2010)), added to the *full* force constants of a supercell.

    Every supercell force constant (i, s) gets ``W_ij(q̂)/N`` with
    ``W_ij = (4π e²/4πε₀ / Ω) (Z_iᵀq̂)(Z_jᵀq̂)ᵀ / (q̂·ε∞·q̂)`` and N the number of cells in the
    supercell ``supercell_matrix`` (lattice rows: supercell = M · cell); q̂ is the given direction
    when there is one, else q itself; at Γ without a direction nothing is added. Same units and
    arguments as :class:`NonAnalyticCorrection`.
    """

    def __init__(self, lattice: np.ndarray, born: np.ndarray, epsilon: np.ndarray, supercell_matrix: np.ndarray,
                 factor: float | None = None) -> None:
        self.lattice = np.array(lattice, dtype=float).reshape(3, 3)
        self.born = np.array(born, dtype=float)
        self.epsilon = np.array(epsilon, dtype=float).reshape(3, 3)
        if self.born.ndim != 3 or self.born.shape[1:] != (3, 3):
            raise ValueError(f"Born charges must have shape (n_atoms, 3, 3), got {self.born.shape}")
        self.supercell_matrix = np.rint(np.asarray(supercell_matrix, dtype=float)).reshape(3, 3)
        self.factor = COULOMB_EV_ANGSTROM if factor is None else float(factor)
        self.volume = abs(float(np.linalg.det(self.lattice)))
        self.reciprocal = np.linalg.inv(self.lattice).T

    @property
    def n_atoms(self) -> int:
        return int(self.born.shape[0])

    def acting_qpoints(self, qpoints: np.ndarray, q_directions: np.ndarray | None = None) -> np.ndarray:
        """Indices of the q-points where :meth:`dynamical_term` may be non-zero: all of them."""
        return np.arange(len(np.asarray(qpoints).reshape(-1, 3)))

    def dynamical_term(self, fc: ForceConstants, qpoints: np.ndarray,
                       q_directions: np.ndarray | None = None) -> np.ndarray:
        """What the correction adds to D(q) of the full ``fc`` (n_q, 3m, 3m), eV/(Å²·amu)."""
        if fc.n_atoms != self.n_atoms:
            raise ValueError(f"force constants for {fc.n_atoms} atoms but the correction has {self.n_atoms}")
        m = self.n_atoms
        q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
        v = q @ self.reciprocal
        if q_directions is not None:
            d = np.broadcast_to(np.asarray(q_directions, dtype=float).reshape(-1, 3), q.shape) @ self.reciprocal
            given = np.linalg.norm(d, axis=1) > 0
            v = np.where(given[:, None], d, v)
        w = long_wavelength_term(v, self.born, self.epsilon, self.factor, self.volume)
        # the phase sum of the pair (i, j) over its bonds, each supercell pair counted once
        src, dst, shift = fc.src.cpu().numpy(), fc.dst.cpu().numpy(), fc.shift.cpu().numpy()
        share = _images_per_pair(src, dst, shift, self.supercell_matrix, m)
        n_cells = round(abs(np.linalg.det(self.supercell_matrix)))
        phase = np.exp(2j * np.pi * q @ shift.T) / (share * n_cells)[None]  # (n_q, E)
        pair_sum = np.zeros((len(q), m * m), dtype=complex)
        np.add.at(pair_sum, (slice(None), src * m + dst), phase)
        pair_sum = np.repeat(np.repeat(pair_sum.reshape(len(q), m, m), 3, axis=1), 3, axis=2)
        inv = np.repeat(1.0 / np.sqrt(fc.masses.detach().cpu().numpy().astype(float)), 3)
        return w * pair_sum * np.outer(inv, inv)[None]


def commensurate_qpoints(supercell_matrix: np.ndarray) -> np.ndarray:
    """The |det M| q-points (fractional, in [0, 1)) of the cell commensurate with the supercell
    ``M`` (lattice rows: supercell = M · cell): those with M q integer."""
    mat = np.rint(np.asarray(supercell_matrix, dtype=float)).astype(int).reshape(3, 3)
    det = round(abs(np.linalg.det(mat)))
    if det == 0:
        raise ValueError("supercell matrix is singular")
    inv = np.linalg.inv(mat)
    # integer k = M f with f ∈ [0,1)³: the bounding box of the parallelepiped of M's columns
    low = np.minimum(mat, 0).sum(axis=1)
    high = np.maximum(mat, 0).sum(axis=1)
    k = np.array(list(itertools.product(*(range(lo, hi + 1) for lo, hi in zip(low, high)))), dtype=float)
    f = k @ inv.T
    keep = np.all((f > -1e-9) & (f < 1 - 1e-9), axis=1)
    q = np.mod(f[keep], 1.0)
    q[np.abs(q - 1.0) < 1e-9] = 0.0
    q = np.unique(np.round(q, 12), axis=0)
    if len(q) != det:
        raise ValueError(f"found {len(q)} commensurate q-points for a supercell of {det} cells")
    return q


def _nearest_to_gamma(q: np.ndarray, reciprocal: np.ndarray) -> np.ndarray:
    """Each q moved by the reciprocal-lattice vector that makes it shortest (the first BZ;
    on a zone boundary the first shortest in a fixed order, ties within 1e-9 Å⁻¹)."""
    q = q - np.rint(q)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
    cand = q[:, None, :] + shifts[None]
    length = np.linalg.norm(cand @ reciprocal, axis=-1)
    best = np.argmax(length <= length.min(axis=1, keepdims=True) + 1e-9, axis=1)
    return cand[np.arange(len(q)), best]


def _images_per_pair(src: np.ndarray, dst: np.ndarray, shift: np.ndarray, supercell_matrix: np.ndarray,
                     n_atoms: int) -> np.ndarray:
    """For every bond, how many bonds share its (i, j, T mod supercell)."""
    inv = np.linalg.inv(np.asarray(supercell_matrix, dtype=float))
    f = np.asarray(shift, dtype=float) @ inv  # supercell fractional coordinates of T
    cls = np.rint(np.mod(f, 1.0) * 1e6).astype(np.int64) % 1_000_000
    key = np.concatenate([np.asarray(src)[:, None] * n_atoms + np.asarray(dst)[:, None], cls], axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)].astype(float)


def path_q_directions(qpoints: np.ndarray, segments: Sequence[tuple[int, int]], lattice: np.ndarray) -> np.ndarray:
    """Direction of approach to Γ for every q-point of a band path (n, 3), fractional.

    As phonopy's band structure: a segment whose end points are collinear with Γ (it starts,
    ends or passes there) gives all its points the direction ``start − end``; other points get
    zeros (no direction). ``segments`` are inclusive index ranges (:class:`~.qpath.QPath`).
    """
    q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
    recip = np.linalg.inv(np.asarray(lattice, dtype=float)).T
    out = np.zeros_like(q)
    for a, b in segments:
        if np.linalg.norm(np.cross(q[a] @ recip, q[b] @ recip)) < GAMMA_TOLERANCE:
            out[a : b + 1] = q[a] - q[b]
    return out
