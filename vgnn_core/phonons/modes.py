"""Phonon modes on many q-points: frequencies and how much each atom group moves in them.

The partial DOS needs, per mode, the weight ``Σ_{a∈group} Σ_α |e_{aα}|²`` of each group of
atoms (an element, a site); these are invariant to the phase convention of D(q). Matrices are
built and diagonalised in memory-bounded chunks and only the small projections are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .centrosymmetric import InversionPairs, centrosymmetric_matrices, prepared_pairs
from .dynamical_matrix import dynamical_matrices, eigenvalues_to_cm1
from .force_constants import ForceConstants
from .nac import NonAnalyticCorrection

if TYPE_CHECKING:
    from ..crystal.symmetry import Inversion


def modes(
    fc: ForceConstants,
    qpoints: np.ndarray | torch.Tensor,
    groups: np.ndarray | None = None,
    max_bytes: int = 256 * 2**20,
    nac: NonAnalyticCorrection | None = None,
    inversion: Inversion | InversionPairs | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Signed frequencies (cm⁻¹, (n_q, 3m)) and, with ``groups``, projections (n_q, 3m, n_groups).

    ``nac``: a dipole–dipole correction added to D(q) (``fc`` then short-range; see
    :func:`~vgnn_core.phonons.dynamical_matrix.dynamical_matrices`; Γ without a direction: TO).

    ``groups[a]`` is the group index of atom ``a`` (e.g. its element); the projections of each
    mode sum to one over the groups.

    ``inversion`` (of the force constants' cell, :class:`~vgnn_core.crystal.symmetry.Inversion`):
    D(q) is solved in its real form (:mod:`~vgnn_core.phonons.centrosymmetric`: the force
    constants made exactly inversion-symmetric), unless the force constants, masses or Born
    charges break the inversion (:func:`~vgnn_core.phonons.centrosymmetric.inversion_pairs`) or
    a group splits a pair of inversion partners (then the projections would need the complex
    eigenvectors); :class:`~vgnn_core.phonons.centrosymmetric.InversionPairs` already prepared for
    these force constants are taken as they are.
    """
    fc = fc.cpu().to(torch.float64)
    q = torch.as_tensor(np.asarray(qpoints, dtype=float).reshape(-1, 3), dtype=torch.float64)
    dim = 3 * fc.n_atoms
    step = max(1, int(max_bytes // (3 * 16 * dim * dim)))
    freqs, projections = [], []
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
        n_groups = int(groups.max()) + 1
        selector = torch.zeros(dim, n_groups, dtype=torch.float64)
        selector[torch.arange(dim), torch.as_tensor(np.repeat(groups, 3))] = 1.0
        if inversion is not None and not np.array_equal(groups, groups[np.asarray(inversion.partner)]):
            inversion = None
    pairs = None if inversion is None else prepared_pairs(fc, inversion, nac)
    rows = None if groups is None else selector if pairs is None else selector[pairs.column_components]
    for start in range(0, q.shape[0], step):
        chunk = q[start : start + step]
        if pairs is None:
            mats = dynamical_matrices(fc, chunk, nac=nac)
        else:  # a real eigenvector's weight on a pair's two columns is the pair's |e|²
            mats = centrosymmetric_matrices(fc, pairs, chunk, nac=nac)
        if groups is None:
            freqs.append(eigenvalues_to_cm1(torch.linalg.eigvalsh(mats)))
            continue
        lam, vec = torch.linalg.eigh(mats)
        freqs.append(eigenvalues_to_cm1(lam))
        # |e|² summed within each group: (nq, dim, modes) → (nq, modes, groups)
        projections.append(torch.einsum("qdn,dg->qng", vec.abs() ** 2, rows))
    f = torch.cat(freqs).numpy() if freqs else np.zeros((0, dim))
    p = torch.cat(projections).numpy() if projections else None
    return f, p
