"""The database's tables: one versioned Arrow schema each, and row validation.

Field names of the structure table follow OPTIMADE (``lattice_vectors``,
``species_at_sites``, ``cartesian_site_positions``); units are in the column names
(``_cm1``, ``_per_angstrom``) or the field metadata. Missing spectra are empty lists, never
NULL. The partition columns ``source`` and ``bucket`` live in the directory names (Hive
style), not inside the files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1.3"  # 1.1: thermo and dos tables; 1.2: thermo.formula_units fractional (H: ½ H₂); 1.3: uncertainty_cm1, in_domain; structure_hash from the standardised conventional cell
PARTITION_COLUMNS = ("source", "bucket")


def _f(name: str, typ: pa.DataType, unit: str | None = None, nullable: bool = False) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"unit": unit} if unit else None)


F32_LIST = pa.list_(pa.float32())
VEC3 = pa.list_(pa.float64(), 3)

TABLES: dict[str, pa.Schema] = {
    "structures": pa.schema([
        _f("material_id", pa.string()),
        _f("formula", pa.string()),  # reduced formula
        _f("elements", pa.list_(pa.string())),
        _f("nsites", pa.int32()),
        _f("spacegroup_number", pa.int16()),
        _f("spacegroup_symbol", pa.string()),
        _f("lattice_vectors", pa.list_(VEC3, 3), "angstrom"),
        _f("species_at_sites", pa.list_(pa.string())),
        _f("cartesian_site_positions", pa.list_(VEC3), "angstrom"),
        _f("structure_hash", pa.string()),
    ]),
    "gamma": pa.schema([
        _f("material_id", pa.string()),
        _f("model", pa.string()),
        _f("model_sha256", pa.string()),
        _f("frequencies_cm1", F32_LIST, "cm^-1"),
        _f("n_imaginary", pa.int16()),
        _f("min_frequency_cm1", pa.float32(), "cm^-1"),
        _f("max_frequency_cm1", pa.float32(), "cm^-1"),
        _f("acoustic_residual_cm1", pa.float32(), "cm^-1"),
        _f("uncertainty_cm1", pa.float32(), "cm^-1, expected per-material MAE (ensemble spread, calibrated on val)", nullable=True),
        _f("in_domain", pa.bool_(), None, nullable=True),
    ]),
    "bands": pa.schema([
        _f("material_id", pa.string()),
        _f("model", pa.string()),
        _f("model_sha256", pa.string()),
        _f("qpoints", pa.list_(VEC3), "fractional, reciprocal basis of the structure"),
        _f("distances_per_angstrom", F32_LIST, "angstrom^-1 (2 pi included)"),
        _f("label_indices", pa.list_(pa.int32())),
        _f("labels", pa.list_(pa.string())),
        _f("segment_breaks", pa.list_(pa.int32())),
        _f("frequencies_cm1", pa.list_(F32_LIST), "cm^-1, [q][band]"),
        _f("uncertainty_cm1", pa.float32(), "cm^-1, expected per-material MAE (ensemble spread, calibrated on val)", nullable=True),
        _f("in_domain", pa.bool_(), None, nullable=True),
    ]),
    # k-MVN on a Γ-centred q-mesh; per mole of formula units (phonopy's are per mole of cells)
    "thermo": pa.schema([
        _f("material_id", pa.string()),
        _f("model", pa.string()),
        _f("model_sha256", pa.string()),
        _f("formula_units", pa.float64()),
        _f("nsites", pa.int32()),
        _f("mesh", pa.list_(pa.int32())),
        _f("temperatures_K", F32_LIST, "K"),
        _f("heat_capacity_J_K_mol", F32_LIST, "J/K per mole of formula units"),
        _f("entropy_J_K_mol", F32_LIST, "J/K per mole of formula units"),
        _f("free_energy_kJ_mol", F32_LIST, "kJ per mole of formula units"),
        _f("zero_point_energy_kJ_mol", pa.float32(), "kJ per mole of formula units"),
        _f("heat_capacity_300K_J_K_mol", pa.float32(), "J/K per mole of formula units"),
        _f("entropy_300K_J_K_mol", pa.float32(), "J/K per mole of formula units"),
        _f("imaginary_mode_fraction", pa.float32(), "fraction of mesh modes left out as imaginary"),
    ]),
    "dos": pa.schema([
        _f("material_id", pa.string()),
        _f("model", pa.string()),
        _f("model_sha256", pa.string()),
        _f("mesh", pa.list_(pa.int32())),
        _f("sigma_cm1", pa.float32(), "cm^-1, Gaussian standard deviation"),
        _f("frequency_min_cm1", pa.float32(), "cm^-1, first grid point"),
        _f("frequency_step_cm1", pa.float32(), "cm^-1, grid spacing"),
        _f("total", F32_LIST, "states per cm^-1 per cell (integrates to 3 nsites)"),
        _f("elements", pa.list_(pa.string())),
        _f("partial", pa.list_(F32_LIST), "states per cm^-1 per cell, [element][grid point]"),
    ]),
    "runs": pa.schema([
        _f("run_id", pa.string()),
        _f("started_at", pa.timestamp("us", tz="UTC")),
        _f("finished_at", pa.timestamp("us", tz="UTC"), nullable=True),
        _f("code_version", pa.string()),
        _f("models", pa.list_(pa.string())),
        _f("model_sha256s", pa.list_(pa.string())),
        _f("source_version", pa.string()),
        _f("n_written", pa.int64()),
        _f("n_failed", pa.int64()),
    ]),
    "failures": pa.schema([
        _f("material_id", pa.string()),
        _f("stage", pa.string()),  # ingest, predict; limit = outputs skipped by size
        _f("error_class", pa.string()),
        _f("message", pa.string()),
        _f("run_id", pa.string()),
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
        if table == "failures" and row["stage"] not in STAGES:
            raise SchemaError(f"failures: row {rid}: stage {row['stage']!r} not one of {STAGES}")


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
        if pa.types.is_list(f.type):
            values = [v if v is not None else [] for v in values]
            numeric = not pa.types.is_string(f.type.value_type)
            columns[f.name] = _list_array(values, f.type) if numeric else pa.array(values, type=f.type)
        else:
            columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(columns, schema=sch)
