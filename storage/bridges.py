"""From database rows to the objects of pymatgen, phonopy and emmet, one call each.

The database keeps its own conventions (see :mod:`storage.schema`): frequencies in cm⁻¹ as
``[q][band]``, path distances in Å⁻¹ with 2π, thermodynamics per mole of formula units with
energies in kJ. The bridges return the conventions of the receiving library:

* :func:`structure` → pymatgen ``Structure`` (Å), exactly the stored cell;
* :func:`band_structure` → pymatgen ``PhononBandStructureSymmLine``: THz, ``[band][q]``,
  q-points fractional in the stored cell's reciprocal basis, labels as ``Γ``, ``X``, ``K₁``…;
  its distances equal the stored ``distances_per_angstrom`` (pymatgen includes 2π; phonopy's
  ``band.yaml`` does not: :func:`write_band_yaml` divides by 2π);
* :func:`dos` / :func:`element_dos` → pymatgen ``PhononDos`` (THz, states/THz per cell);
* :func:`thermo` → :class:`CellThermo`, per mole of *cells* with energies in J (pymatgen's
  ``PhononDos.cv`` / ``entropy`` / ``helmholtz_free_energy`` without ``structure``; phonopy's
  per-cell values, with phonopy's kJ/mol free energy ×1000);
* :func:`emmet_document` → a dict with the field names and units of emmet's ``PhononBSDOSDoc``
  (no emmet needed); :func:`emmet_model` validates it into emmet's class when emmet-core is
  installed.

``where`` is anything :func:`storage.catalog.connect` opens (a database root, a release folder
or URL, a :class:`~storage.release.Release`) or an open connection from it, to reuse one for
many materials::

    >>> from pymatgen.phonon.plotter import PhononBSPlotter
    >>> PhononBSPlotter(band_structure("demo-db", "demo-Si-diamond")).get_plot()
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from vgnn_core.io.exports import pretty_label, to_pymatgen_band_structure, to_pymatgen_dos
from vgnn_core.phonons.dos import PhononDOS
from vgnn_core.phonons.qpath import QPath
from vgnn_core.phonons.units import THZ_TO_CM1

from .catalog import connect
from .release import Release
from .rows import method_for

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
    from pymatgen.phonon.dos import PhononDos

#: seekpath's HPKOT path is what pymatgen's ``HighSymmKpath`` calls the ``hinuma`` convention.
PATH_CONVENTION = "hinuma"


class MaterialNotFoundError(LookupError):
    """No row for this material (and model) in a table of the release."""


@contextmanager
def _connection(where) -> Iterator[duckdb.DuckDBPyConnection]:
    if isinstance(where, duckdb.DuckDBPyConnection):
        yield where
        return
    con = connect(where)
    try:
        yield con
    finally:
        con.close()


def _row(con: duckdb.DuckDBPyConnection, table: str, material_id: str, model: str | None, columns: str) -> dict:
    """The one row of ``table`` for the material (and model); a one-line error otherwise."""
    sql = f"SELECT {columns} FROM {table} WHERE material_id = ?"
    params = [material_id]
    if model is not None and table != "structures":
        sql += " AND model = ?"
        params.append(model)
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if len(rows) == 1:
        return dict(zip(names, rows[0]))
    if not rows:
        models = [m for (m,) in con.execute(f"SELECT DISTINCT model FROM {table} WHERE material_id = ?",
                                             [material_id]).fetchall()] if table != "structures" else []
        hint = f" (models there: {sorted(models)})" if models else ""
        raise MaterialNotFoundError(f"{material_id}: no {table} row" + (f" for model {model!r}" if model else "") + hint)
    raise LookupError(f"{material_id}: {len(rows)} {table} rows; pass model= to choose one")


def _structure_from_row(row: dict) -> Structure:
    from pymatgen.core import Structure

    return Structure(np.asarray(row["lattice_vectors"], dtype=float), list(row["species_at_sites"]),
                     np.asarray(row["cartesian_site_positions"], dtype=float), coords_are_cartesian=True)


_STRUCTURE_COLUMNS = "lattice_vectors, species_at_sites, cartesian_site_positions"


def structure(where, material_id: str) -> Structure:
    """The stored crystal as a pymatgen ``Structure`` (Å, the cell the phonons refer to)."""
    with _connection(where) as con:
        return _structure_from_row(_row(con, "structures", material_id, None, _STRUCTURE_COLUMNS))


def qpath_from_row(row: dict) -> QPath:
    """A :class:`~vgnn_core.phonons.qpath.QPath` from a ``bands`` row's path columns."""
    qpoints = np.asarray(row["qpoints"], dtype=float).reshape(-1, 3)
    labels = list(zip((int(i) for i in row["label_indices"]), row["labels"]))
    ends = [i for i, _ in labels]
    return QPath(
        qpoints=qpoints,
        distances=np.asarray(row["distances_per_angstrom"], dtype=float),
        labels=labels,
        segments=list(zip(ends[0::2], ends[1::2])),  # every segment holds both its labelled ends
        breaks=[int(b) for b in row["segment_breaks"]],
        special_points={name: qpoints[i] for i, name in labels},
    )


_BANDS_COLUMNS = ("qpoints, distances_per_angstrom, label_indices, labels, segment_breaks, frequencies_cm1, "
                  "model, model_sha256, phonon_method, has_nac")


def band_structure(where, material_id: str, model: str | None = None) -> PhononBandStructureSymmLine:
    """The material's band structure as a pymatgen ``PhononBandStructureSymmLine`` (THz,
    ``[band][q]``), on the stored path and cell; ``model`` picks a row when several exist. A row
    with the LO–TO splitting (``has_nac``) gives pymatgen's ``nac_frequencies`` too."""
    with _connection(where) as con:
        crystal = _structure_from_row(_row(con, "structures", material_id, None, _STRUCTURE_COLUMNS))
        row = _row(con, "bands", material_id, model, _BANDS_COLUMNS)
    return to_pymatgen_band_structure(crystal, qpath_from_row(row), np.asarray(row["frequencies_cm1"], dtype=float),
                                      has_nac=bool(row.get("has_nac")))


def plot_band_structure(where, material_id: str, model: str | None = None, **plot_kwargs):
    """pymatgen's band-structure plot of the material (matplotlib ``Axes``)."""
    from pymatgen.phonon.plotter import PhononBSPlotter

    return PhononBSPlotter(band_structure(where, material_id, model)).get_plot(**plot_kwargs)


_DOS_COLUMNS = "frequency_min_cm1, frequency_step_cm1, sigma_cm1, total, elements, partial"


def _dos_from_row(row: dict) -> PhononDOS:
    total = np.asarray(row["total"], dtype=float)
    grid = float(row["frequency_min_cm1"]) + float(row["frequency_step_cm1"]) * np.arange(total.size)
    partial = {el: np.asarray(p, dtype=float) for el, p in zip(row["elements"], row["partial"])}
    return PhononDOS(grid, total, partial, float(row["sigma_cm1"]))


def dos(where, material_id: str, model: str | None = None) -> PhononDos:
    """The total phonon DOS as a pymatgen ``PhononDos`` (THz; states/THz per cell, integral 3N)."""
    with _connection(where) as con:
        row = _row(con, "dos", material_id, model, _DOS_COLUMNS)
    return to_pymatgen_dos(_dos_from_row(row))[0]


def element_dos(where, material_id: str, model: str | None = None) -> dict[str, PhononDos]:
    """The DOS projected on each element, pymatgen ``PhononDos`` objects (THz, states/THz per cell)."""
    with _connection(where) as con:
        row = _row(con, "dos", material_id, model, _DOS_COLUMNS)
    return to_pymatgen_dos(_dos_from_row(row))[1]


@dataclass(frozen=True)
class CellThermo:
    """Harmonic thermodynamics per mole of cells (pymatgen's and phonopy's convention), energies in J.

    The ``thermo`` table stores them per mole of formula units with energies in kJ; a cell
    holds ``formula_units`` of them.
    """

    temperatures: np.ndarray  # K
    heat_capacity: np.ndarray  # J/K/mol of cells
    entropy: np.ndarray  # J/K/mol of cells
    free_energy: np.ndarray  # J/mol of cells (Helmholtz; phonopy writes kJ/mol)
    zero_point_energy: float  # J/mol of cells
    formula_units: float  # formula units per cell (divide by it for per formula unit)
    nsites: int

    def per_atom(self) -> CellThermo:
        """The same quantities per mole of atoms."""
        n = self.nsites
        return CellThermo(self.temperatures, self.heat_capacity / n, self.entropy / n, self.free_energy / n,
                          self.zero_point_energy / n, self.formula_units / n, 1)


def cell_thermo(row: dict) -> CellThermo:
    """Per-formula-unit kJ ``thermo`` row → per-cell J values (×``formula_units``, kJ ×1000)."""
    z = float(row["formula_units"])
    return CellThermo(
        temperatures=np.asarray(row["temperatures_K"], dtype=float),
        heat_capacity=np.asarray(row["heat_capacity_J_K_mol"], dtype=float) * z,
        entropy=np.asarray(row["entropy_J_K_mol"], dtype=float) * z,
        free_energy=np.asarray(row["free_energy_kJ_mol"], dtype=float) * z * 1000.0,
        zero_point_energy=float(row["zero_point_energy_kJ_mol"]) * z * 1000.0,
        formula_units=z,
        nsites=int(row["nsites"]),
    )


def thermo(where, material_id: str, model: str | None = None) -> CellThermo:
    """The material's thermodynamics per mole of cells in J (see :class:`CellThermo`)."""
    with _connection(where) as con:
        row = _row(con, "thermo", material_id, model,
                   "formula_units, nsites, temperatures_K, heat_capacity_J_K_mol, entropy_J_K_mol, "
                   "free_energy_kJ_mol, zero_point_energy_kJ_mol")
    return cell_thermo(row)


def write_band_yaml(where, material_id: str, path: str | Path, model: str | None = None) -> Path:
    """phonopy's ``band.yaml`` of the material (THz; distances without 2π)."""
    from vgnn_core.io.exports import write_band_yaml as _write

    with _connection(where) as con:
        crystal = _structure_from_row(_row(con, "structures", material_id, None, _STRUCTURE_COLUMNS))
        row = _row(con, "bands", material_id, model, _BANDS_COLUMNS)
    return _write(path, crystal, qpath_from_row(row), np.asarray(row["frequencies_cm1"], dtype=float))


def _created_at(where) -> str | None:
    if isinstance(where, duckdb.DuckDBPyConnection):
        return None
    release = where if isinstance(where, Release) else Release.open(where)
    return release.manifest.get("created_at")


def emmet_formula_units(composition: Composition) -> int:
    """Formula units per cell as emmet counts them: the greatest common divisor of the atom counts
    (1 if any is fractional). Not pymatgen's count, which is ½ where pymatgen writes a
    molecule-like formula the cell holds half of (a LiO cell is ½ Li₂O₂): emmet's thermodynamics
    divide by this integer, so the document uses it for its volume per formula unit too."""
    counts = list(composition.as_dict().values())
    if all(abs(c - round(c)) < 1e-6 for c in counts):
        return math.gcd(*(round(c) for c in counts))
    return 1


def emmet_document(where, material_id: str, model: str | None = None) -> dict[str, Any]:
    """The material as a dict shaped like emmet's ``PhononBSDOSDoc`` (same field names and units:
    THz, ``[band][q]``, fractional q-points, states/THz per cell, Å³).

    ``phonon_method`` is this database's (``vgnn-kmvn``…), which emmet's enum (dfpt, phonopy,
    pheasy) does not list: :func:`emmet_model` moves it into ``code``. emmet computes the
    thermodynamics from ``phonon_dos``.
    """
    with _connection(where) as con:
        crystal = _structure_from_row(_row(con, "structures", material_id, None, _STRUCTURE_COLUMNS))
        bands = _row(con, "bands", material_id, model, _BANDS_COLUMNS)
        dos_row = _row(con, "dos", material_id, model, _DOS_COLUMNS + ", mesh")
    created = _created_at(where)
    path = qpath_from_row(bands)
    frequencies_thz = np.asarray(bands["frequencies_cm1"], dtype=float).T / THZ_TO_CM1
    total = to_pymatgen_dos(_dos_from_row(dos_row))[0]
    composition = crystal.composition
    formula_units = emmet_formula_units(composition)
    structure_dict = crystal.as_dict()
    # a release written before schema 1.4 has no phonon_method: the shipped models' names tell it
    method = method_for(bands["model"], bands.get("phonon_method"))
    return {
        "identifier": material_id,
        "phonon_method": method,
        "code": f"vgnn-phonondb model {bands['model']} (sha256 {bands['model_sha256']})",
        "last_updated": created,
        "structure": structure_dict,
        "nsites": len(crystal),
        "elements": sorted(el.symbol for el in composition.elements),
        "nelements": len(composition.elements),
        "composition": composition.as_dict(),
        "composition_reduced": composition.reduced_composition.as_dict(),
        "formula_pretty": composition.reduced_formula,
        "formula_anonymous": composition.anonymized_formula,
        "chemsys": composition.chemical_system,
        "volume": float(crystal.volume),
        "density": float(crystal.density),
        "density_atomic": float(crystal.volume / len(crystal)),
        "formula_units": formula_units,
        "volume_per_formula_unit": float(crystal.volume / formula_units),
        "phonon_bandstructure": {
            "qpoints": path.qpoints.tolist(),
            "frequencies": frequencies_thz.tolist(),
            "reciprocal_lattice": crystal.lattice.reciprocal_lattice.matrix.tolist(),
            "labels_dict": {pretty_label(name): path.qpoints[i].tolist() for i, name in path.labels},
            "structure": structure_dict,
            "has_nac": bool(bands.get("has_nac")),
            "path_convention": PATH_CONVENTION,  # emmet would otherwise re-derive (and rename) the labels
        },
        "phonon_dos": {
            "frequencies": total.frequencies.tolist(),
            "densities": total.densities.tolist(),
            "structure": structure_dict,
        },
        "post_process_settings": {
            "npoints_band": int(path.n_qpoints),
            "kpath_scheme": PATH_CONVENTION,
            "kpoint_density_dos": int(np.prod(dos_row["mesh"])),
        },
    }


def emmet_model(where, material_id: str, model: str | None = None):
    """:func:`emmet_document` validated into emmet-core's ``PhononBSDOSDoc`` (needs emmet-core)."""
    try:
        from emmet.core.phonon import PhononBSDOSDoc
    except ImportError as exc:
        raise ImportError("emmet_model needs emmet-core (pip install emmet-core); "
                          "emmet_document gives the same fields as a dict") from exc
    from emmet.core.mpid import MPID

    doc = emmet_document(where, material_id, model)
    doc["code"] = f"{doc['code']}, phonon_method {doc['phonon_method']}, material {material_id}"
    doc["phonon_method"] = None  # emmet's PhononMethod has no machine-learned method
    try:
        MPID(material_id)
    except ValueError:  # emmet identifiers are MPIDs ("mp-149"); others stay in ``code``
        doc["identifier"] = None
    if doc["last_updated"] is None:
        doc.pop("last_updated")
    return PhononBSDOSDoc(**doc)
