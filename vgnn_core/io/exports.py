"""Predictions in the objects and files of pymatgen and phonopy.

* :func:`to_pymatgen_band_structure` → ``PhononBandStructureSymmLine`` (THz, as pymatgen uses)
* :func:`to_pymatgen_dos` → ``PhononDos`` (total) and one per element
* :func:`write_band_yaml` → phonopy's ``band.yaml`` (readable by phonopy tools and
  ``pymatgen.io.phonopy.get_ph_bs_symm_line``)
* :func:`write_phonopy_force_constants` → ``phonopy.yaml`` + ``FORCE_CONSTANTS`` that
  ``phonopy.load`` reads back, so any phonopy analysis runs on a prediction
* :func:`write_born_file` → phonopy's ``BORN`` (ε∞ and the Z* of the symmetry-independent atoms)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ..phonons.dos import PhononDOS
from ..phonons.force_constants import ForceConstants
from ..phonons.qpath import QPath, reciprocal_lattice
from ..phonons.units import THZ_TO_CM1


def pretty_label(label: str) -> str:
    """seekpath's ``GAMMA`` / ``X_1`` → ``Γ`` / ``X₁``."""
    if label.upper() == "GAMMA":
        return "Γ"
    base, _, sub = label.partition("_")
    digits = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    return base + sub.translate(digits)


def to_pymatgen_band_structure(structure, qpath: QPath, frequencies_cm1: np.ndarray, has_nac: bool = False):
    """A pymatgen ``PhononBandStructureSymmLine`` of a predicted band structure.

    ``has_nac``: the bands carry the LO–TO splitting, each Γ point of the path approached along
    its own segment (as phonopy writes them with NAC); pymatgen then lists those Γ frequencies
    per direction in ``nac_frequencies`` (directions fractional, from the neighbouring q-point).
    """
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine

    labels = {pretty_label(name): np.asarray(q) for name, q in qpath.special_points.items()}
    for index, name in qpath.labels:  # points used by the path, in case seekpath renamed them
        labels.setdefault(pretty_label(name), qpath.qpoints[index])
    return PhononBandStructureSymmLine(
        qpoints=qpath.qpoints,
        frequencies=np.asarray(frequencies_cm1, dtype=float).T / THZ_TO_CM1,
        lattice=structure.lattice.reciprocal_lattice,
        labels_dict=labels,
        coords_are_cartesian=False,
        structure=structure,
        has_nac=has_nac,
    )


def to_pymatgen_dos(dos: PhononDOS):
    """``(total, {element: partial})`` as pymatgen ``PhononDos`` objects (THz, states/THz)."""
    from pymatgen.phonon.dos import PhononDos

    thz = dos.to_thz()
    return PhononDos(thz.frequencies, thz.total), {k: PhononDos(thz.frequencies, v) for k, v in thz.partial.items()}


def write_band_yaml(path: str | Path, structure, qpath: QPath, frequencies_cm1: np.ndarray) -> Path:
    """Write phonopy's ``band.yaml`` (frequencies in THz, distances in Å⁻¹ without 2π)."""
    path = Path(path)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    recip = reciprocal_lattice(lattice) / (2 * np.pi)
    freqs = np.asarray(frequencies_cm1, dtype=float) / THZ_TO_CM1
    label_at = dict(qpath.labels)
    segment_sizes = [b - a + 1 for a, b in qpath.segments]
    # phonopy's distances are continuous along the path and exclude 2π
    distances = np.asarray(qpath.distances, dtype=float) / (2 * np.pi)
    doc = {
        "calculator": "vgnn",
        "nqpoint": int(len(freqs)),
        "npath": len(qpath.segments),
        "segment_nqpoint": segment_sizes,
        "labels": [[label_at[a], label_at[b]] for a, b in qpath.segments],
        "reciprocal_lattice": recip.tolist(),
        "natom": len(structure),
        "lattice": lattice.tolist(),
        "points": [
            {"symbol": site.specie.symbol, "coordinates": [float(x) for x in site.frac_coords],
             "mass": float(site.specie.atomic_mass)}
            for site in structure
        ],
        "phonon": [],
    }
    for k, q in enumerate(qpath.qpoints):
        entry = {"q-position": [float(x) for x in q], "distance": float(distances[k])}
        if k in label_at:
            entry["label"] = label_at[k]
        entry["band"] = [{"frequency": float(f)} for f in freqs[k]]
        doc["phonon"].append(entry)
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return path


def write_phonopy_force_constants(
    fc: ForceConstants, structure, directory: str | Path, supercell_matrix: np.ndarray | None = None
) -> tuple[Path, Path]:
    """Write ``phonopy.yaml`` (cell, supercell, masses) and ``FORCE_CONSTANTS`` into ``directory``.

    ``phonopy.load(directory / "phonopy.yaml", force_constants_filename=directory /
    "FORCE_CONSTANTS")`` gives back the prediction's frequencies at every q.
    """
    from phonopy.file_IO import write_FORCE_CONSTANTS

    from .phonopy import to_phonopy

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    phonon = to_phonopy(fc, structure, supercell_matrix)
    fc_path, yaml_path = directory / "FORCE_CONSTANTS", directory / "phonopy.yaml"
    write_FORCE_CONSTANTS(phonon.force_constants, filename=fc_path, p2s_map=phonon.primitive.p2s_map)
    phonon.save(yaml_path, settings={"force_constants": False})
    return yaml_path, fc_path


def write_born_file(path: str | Path, structure, born, symprec: float = 1e-5) -> Path:
    """Write phonopy's ``BORN`` file of ``structure`` (taken as the primitive cell) from ``born``
    (:class:`~vgnn_core.phonons.nac.BornCharges`: Z* per atom in e, ε∞): ε∞ and the charges of
    the symmetry-independent atoms, symmetrised by phonopy's own writer; no unit-factor line, so
    phonopy applies its default for the calculator (14.4 eV·Å for VASP).

    ``phonopy.load(..., born_filename=path)`` then reads the same charges back. Note that
    phonopy's NAC adds the *whole* dipole–dipole term, for short-range force constants; the
    network's force constants already hold the long-range part away from Γ (see the README).
    """
    from phonopy.file_IO import get_BORN_lines
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(symbols=[site.specie.symbol for site in structure],
                        cell=np.asarray(structure.lattice.matrix, dtype=float),
                        scaled_positions=np.asarray(structure.frac_coords, dtype=float))
    lines = get_BORN_lines(cell, np.asarray(born.born, dtype=float), np.asarray(born.epsilon, dtype=float),
                           primitive_matrix=np.eye(3), supercell_matrix=np.eye(3, dtype=int), symprec=symprec)
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
