"""A release as a DuckDB database: one view per table, plus convenience views and macros.

>>> con = connect("db/")              # a database root, a release folder or a release URL
>>> con.sql("SELECT formula, max_frequency_cm1 FROM material_summary LIMIT 5").show()
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vgnn_core.phonons.units import THZ_TO_CM1, THZ_TO_MEV

from .release import Release
from .schema import TABLES, schema

#: Statement types a query may contain: everything else (writes, ATTACH, COPY, SET, LOAD…)
#: is refused.
READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}

CONVENIENCE_SQL = f"""
CREATE MACRO cm1_to_thz(x) AS x / {THZ_TO_CM1!r};
CREATE MACRO cm1_to_mev(x) AS x / {THZ_TO_CM1!r} * {THZ_TO_MEV!r};
CREATE VIEW gamma_modes AS
    SELECT material_id, source, model, m.mode, m.frequency_cm1
    FROM gamma, UNNEST(frequencies_cm1) WITH ORDINALITY AS m(frequency_cm1, mode);
CREATE VIEW material_summary AS
    SELECT s.material_id, s.source, s.formula, s.spacegroup_number, s.spacegroup_symbol, s.nsites,
           g.model, g.max_frequency_cm1, g.min_frequency_cm1, g.n_imaginary,
           g.n_imaginary > 0 AS has_imaginary_modes, g.uncertainty_cm1, g.in_domain,
           b.uncertainty_cm1 AS bands_uncertainty_cm1,
           list_slice(g.frequencies_cm1, 4, len(g.frequencies_cm1)) AS gamma_optical_modes_cm1,
           t.heat_capacity_300K_J_K_mol, t.entropy_300K_J_K_mol, t.zero_point_energy_kJ_mol,
           t.heat_capacity_300K_J_K_mol * t.formula_units / t.nsites AS heat_capacity_300K_per_atom
    FROM structures s LEFT JOIN gamma g USING (material_id, source)
    LEFT JOIN thermo t USING (material_id, source)
    LEFT JOIN (SELECT material_id, source, uncertainty_cm1 FROM bands) b USING (material_id, source);
CREATE VIEW dos_points AS
    SELECT material_id, source, model, frequency_min_cm1 + (k - 1) * frequency_step_cm1 AS frequency_cm1,
           d AS states_per_cm1
    FROM dos, UNNEST(total) WITH ORDINALITY AS t(d, k);
"""


#: DuckDB types of the nullable columns a newer schema may add to an older release.
_DUCKDB_TYPES = {"float": "FLOAT", "double": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR", "int32": "INTEGER",
                 "int64": "BIGINT"}


class ReadOnlyQueryError(ValueError):
    """A query tried to write, attach, copy out or change settings."""


def _empty(table: str) -> pa.Table:
    sch = schema(table)
    fields = list(sch) + [pa.field("source", pa.string()), pa.field("bucket", pa.int32())]
    return pa.Table.from_pylist([], schema=pa.schema(fields))


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's httpfs extension: installed, bundled by ``duckdb-extension-httpfs``
    (the ``remote`` extra, which works offline), or installed now from DuckDB's server."""
    attempts = ["LOAD httpfs"]
    try:
        from pathlib import Path

        import duckdb_extension_httpfs

        bundled = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
        if bundled.is_file():
            attempts.append(f"LOAD '{bundled}'")
    except ImportError:
        pass
    attempts.append("INSTALL httpfs; LOAD httpfs")
    errors = []
    for sql in attempts:
        try:
            con.execute(sql)
            return
        except duckdb.Error as exc:
            errors.append(str(exc).splitlines()[0])
    raise RuntimeError(
        "reading a release over HTTP(S) needs DuckDB's httpfs extension: run `INSTALL httpfs` once "
        "with internet access, or `pip install vgnn-phonondb[remote]`. Tried: " + " | ".join(errors)
    )


def connect(where, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the release's tables as views."""
    release = where if isinstance(where, Release) else Release.open(where)
    con = con or duckdb.connect()
    if release.is_remote:
        load_httpfs(con)
    for table in TABLES:
        files = release.files(table)
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            source = (f"read_parquet([{listing}], hive_partitioning = true, "
                      "hive_types = {'source': VARCHAR, 'bucket': INTEGER}, union_by_name = true)")
            present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            # a release written before a nullable column existed reads it as NULL
            added = [f for f in schema(table) if f.name not in present and f.nullable]
            extra = "".join(f", CAST(NULL AS {_DUCKDB_TYPES[str(f.type)]}) AS {f.name}" for f in added)
            con.execute(f"CREATE VIEW {table} AS SELECT *{extra} FROM {source}")
        else:
            con.register(f"_empty_{table}", _empty(table))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    con.execute(CONVENIENCE_SQL)
    return con


def check_read_only(sql: str) -> None:
    """Raise :class:`ReadOnlyQueryError` unless every statement only reads."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse query: {exc}") from exc
    if not statements:
        raise ReadOnlyQueryError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise ReadOnlyQueryError(
                f"{kind} statements are refused: queries are read-only (use --out to save results)"
            )
