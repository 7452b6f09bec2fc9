"""Everything a k-MVN prediction gives for one crystal: Γ modes, bands, DOS, thermal properties.

:func:`phonon_properties` turns force constants into a :class:`PhononResult`;
:meth:`vgnn_core.Predictor.predict_phonons` runs the network batched and calls it per crystal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..crystal.crystal import as_crystal
from .dos import DEFAULT_SIGMA_CM1, PhononDOS, phonon_dos
from .dynamical_matrix import band_frequencies, gamma_frequencies
from .force_constants import ForceConstants
from .mesh import DEFAULT_MESH_DENSITY, QMesh, mesh_for
from .modes import modes
from .qpath import QPath, high_symmetry_path
from .thermal import ThermalProperties, thermal_properties


@dataclass
class PhononResult:
    """Predicted phonons of one crystal (frequencies in cm⁻¹; see each field's module)."""

    name: str
    structure: object  # pymatgen Structure
    gamma: np.ndarray  # (3m,)
    qpath: QPath | None = None
    bands: np.ndarray | None = None  # (n_q, 3m) along qpath
    mesh: QMesh | None = None
    dos: PhononDOS | None = None
    thermal: ThermalProperties | None = None
    force_constants: ForceConstants | None = None
    #: expected per-material MAE (cm⁻¹) from an ensemble's spread, calibrated on val; None
    #: for a single network
    uncertainty_cm1: float | None = None
    #: elements, cell size and bonding all seen in training (None: the model records no domain)
    in_domain: bool | None = None
    #: why the crystal is outside the training domain (None when inside or unknown)
    domain_note: str | None = None

    def summary(self, temperature: float = 300.0) -> dict:
        """The headline numbers: Γ modes, extremes, C_v / S / F at ``temperature``, ZPE."""
        out = {
            "name": self.name,
            "formula": self.structure.composition.reduced_formula,
            "n_atoms": len(self.structure),
            "gamma_cm1": [round(float(w), 3) for w in self.gamma],
            "max_frequency_cm1": float(np.max(self.bands if self.bands is not None else self.gamma)),
            "min_frequency_cm1": float(np.min(self.bands if self.bands is not None else self.gamma)),
            "uncertainty_cm1": None if self.uncertainty_cm1 is None else round(float(self.uncertainty_cm1), 2),
            "in_domain": self.in_domain,
        }
        if self.domain_note:
            out["domain_note"] = self.domain_note
        if self.thermal is not None:
            per_fu = self.thermal.per_formula_unit()
            at = per_fu.at(temperature)
            out.update({
                "temperature_K": temperature,
                "formula_units": self.thermal.formula_units,
                "heat_capacity_J_K_mol_fu": at["heat_capacity"],
                "entropy_J_K_mol_fu": at["entropy"],
                "free_energy_kJ_mol_fu": at["free_energy"],
                "zero_point_energy_kJ_mol_fu": per_fu.zero_point_energy,
                "imaginary_mode_fraction": self.thermal.n_imaginary / max(1, self.thermal.n_modes),
            })
        return out


def element_groups(structure) -> tuple[np.ndarray, list[str]]:
    """Per-atom group index by element (in order of first appearance) and the element names."""
    names: list[str] = []
    index = []
    for site in structure:
        symbol = site.specie.symbol
        if symbol not in names:
            names.append(symbol)
        index.append(names.index(symbol))
    return np.asarray(index), names


def formula_units(structure) -> float:
    """Formula units of pymatgen's reduced formula in the cell.

    Usually an integer; a half where pymatgen writes a molecule-like formula the cell holds
    half of (a one-atom hydrogen cell is ½ H₂, a LiO cell ½ Li₂O₂)."""
    return float(structure.composition.get_reduced_composition_and_factor()[1])


def mesh_properties(
    fc: ForceConstants,
    structure,
    mesh: tuple[int, int, int] | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    temperatures: np.ndarray | None = None,
    sigma: float = DEFAULT_SIGMA_CM1,
    partial: bool = True,
    symmetry: bool = True,
) -> tuple[QMesh, PhononDOS, ThermalProperties]:
    """DOS (with per-element partial DOS) and thermal properties on a Γ-centred mesh, reduced
    to its irreducible points by the crystal's point group (``symmetry``) and time reversal."""
    crystal = as_crystal(structure)
    structure = crystal.structure
    qmesh = crystal_mesh(crystal, mesh, density, symmetry)
    groups, names = element_groups(structure)
    freqs, proj = modes(fc, qmesh.qpoints, groups=groups if partial else None)
    dos = phonon_dos(freqs, qmesh.weights, sigma=sigma, projections=proj, group_names=names)
    thermal = thermal_properties(freqs, qmesh.weights, temperatures, formula_units(structure))
    return qmesh, dos, thermal


def crystal_mesh(
    structure,
    mesh: tuple[int, int, int] | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    symmetry: bool = True,
) -> QMesh:
    """The Γ-centred mesh of ``structure`` (``mesh`` or from ``density``), reduced to its
    irreducible points by the point group (``symmetry``) and time reversal."""
    crystal = as_crystal(structure)
    rotations = crystal.mesh_rotations if symmetry else None
    return mesh_for(np.asarray(crystal.structure.lattice.matrix), density=density, mesh=mesh, rotations=rotations)


def mesh_thermal(
    fcs: Sequence[ForceConstants],
    structures: Sequence,
    temperatures: np.ndarray | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    symmetry: bool = True,
) -> list[tuple[QMesh, ThermalProperties]]:
    """Thermal properties alone (no DOS, no eigenvectors) of many crystals; their mesh
    eigen-solves share batched calls. Equal to :func:`mesh_properties`' thermal part."""
    crystals = [as_crystal(s) for s in structures]
    structures = [c.structure for c in crystals]
    meshes = [crystal_mesh(c, density=density, symmetry=symmetry) for c in crystals]
    freqs = band_frequencies([fc.cpu().to(torch.float64) for fc in fcs],
                             [torch.as_tensor(m.qpoints, dtype=torch.float64) for m in meshes])
    return [
        (m, thermal_properties(f.numpy(), m.weights, temperatures, formula_units(s)))
        for m, f, s in zip(meshes, freqs, structures)
    ]


def phonon_properties(
    fc: ForceConstants,
    structure,
    name: str = "",
    qpath: QPath | None = None,
    bands: bool = True,
    thermal: bool = True,
    **mesh_options,
) -> PhononResult:
    """Γ modes, the band structure along the high-symmetry path (``bands``) and the DOS and
    thermal properties on a q-mesh (``thermal``; ``mesh_options`` go to :func:`mesh_properties`)."""
    fc = fc.cpu().to(torch.float64)
    crystal = as_crystal(structure)
    structure = crystal.structure
    result = PhononResult(name or structure.composition.reduced_formula, structure,
                          gamma_frequencies([fc])[0].numpy(), force_constants=fc)
    if bands:
        result.qpath = qpath or high_symmetry_path(structure)
        result.bands = band_frequencies([fc], [torch.as_tensor(result.qpath.qpoints)])[0].numpy()
    if thermal:
        result.mesh, result.dos, result.thermal = mesh_properties(fc, crystal, **mesh_options)
    return result
