"""Table rows from library objects: structures, Γ spectra and band structures."""

from __future__ import annotations

import hashlib

import numpy as np
import spglib
from pymatgen.core import Structure

from vgnn_core.structures import spglib_cell


def structure_hash(structure: Structure, symprec: float = 1e-3) -> str:
    """A content hash that is the same for every cell of the same crystal.

    The crystal is reduced to spglib's standardised primitive cell (fixed orientation and
    setting), rounded (1e-3 Å, 1e-4 fractional), sorted, and hashed; a cell that spglib cannot
    standardise is hashed as given.
    """
    cell = spglib_cell(structure)
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    lattice, positions, numbers = std if std is not None else cell
    positions, numbers = np.asarray(positions, dtype=float), np.asarray(numbers)
    # The standard setting still leaves the origin free (e.g. the two inversion centres of
    # diamond): try every atom of the rarest species as the origin and keep the smallest text.
    counts = {z: int((numbers == z).sum()) for z in set(numbers.tolist())}
    anchor = min(counts, key=lambda z: (counts[z], z))
    lattice_text = ",".join(f"{x:.3f}" for x in np.round(np.asarray(lattice), 3).ravel() + 0.0)
    candidates = []
    for origin in positions[numbers == anchor]:
        p = np.round(np.mod(positions - origin, 1.0), 4) % 1.0
        order = np.lexsort((p[:, 2], p[:, 1], p[:, 0], numbers))
        candidates.append(",".join(str(int(numbers[k])) for k in order) + "|"
                          + ",".join(f"{x:.4f}" for x in p[order].ravel() + 0.0))
    return hashlib.sha256((lattice_text + "|" + min(candidates)).encode()).hexdigest()


def structure_row(structure: Structure, material_id: str) -> dict:
    """A ``structures`` row (OPTIMADE field names, Å)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=1e-3)
        number, symbol = int(sga.get_space_group_number()), sga.get_space_group_symbol()
    except Exception:  # noqa: BLE001 - spglib may fail on odd cells; P1 is then the honest answer
        number, symbol = 1, "P1"
    return {
        "material_id": material_id,
        "formula": structure.composition.reduced_formula,
        "elements": sorted({site.specie.symbol for site in structure}),
        "nsites": len(structure),
        "spacegroup_number": number,
        "spacegroup_symbol": symbol,
        "lattice_vectors": structure.lattice.matrix.tolist(),
        "species_at_sites": [site.specie.symbol for site in structure],
        "cartesian_site_positions": structure.cart_coords.tolist(),
        "structure_hash": structure_hash(structure),
    }


def gamma_row(material_id: str, model: str, model_sha256: str, frequencies_cm1: np.ndarray,
              uncertainty_cm1: float | None = None, in_domain: bool | None = None) -> dict:
    """A ``gamma`` row: sorted signed frequencies, their summary and how far to trust them."""
    w = np.sort(np.asarray(frequencies_cm1, dtype=float))
    acoustic = np.sort(np.abs(w))[:3]
    return {
        "material_id": material_id,
        "model": model,
        "model_sha256": model_sha256,
        "frequencies_cm1": w.astype(np.float32),
        "n_imaginary": int((w < -1e-2).sum()),
        "min_frequency_cm1": float(w.min()) if w.size else 0.0,
        "max_frequency_cm1": float(w.max()) if w.size else 0.0,
        "acoustic_residual_cm1": float(acoustic.max()) if w.size else 0.0,
        "uncertainty_cm1": uncertainty_cm1,
        "in_domain": in_domain,
    }


def bands_row(material_id: str, model: str, model_sha256: str, path, frequencies_cm1: np.ndarray,
              uncertainty_cm1: float | None = None, in_domain: bool | None = None) -> dict:
    """A ``bands`` row from a :class:`vgnn_core.QPath` and its (n_q, 3m) frequencies."""
    return {
        "material_id": material_id,
        "model": model,
        "model_sha256": model_sha256,
        "qpoints": np.asarray(path.qpoints, dtype=float),
        "distances_per_angstrom": np.asarray(path.distances, dtype=np.float32),
        "label_indices": [int(i) for i, _ in path.labels],
        "labels": [label for _, label in path.labels],
        "segment_breaks": [int(b) for b in path.breaks],
        "frequencies_cm1": np.asarray(frequencies_cm1, dtype=np.float32),
        "uncertainty_cm1": uncertainty_cm1,
        "in_domain": in_domain,
    }


#: Temperatures (K) of the ``thermo`` table.
THERMO_TEMPERATURES = np.array([0, 50, 100, 150, 200, 250, 298.15, 300, 400, 500, 600, 700, 800, 900, 1000], dtype=float)


def thermo_row(material_id: str, model: str, model_sha256: str, structure: Structure, mesh, thermal) -> dict:
    """A ``thermo`` row from :class:`vgnn_core.thermal.ThermalProperties` (per formula unit)."""
    per_fu = thermal.per_formula_unit()
    at300 = per_fu.at(300.0)
    return {
        "material_id": material_id,
        "model": model,
        "model_sha256": model_sha256,
        "formula_units": float(thermal.formula_units),
        "nsites": len(structure),
        "mesh": [int(n) for n in mesh.mesh],
        "temperatures_K": per_fu.temperatures.astype(np.float32),
        "heat_capacity_J_K_mol": per_fu.heat_capacity.astype(np.float32),
        "entropy_J_K_mol": per_fu.entropy.astype(np.float32),
        "free_energy_kJ_mol": per_fu.free_energy.astype(np.float32),
        "zero_point_energy_kJ_mol": float(per_fu.zero_point_energy),
        "heat_capacity_300K_J_K_mol": at300["heat_capacity"],
        "entropy_300K_J_K_mol": at300["entropy"],
        "imaginary_mode_fraction": thermal.n_imaginary / max(1, thermal.n_modes),
    }


def dos_row(material_id: str, model: str, model_sha256: str, mesh, dos) -> dict:
    """A ``dos`` row from a :class:`vgnn_core.dos.PhononDOS` on a uniform grid."""
    grid = np.asarray(dos.frequencies, dtype=float)
    step = float(grid[1] - grid[0]) if grid.size > 1 else 0.0
    return {
        "material_id": material_id,
        "model": model,
        "model_sha256": model_sha256,
        "mesh": [int(n) for n in mesh.mesh],
        "sigma_cm1": float(dos.sigma),
        "frequency_min_cm1": float(grid[0]) if grid.size else 0.0,
        "frequency_step_cm1": step,
        "total": np.asarray(dos.total, dtype=np.float32),
        "elements": list(dos.partial),
        "partial": [np.asarray(v, dtype=np.float32) for v in dos.partial.values()],
    }
