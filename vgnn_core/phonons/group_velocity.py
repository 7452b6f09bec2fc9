"""Group velocities from the analytic derivative of D(q), and sound velocities.

With Cartesian wave vectors ``q`` in Å⁻¹ (no 2π, phonopy's convention) and bond vectors
``R = T·A`` (Å), ``D(q) = Σ_T D_T exp(2πi q·R)`` and

    ∂D/∂q_c = Σ_T 2πi R_c D_T exp(2πi q·R),    v_ν = ∂ν/∂q = (∂λ/∂q) · F² / (2ν)

where ``ν = F·√λ`` is the frequency in THz; ``v`` comes out in THz·Å (= 100 m/s), the
physical group velocity ``∂ω/∂k``. Within a set of degenerate modes the derivative is first
diagonalised along a generic direction, then its diagonal is read along x, y, z — phonopy's
rule, so the two agree mode by mode. Velocities are not averaged over the little group of q
(phonopy's ``run_qpoints`` does that, which zeroes the ±v pairs of degenerate bands crossing
at zone-boundary points).
"""

from __future__ import annotations

import numpy as np
import torch

from .dynamical_matrix import eigenvalues_to_cm1
from .force_constants import ForceConstants
from .units import EV_ANGSTROM2_AMU_TO_THZ, THZ_TO_CM1

#: Modes closer than this (THz) are treated as degenerate (phonopy's default).
DEGENERACY_TOLERANCE_THZ: float = 1e-4
#: THz·Å → km/s.
THZ_ANGSTROM_TO_KM_S: float = 0.1
#: The direction (Cartesian) that lifts degeneracies, as in phonopy.
_GENERIC_DIRECTION = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)


def _matrix_and_derivatives(fc: ForceConstants, lattice: np.ndarray, q: torch.Tensor) -> torch.Tensor:
    """D(q) and ∂D/∂q along (generic, x, y, z): a complex (n_q, 5, 3m, 3m) tensor."""
    m = fc.n_atoms
    weighted = fc.mass_weighted_blocks().reshape(-1, 9).to(torch.complex128)
    shift = fc.shift.to(torch.float64)
    bond_cart = shift @ torch.as_tensor(np.array(lattice, dtype=float))  # (E, 3) Å
    directions = torch.as_tensor(np.vstack([_GENERIC_DIRECTION, np.eye(3)]), dtype=torch.float64)
    factors = torch.cat(
        [torch.ones(1, bond_cart.shape[0], dtype=torch.complex128),
         2j * torch.pi * (directions @ bond_cart.T).to(torch.complex128)]
    )  # (5, E)
    angle = 2 * torch.pi * (q @ shift.T)
    phase = torch.complex(torch.cos(angle), torch.sin(angle))  # (nq, E)
    contrib = phase[:, None, :, None] * factors[None, :, :, None] * weighted[None, None]  # (nq,5,E,9)
    acc = torch.zeros(q.shape[0], 5, m * m, 9, dtype=torch.complex128)
    acc.index_add_(2, fc.src * m + fc.dst, contrib)
    return acc.reshape(q.shape[0], 5, m, m, 3, 3).permute(0, 1, 2, 4, 3, 5).reshape(q.shape[0], 5, 3 * m, 3 * m)


def group_velocities(
    fc: ForceConstants,
    lattice: np.ndarray,
    qpoints: np.ndarray,
    max_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cm⁻¹, (n_q, 3m)) and group velocities (THz·Å, (n_q, 3m, 3)).

    ``lattice`` holds the cell vectors as rows (Å); ``qpoints`` are fractional. Modes at zero
    or imaginary frequency get zero velocity.
    """
    fc = fc.cpu().to(torch.float64)
    lattice = np.asarray(lattice, dtype=float)
    q_all = torch.as_tensor(np.asarray(qpoints, dtype=float).reshape(-1, 3), dtype=torch.float64)
    dim = 3 * fc.n_atoms
    step = max(1, int(max_bytes // (6 * 16 * dim * dim + 5 * 9 * 16 * fc.n_bonds)))
    freqs_out, gv_out = [], []
    for start in range(0, q_all.shape[0], step):
        mats = _matrix_and_derivatives(fc, lattice, q_all[start : start + step])
        lam, vec = torch.linalg.eigh(mats[:, 0])
        projected = vec.conj().transpose(-1, -2)[:, None] @ mats[:, 1:] @ vec[:, None]  # (nq,4,d,d)
        nu = (eigenvalues_to_cm1(lam) / THZ_TO_CM1).numpy()
        projected = projected.numpy()
        dlam = np.empty((nu.shape[0], dim, 3))
        for k in range(nu.shape[0]):
            dlam[k] = _degenerate_derivatives(nu[k], projected[k])
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(nu > 0, EV_ANGSTROM2_AMU_TO_THZ**2 / (2 * nu), 0.0)
        gv_out.append(dlam * scale[:, :, None])
        freqs_out.append(nu * THZ_TO_CM1)
    return np.concatenate(freqs_out), np.concatenate(gv_out)


def _degenerate_derivatives(nu: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """∂λ/∂q (x, y, z) of each mode at one q; degenerate sets treated by perturbation theory."""
    out = np.empty((nu.size, 3))
    start = 0
    while start < nu.size:
        end = start + 1
        while end < nu.size and abs(nu[end] - nu[end - 1]) < DEGENERACY_TOLERANCE_THZ:
            end += 1
        if end - start == 1:
            out[start] = projected[1:, start, start].real
        else:
            block = slice(start, end)
            _, u = np.linalg.eigh(projected[0][block, block])
            for c in range(3):
                rotated = u.conj().T @ projected[1 + c][block, block] @ u
                out[block, c] = np.diag(rotated).real
        start = end
    return out


def sound_velocities(
    fc: ForceConstants,
    lattice: np.ndarray,
    directions: np.ndarray | None = None,
    dq: float = 1e-3,
) -> np.ndarray:
    """Acoustic slopes at Γ along Cartesian ``directions`` (default [100], [110], [111]).

    The slope ``ν(q)/|q|`` at ``|q| = dq`` and ``dq/2`` (Å⁻¹), Richardson-extrapolated to
    ``q → 0`` (error O(dq⁴)). Returns (n_dir, 3) in km/s, sorted (for an isotropic medium:
    two transverse, then longitudinal).
    """
    from .dynamical_matrix import band_frequencies

    d = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=float) if directions is None else np.asarray(directions, float)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    lattice = np.asarray(lattice, dtype=float)
    slopes = []
    for h in (dq, dq / 2):
        q_frac = (d * h) @ lattice.T  # fractional = A · q_cart
        freqs = band_frequencies([fc.to(torch.float64)], [torch.as_tensor(q_frac)])[0].numpy()
        slopes.append(np.sort(freqs[:, :3], axis=1) / THZ_TO_CM1 / h)
    return (4 * slopes[1] - slopes[0]) / 3 * THZ_ANGSTROM_TO_KM_S
