"""A material ready for training or evaluation: its crystal graph and its reference targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..crystal.graph import CrystalGraph


@dataclass
class PhononSample:
    """A material ready for training: its crystal graph and its DFPT targets (cm⁻¹)."""

    material_id: str
    graph: CrystalGraph
    qpoints: np.ndarray  # (n_q, 3)
    bands: np.ndarray  # (n_q, 3m)
    gamma: np.ndarray | None  # (3m,) at the first Γ of the path; None when it has no Γ
    cv_300k: float | None = None  # J/K/mol per formula unit, from the thermo block
    #: graph edges with a DFT force-constant block (phonondb force sets), and those blocks (eV/Å²)
    block_edges: np.ndarray | None = None  # (K,)
    block_values: np.ndarray | None = None  # (K, 3, 3)
    source: str = "petretto2018"
    #: primitive cells in the DFT supercell of a phonondb force set (as many as its commensurate q-points,
    #: where the reference is exact; the path between them is phonopy's interpolation); None for DFPT data
    supercell_cells: int | None = None

    @property
    def n_atoms(self) -> int:
        return self.graph.n_atoms
