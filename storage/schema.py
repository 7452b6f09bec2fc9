"""The database's tables: one versioned Arrow schema each, and row validation.

Field names of the structure table follow OPTIMADE (``lattice_vectors``,
``species_at_sites``, ``cartesian_site_positions``, ``species``, ``chemical_formula_reduced``…).
Every column carries its unit and meaning in the field metadata (``unit``: a unit, ``"1"`` for
a dimensionless number, ``""`` for text; ``description``); most names also end in their unit
(``_cm1``, ``_per_angstrom``). Storage keeps cm⁻¹, [q][band] and per-formula-unit thermo;
:mod:`storage.bridges` gives pymatgen's THz, [band][q] and per-cell J. Missing spectra are empty
lists, never NULL. The partition columns ``source`` and ``bucket`` live in the directory names (Hive
style), not inside the files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from vgnn_core.phonons.units import INSTABILITY_THRESHOLD_CM1

#: 1.1: thermo and dos tables; 1.2: thermo.formula_units fractional (H: ½ H₂); 1.3: uncertainty_cm1,
#: in_domain; structure_hash from the standardised conventional cell; 1.4: the remaining OPTIMADE
#: structure fields (chemical_formula_reduced/anonymous, nelements, elements_ratios, species,
#: dimension_types, nperiodic_dimensions) and phonon_method on every prediction table; a unit
#: and a description on every column; 1.5: has_nac, born_charges, epsilon_inf, lo_to_splitting_cm1 on
#: gamma and bands (the LO–TO correction; NULL charges where it is off); 1.6: likely_unstable on gamma
#: and bands.
SCHEMA_VERSION = "1.6"


#: ``unit`` of a column that is not a quantity (names, labels, flags, hashes).
NO_UNIT = ""
#: ``unit`` of a dimensionless number (a count, a fraction, an index).
DIMENSIONLESS = "1"


def _f(name: str, typ: pa.DataType, unit: str, description: str, nullable: bool = False) -> pa.Field:
    """A column with its unit and meaning in the field metadata (``unit``, ``description``)."""
    return pa.field(name, typ, nullable=nullable, metadata={"unit": unit, "description": description})


F32_LIST = pa.list_(pa.float32())
VEC3 = pa.list_(pa.float64(), 3)
#: One OPTIMADE ``species`` entry; every site of a crystal here is one fully occupied element.
SPECIES = pa.struct([
    pa.field("name", pa.string()),
    pa.field("chemical_symbols", pa.list_(pa.string())),
    pa.field("concentration", pa.list_(pa.float64())),
    pa.field("mass", pa.list_(pa.float64())),
])


def _model(table: str) -> list[pa.Field]:
    return [
        _f("material_id", pa.string(), NO_UNIT, "identifier of the material in its source"),
        _f("model", pa.string(), NO_UNIT, f"name of the model that predicted this {table} row"),
        _f("model_sha256", pa.string(), NO_UNIT, "sha256 of the model's checkpoint file"),
    ]


def _trust() -> list[pa.Field]:
    return [
        _f("uncertainty_cm1", pa.float32(), "cm^-1",
           "expected per-material MAE (from the ensemble's spread and frequency scale, fitted on val)", nullable=True),
        _f("in_domain", pa.bool_(), NO_UNIT, "whether the crystal lies in the model's training domain", nullable=True),
        _f("likely_unstable", pa.bool_(), NO_UNIT,
           "whether the crystal is probably dynamically unstable: the row's lowest frequency, or that of any "
           "ensemble member alone at Γ and the 2x2x2 zone-boundary points (MVN: Γ), is below "
           f"{INSTABILITY_THRESHOLD_CM1:g} cm^-1", nullable=True),
    ]


def _nac() -> list[pa.Field]:
    return [
        _f("has_nac", pa.bool_(), NO_UNIT,
           "whether the LO-TO correction is applied (the build's: the direction-dependent jump at Γ from "
           "the dipole-dipole term, on the network's full force constants; q ≠ 0 unchanged); Γ frequencies "
           "are the TO ones", nullable=True),
        _f("born_charges", F32_LIST, "e",
           "Born effective charges Z*, n_sites x 9 row-major [site][alpha][beta] = dP_alpha/du_beta "
           "(NULL without the correction)", nullable=True),
        _f("epsilon_inf", F32_LIST, DIMENSIONLESS,
           "electronic dielectric tensor ε∞, 9 values row-major (NULL without the correction)", nullable=True),
        _f("lo_to_splitting_cm1", pa.float32(), "cm^-1",
           "largest LO-TO splitting at Γ, max over Cartesian x, y, z of ω(Γ, q̂) - ω_TO (NULL without the correction)",
           nullable=True),
    ]


#: Columns whose missing value stays NULL (other missing lists are written as empty lists).
NULL_LISTS = ("born_charges", "epsilon_inf")


def _phonon_method() -> pa.Field:
    return _f("phonon_method", pa.string(), NO_UNIT,
              "how the phonons were obtained: 'vgnn-kmvn' / 'vgnn-mvn' / 'vgnn-vvn' (predicted by that "
              "model kind, see model_sha256) or a reference method such as 'dfpt'", nullable=True)


# Columns added after schema 1.0 are nullable: a release written before them reads them as NULL
# (storage.catalog adds every missing nullable column, lists included).
TABLES: dict[str, pa.Schema] = {
    "structures": pa.schema([
        _f("material_id", pa.string(), NO_UNIT, "identifier of the material in its source"),
        _f("formula", pa.string(), NO_UNIT, "reduced formula as pymatgen writes it (electronegativity order)"),
        _f("elements", pa.list_(pa.string()), NO_UNIT, "OPTIMADE elements: chemical symbols, alphabetical"),
        _f("nsites", pa.int32(), DIMENSIONLESS, "OPTIMADE nsites: sites in the cell"),
        _f("spacegroup_number", pa.int16(), DIMENSIONLESS, "international space group number (spglib)"),
        _f("spacegroup_symbol", pa.string(), NO_UNIT, "Hermann-Mauguin symbol of the space group (spglib)"),
        _f("lattice_vectors", pa.list_(VEC3, 3), "angstrom", "OPTIMADE lattice_vectors: cell vectors as rows"),
        _f("species_at_sites", pa.list_(pa.string()), NO_UNIT, "OPTIMADE species_at_sites: species name per site"),
        _f("cartesian_site_positions", pa.list_(VEC3), "angstrom", "OPTIMADE cartesian_site_positions"),
        _f("structure_hash", pa.string(), NO_UNIT, "hash equal for every cell of the same crystal"),
        _f("chemical_formula_reduced", pa.string(), NO_UNIT,
           "OPTIMADE chemical_formula_reduced: elements alphabetical, counts divided by their GCD", nullable=True),
        _f("chemical_formula_anonymous", pa.string(), NO_UNIT,
           "OPTIMADE chemical_formula_anonymous: A, B, C… by decreasing count", nullable=True),
        _f("nelements", pa.int32(), DIMENSIONLESS, "OPTIMADE nelements: number of distinct elements", nullable=True),
        _f("nperiodic_dimensions", pa.int32(), DIMENSIONLESS, "OPTIMADE nperiodic_dimensions (3: bulk crystal)",
           nullable=True),
        _f("elements_ratios", pa.list_(pa.float64()), DIMENSIONLESS,
           "OPTIMADE elements_ratios: fraction of sites per element, in the order of elements", nullable=True),
        _f("dimension_types", pa.list_(pa.int32()), DIMENSIONLESS,
           "OPTIMADE dimension_types: 1 per periodic lattice vector ([1, 1, 1])", nullable=True),
        _f("species", pa.list_(SPECIES), NO_UNIT,
           "OPTIMADE species: one per element, concentration [1.0], mass in amu (standard atomic weight)",
           nullable=True),
    ]),
    "gamma": pa.schema([
        *_model("gamma"),
        _f("frequencies_cm1", F32_LIST, "cm^-1", "Γ-point frequencies, ascending; negative = imaginary"),
        _f("n_imaginary", pa.int16(), DIMENSIONLESS, "Γ modes below -0.01 cm^-1"),
        _f("min_frequency_cm1", pa.float32(), "cm^-1", "lowest Γ frequency"),
        _f("max_frequency_cm1", pa.float32(), "cm^-1", "highest Γ frequency"),
        _f("acoustic_residual_cm1", pa.float32(), "cm^-1", "largest |ω| of the three acoustic Γ modes (0 exact)"),
        *_trust(),
        _phonon_method(),
        *_nac(),
    ]),
    "bands": pa.schema([
        *_model("bands"),
        _f("qpoints", pa.list_(VEC3), DIMENSIONLESS, "fractional, reciprocal basis of the structure's cell"),
        _f("distances_per_angstrom", F32_LIST, "angstrom^-1",
           "cumulative path length, 2π included (pymatgen's convention; phonopy's band.yaml divides by 2π)"),
        _f("label_indices", pa.list_(pa.int32()), DIMENSIONLESS, "q-point index of each label"),
        _f("labels", pa.list_(pa.string()), NO_UNIT, "seekpath names of the special points (GAMMA, X, …)"),
        _f("segment_breaks", pa.list_(pa.int32()), DIMENSIONLESS, "first q-point index after each jump of the path"),
        _f("frequencies_cm1", pa.list_(F32_LIST), "cm^-1", "frequencies, [q][band] (pymatgen: THz, [band][q])"),
        *_trust(),
        _phonon_method(),
        *_nac(),
    ]),
    # k-MVN on a Γ-centred q-mesh; per mole of formula units (phonopy's and pymatgen's are per mole of
    # cells: multiply by formula_units, see storage.bridges.thermo)
    "thermo": pa.schema([
        *_model("thermo"),
        _f("formula_units", pa.float64(), DIMENSIONLESS, "formula units per cell (fractional for ½ H₂)"),
        _f("nsites", pa.int32(), DIMENSIONLESS, "sites in the cell"),
        _f("mesh", pa.list_(pa.int32()), DIMENSIONLESS, "Γ-centred q-mesh"),
        _f("temperatures_K", F32_LIST, "K", "temperatures"),
        _f("heat_capacity_J_K_mol", F32_LIST, "J/K/mol", "C_v per mole of formula units"),
        _f("entropy_J_K_mol", F32_LIST, "J/K/mol", "vibrational entropy per mole of formula units"),
        _f("free_energy_kJ_mol", F32_LIST, "kJ/mol", "Helmholtz free energy per mole of formula units"),
        _f("zero_point_energy_kJ_mol", pa.float32(), "kJ/mol", "zero-point energy per mole of formula units"),
        _f("heat_capacity_300K_J_K_mol", pa.float32(), "J/K/mol", "C_v at 300 K per mole of formula units"),
        _f("entropy_300K_J_K_mol", pa.float32(), "J/K/mol", "entropy at 300 K per mole of formula units"),
        _f("imaginary_mode_fraction", pa.float32(), DIMENSIONLESS, "fraction of mesh modes left out as imaginary"),
        _phonon_method(),
    ]),
    "dos": pa.schema([
        *_model("dos"),
        _f("mesh", pa.list_(pa.int32()), DIMENSIONLESS, "Γ-centred q-mesh"),
        _f("sigma_cm1", pa.float32(), "cm^-1", "Gaussian standard deviation"),
        _f("frequency_min_cm1", pa.float32(), "cm^-1", "first grid point"),
        _f("frequency_step_cm1", pa.float32(), "cm^-1", "grid spacing"),
        _f("total", F32_LIST, "1/cm^-1", "states per cm^-1 per cell (integrates to 3 nsites)"),
        _f("elements", pa.list_(pa.string()), NO_UNIT, "elements of the partial DOS, in order"),
        _f("partial", pa.list_(F32_LIST), "1/cm^-1", "states per cm^-1 per cell, [element][grid point]"),
        _phonon_method(),
    ]),
    "runs": pa.schema([
        _f("run_id", pa.string(), NO_UNIT, "identifier of the build run"),
        _f("started_at", pa.timestamp("us", tz="UTC"), "UTC", "start time"),
        _f("finished_at", pa.timestamp("us", tz="UTC"), "UTC", "end time (NULL while running)", nullable=True),
        _f("code_version", pa.string(), NO_UNIT, "git describe of the code, or the package version"),
        _f("models", pa.list_(pa.string()), NO_UNIT, "names of the models used"),
        _f("model_sha256s", pa.list_(pa.string()), NO_UNIT, "sha256 of each model, in the order of models"),
        _f("source_version", pa.string(), NO_UNIT, "version of the input structures"),
        _f("n_written", pa.int64(), DIMENSIONLESS, "materials written"),
        _f("n_failed", pa.int64(), DIMENSIONLESS, "materials that failed"),
    ]),
    "failures": pa.schema([
        _f("material_id", pa.string(), NO_UNIT, "identifier of the material in its source"),
        _f("stage", pa.string(), NO_UNIT, "ingest, predict; limit = outputs skipped by size"),
        _f("error_class", pa.string(), NO_UNIT, "exception class or cause"),
        _f("message", pa.string(), NO_UNIT, "what went wrong"),
        _f("run_id", pa.string(), NO_UNIT, "identifier of the build run"),
    ]),
}

STAGES = ("ingest", "predict", "limit")


class SchemaError(ValueError):
    """Rows that do not fit a table: the message names the table, the row and the cause."""


def schema(table: str) -> pa.Schema:
    if table not in TABLES:
        raise SchemaError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
    return TABLES[table].with_metadata({"schema_version": SCHEMA_VERSION, "table": table})


def _check_finite(table: str, row: dict, key: str, value) -> None:
    arr = np.asarray(value, dtype=float) if value is not None else np.zeros(0)
    if arr.size and not np.all(np.isfinite(arr)):
        raise SchemaError(f"{table}: row {row.get('material_id', row.get('run_id', '?'))}: {key} contains NaN or infinity")


def validate_rows(table: str, rows: Sequence[dict]) -> None:
    """Refuse unknown or missing columns, NaN, and spectra of inconsistent shape."""
    sch = schema(table)
    names = set(sch.names)
    for row in rows:
        rid = row.get("material_id", row.get("run_id", "?"))
        extra = set(row) - names
        if extra:
            raise SchemaError(f"{table}: row {rid}: unknown column(s) {sorted(extra)}")
        missing = {f.name for f in sch if not f.nullable} - set(row)
        if missing:
            raise SchemaError(f"{table}: row {rid}: missing column(s) {sorted(missing)}")
        for f in sch:
            v = row.get(f.name)
            if pa.types.is_floating(f.type) and v is not None and not math.isfinite(float(v)):
                raise SchemaError(f"{table}: row {rid}: {f.name} is not finite")
            if pa.types.is_list(f.type) and f.name.endswith(("_cm1", "positions", "vectors", "qpoints", "_per_angstrom", "_mol", "total", "partial")):
                _check_finite(table, row, f.name, v)
        if table == "bands":
            freqs = np.asarray(row["frequencies_cm1"], dtype=float)
            nq = len(row["qpoints"])
            if freqs.ndim != 2 or freqs.shape[0] != nq or (freqs.shape[1] % 3):
                raise SchemaError(
                    f"bands: row {rid}: frequencies_cm1 has shape {freqs.shape}, expected ({nq}, 3m)")
            if len(row["distances_per_angstrom"]) != nq:
                raise SchemaError(f"bands: row {rid}: {len(row['distances_per_angstrom'])} distances for {nq} q-points")
            if len(row["labels"]) != len(row["label_indices"]):
                raise SchemaError(f"bands: row {rid}: labels and label_indices differ in length")
        if table == "dos" and len(row["partial"]) != len(row["elements"]):
            raise SchemaError(f"dos: row {rid}: {len(row['partial'])} partial DOS for {len(row['elements'])} elements")
        if table == "thermo":
            n_t = len(row["temperatures_K"])
            for key in ("heat_capacity_J_K_mol", "entropy_J_K_mol", "free_energy_kJ_mol"):
                if len(row[key]) != n_t:
                    raise SchemaError(f"thermo: row {rid}: {key} has {len(row[key])} values for {n_t} temperatures")
        if table == "gamma" and len(row["frequencies_cm1"]) % 3:
            raise SchemaError(f"gamma: row {rid}: {len(row['frequencies_cm1'])} frequencies is not 3m")
        if table in ("gamma", "bands"):
            _check_nac(table, row, rid)
        if table == "failures" and row["stage"] not in STAGES:
            raise SchemaError(f"failures: row {rid}: stage {row['stage']!r} not one of {STAGES}")


def _check_nac(table: str, row: dict, rid: str) -> None:
    """The LO–TO columns: charges and ε∞ present exactly when ``has_nac``, of the right sizes."""
    born, eps = row.get("born_charges"), row.get("epsilon_inf")
    if row.get("has_nac"):
        if born is None or eps is None:
            raise SchemaError(f"{table}: row {rid}: has_nac without born_charges and epsilon_inf")
        if np.size(born) == 0 or np.size(born) % 9 or np.size(eps) != 9:
            raise SchemaError(f"{table}: row {rid}: born_charges of {np.size(born)} values (n_sites x 9) and "
                              f"epsilon_inf of {np.size(eps)} (9) expected")
        for key in ("born_charges", "epsilon_inf"):
            _check_finite(table, row, key, row[key])
    elif born is not None or eps is not None or row.get("lo_to_splitting_cm1") is not None:
        raise SchemaError(f"{table}: row {rid}: Born charges, ε∞ or LO-TO splitting without has_nac")


def _offsets(lengths: np.ndarray) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))


def _list_array(values: list, typ: pa.DataType) -> pa.Array:
    """Numeric nested list column built from per-row arrays, without Python-level lists.

    Handles list<number>, list<list<number>> (2-D per row) and list<fixed_size_list<…, 3>>.
    """
    arrays = [np.asarray(v) for v in values]
    inner_type = typ.value_type
    if pa.types.is_list(inner_type):  # 2-D per row: [q][band]
        arrays = [a.reshape(len(a), -1) if a.size else a.reshape(0, 0) for a in arrays]
        inner_lengths = np.concatenate([np.full(a.shape[0], a.shape[1], np.int32) for a in arrays] or [np.zeros(0, np.int32)])
        leaf = inner_type.value_type
        flat = np.concatenate([a.ravel() for a in arrays] or [np.zeros(0)]).astype(leaf.to_pandas_dtype(), copy=False)
        inner = pa.ListArray.from_arrays(_offsets(inner_lengths), pa.array(flat, type=leaf), type=inner_type)
        return pa.ListArray.from_arrays(_offsets(np.array([a.shape[0] for a in arrays])), inner, type=typ)
    if pa.types.is_fixed_size_list(inner_type):
        leaf, k = inner_type.value_type, inner_type.list_size
        flat = np.concatenate([a.reshape(-1) for a in arrays] or [np.zeros(0)]).astype(leaf.to_pandas_dtype(), copy=False)
        inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=leaf), k)
        return pa.ListArray.from_arrays(_offsets(np.array([a.size // k for a in arrays])), inner, type=typ)
    flat = np.concatenate([a.ravel() for a in arrays] or [np.zeros(0)]).astype(inner_type.to_pandas_dtype(), copy=False)
    return pa.ListArray.from_arrays(_offsets(np.array([a.size for a in arrays])), pa.array(flat, type=inner_type), type=typ)


def to_table(table: str, rows: Sequence[dict]) -> pa.Table:
    """Validate and convert rows (dicts) to an Arrow table of the table's schema."""
    validate_rows(table, rows)
    sch = schema(table)
    columns = {}
    for f in sch:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_list(f.type) and f.name in NULL_LISTS and any(v is None for v in values):
            columns[f.name] = pa.array([None if v is None else np.asarray(v).ravel() for v in values], type=f.type)
        elif pa.types.is_list(f.type):
            values = [v if v is not None else [] for v in values]
            inner = f.type.value_type
            numeric = not (pa.types.is_string(inner) or pa.types.is_struct(inner))
            columns[f.name] = _list_array(values, f.type) if numeric else pa.array(values, type=f.type)
        else:
            columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(columns, schema=sch)


def describe(tables: list[str] | None = None) -> str:
    """A text table of every column of ``tables`` (default: all): type, unit and meaning."""
    unknown = sorted(set(tables or ()) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; the release has {', '.join(TABLES)}")
    lines = [f"schema {SCHEMA_VERSION} (every column's unit and meaning are also in the Parquet field metadata)"]
    for table in tables or list(TABLES):
        lines += ["", f"{table}:"]
        for f in TABLES[table]:
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            unit = meta.get("unit", "")
            lines.append(f"  {f.name:<30} {str(f.type):<28} {unit or '-':<10} {meta.get('description', '')}")
    return "\n".join(lines)
