"""Phonon modes on many q-points: frequencies and how much each atom group moves in them.

The partial DOS needs, per mode, the weight ``Σ_{a∈group} Σ_α |e_{aα}|²`` of each group of
atoms (an element, a site); these are invariant to the phase convention of D(q). Matrices are
built and diagonalised in memory-bounded chunks and only the small projections are kept.
"""

from __future__ import annotations

import numpy as np
import torch

from .dynamical_matrix import dynamical_matrices, eigenvalues_to_cm1
from .force_constants import ForceConstants
from .nac import NonAnalyticCorrection


def modes(
    fc: ForceConstants,
    qpoints: np.ndarray | torch.Tensor,
    groups: np.ndarray | None = None,
    max_bytes: int = 256 * 2**20,
    nac: NonAnalyticCorrection | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Signed frequencies (cm⁻¹, (n_q, 3m)) and, with ``groups``, projections (n_q, 3m, n_groups).

    ``nac``: a dipole–dipole correction added to D(q) (``fc`` then short-range; see
    :func:`~vgnn_core.phonons.dynamical_matrix.dynamical_matrices`; Γ without a direction: TO).

    ``groups[a]`` is the group index of atom ``a`` (e.g. its element); the projections of each
    mode sum to one over the groups.
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
    for start in range(0, q.shape[0], step):
        mats = dynamical_matrices(fc, q[start : start + step], nac=nac)
        if groups is None:
            freqs.append(eigenvalues_to_cm1(torch.linalg.eigvalsh(mats)))
            continue
        lam, vec = torch.linalg.eigh(mats)
        freqs.append(eigenvalues_to_cm1(lam))
        # |e|² summed within each group: (nq, dim, modes) → (nq, modes, groups)
        projections.append(torch.einsum("qdn,dg->qng", vec.abs() ** 2, selector))
    f = torch.cat(freqs).numpy() if freqs else np.zeros((0, dim))
    p = torch.cat(projections).numpy() if projections else None
    return f, p
