"""Table rows from library objects: structures, Γ spectra and band structures."""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce

import numpy as np
from pymatgen.core import Element, Structure

from vgnn_core.crystal.crystal import Crystal, as_crystal

#: Model kinds whose predictions carry ``phonon_method = "vgnn-<kind>"``.
MODEL_KINDS = ("kmvn", "mvn", "vvn")


def phonon_method(model_kind: str) -> str:
    """The ``phonon_method`` of a prediction by a model of this kind (``kmvn`` → ``vgnn-kmvn``)."""
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {model_kind!r}; kinds are {MODEL_KINDS}")
    return f"vgnn-{model_kind}"


def method_for(model: str, given: str | None = None) -> str | None:
    """``given``, else the method of a model named after its kind (the shipped ``kmvn``, ``mvn``)."""
    if given is not None:
        return given
    return phonon_method(model) if model in MODEL_KINDS else None


def _formula(counts: dict[str, int]) -> str:
    return "".join(f"{el}{n if n != 1 else ''}" for el, n in counts.items())


def _reduced_counts(species_at_sites: list[str]) -> dict[str, int]:
    counts = Counter(species_at_sites)
    divisor = reduce(math.gcd, counts.values())
    return {el: counts[el] // divisor for el in sorted(counts)}


def chemical_formula_reduced(species_at_sites: list[str]) -> str:
    """OPTIMADE's reduced formula: elements in alphabetical order, counts divided by their GCD
    (``PbTe``, ``O3SrTi``)."""
    return _formula(_reduced_counts(species_at_sites))


def _anonymous_symbol(k: int) -> str:
    """A, B, …, Z, Aa, Ba, …, Za, Ab, … (OPTIMADE's anonymous element names)."""
    head, rest = chr(ord("A") + k % 26), k // 26
    tail = ""
    while rest:
        rest, r = divmod(rest - 1, 26)
        tail += chr(ord("a") + r)
    return head + tail


def chemical_formula_anonymous(species_at_sites: list[str]) -> str:
    """OPTIMADE's anonymous formula: reduced counts in decreasing order named A, B, C… (``A3BC``)."""
    counts = sorted(_reduced_counts(species_at_sites).values(), reverse=True)
    return "".join(f"{_anonymous_symbol(k)}{n if n != 1 else ''}" for k, n in enumerate(counts))


def optimade_fields(species_at_sites: list[str]) -> dict:
    """The OPTIMADE structure fields that follow from the site species of an ordered bulk crystal."""
    counts = Counter(species_at_sites)
    elements = sorted(counts)
    n = len(species_at_sites)
    return {
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [counts[el] / n for el in elements],
        "chemical_formula_reduced": chemical_formula_reduced(species_at_sites),
        "chemical_formula_anonymous": chemical_formula_anonymous(species_at_sites),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "species": [{"name": el, "chemical_symbols": [el], "concentration": [1.0],
                     "mass": [float(Element(el).atomic_mass)]} for el in elements],
    }


def structure_hash(structure: Structure | Crystal) -> str:
    """A content hash that is the same for every cell of the same crystal (see
    :meth:`vgnn_core.crystal.symmetry.CrystalSymmetry.content_hash`)."""
    return as_crystal(structure).symmetry.content_hash()


def structure_row(crystal: Crystal | Structure, material_id: str) -> dict:
    """A ``structures`` row (OPTIMADE field names, Å), from the crystal's one symmetry analysis."""
    crystal = as_crystal(crystal, name=material_id)
    structure, symmetry = crystal.structure, crystal.symmetry
    species_at_sites = [site.specie.symbol for site in structure]
    return {
        "material_id": material_id,
        "formula": structure.composition.reduced_formula,
        "nsites": len(structure),
        "spacegroup_number": symmetry.spacegroup_number,
        "spacegroup_symbol": symmetry.spacegroup_symbol,
        "lattice_vectors": structure.lattice.matrix.tolist(),
        "species_at_sites": species_at_sites,
        "cartesian_site_positions": structure.cart_coords.tolist(),
        "structure_hash": symmetry.content_hash(),
        **optimade_fields(species_at_sites),
    }


#: Cartesian directions of approach to Γ over which ``lo_to_splitting_cm1`` is the largest.
LO_TO_DIRECTIONS = np.eye(3)
#: The LO–TO columns of a prediction without the correction.
NO_NAC = {"has_nac": False, "born_charges": None, "epsilon_inf": None, "lo_to_splitting_cm1": None}


def nac_columns(result) -> dict:
    """``has_nac``, ``born_charges`` (n×9, e), ``epsilon_inf`` (9) and ``lo_to_splitting_cm1`` of a
    :class:`vgnn_core.PhononResult`: the largest ω(Γ, q̂) − ω_TO over modes and q̂ = x, y, z (cm⁻¹).
    Without the correction: :data:`NO_NAC`."""
    if not getattr(result, "has_nac", False):
        return dict(NO_NAC)
    lattice = np.asarray(result.structure.lattice.matrix)
    split = float(result.lo_to_splitting(LO_TO_DIRECTIONS @ lattice.T).max())  # Cartesian → fractional q, solved together
    return {
        "has_nac": True,
        "born_charges": np.asarray(result.born_charges, dtype=np.float32).reshape(-1),
        "epsilon_inf": np.asarray(result.epsilon_inf, dtype=np.float32).reshape(-1),
        "lo_to_splitting_cm1": max(split, 0.0),
    }


def gamma_row(material_id: str, model: str, model_sha256: str, frequencies_cm1: np.ndarray,
              uncertainty_cm1: float | None = None, in_domain: bool | None = None,
              method: str | None = None, nac: dict | None = None, likely_unstable: bool | None = None) -> dict:
    """A ``gamma`` row: sorted signed frequencies, their summary and how far to trust them.

    ``method`` is the row's ``phonon_method`` (default: ``vgnn-<model>`` for a model named after
    its kind, else NULL); ``nac`` the LO–TO columns (:func:`nac_columns`; default: off)."""
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
        "likely_unstable": likely_unstable,
        "phonon_method": method_for(model, method),
        **(nac if nac is not None else NO_NAC),
    }


def bands_row(material_id: str, model: str, model_sha256: str, path, frequencies_cm1: np.ndarray,
              uncertainty_cm1: float | None = None, in_domain: bool | None = None,
              method: str | None = None, nac: dict | None = None, likely_unstable: bool | None = None) -> dict:
    """A ``bands`` row from a :class:`vgnn_core.QPath` and its (n_q, 3m) frequencies (cm⁻¹);
    ``nac`` the LO–TO columns (:func:`nac_columns`; default: off)."""
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
        "likely_unstable": likely_unstable,
        "phonon_method": method_for(model, method),
        **(nac if nac is not None else NO_NAC),
    }


def thermo_row(material_id: str, model: str, model_sha256: str, structure: Structure, mesh, thermal,
               method: str | None = None) -> dict:
    """A ``thermo`` row from :class:`vgnn_core.phonons.thermal.ThermalProperties` (per formula unit)."""
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
        "phonon_method": method_for(model, method),
    }


def dos_row(material_id: str, model: str, model_sha256: str, mesh, dos, method: str | None = None) -> dict:
    """A ``dos`` row from a :class:`vgnn_core.phonons.dos.PhononDOS` on a uniform grid."""
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
        "phonon_method": method_for(model, method),
    }
