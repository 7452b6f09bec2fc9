"""A release as a DuckDB database: one view per table, plus convenience views and macros.

>>> con = connect("db/")              # a database root, a release folder or a release URL
>>> con.sql("SELECT formula, max_frequency_cm1 FROM material_summary LIMIT 5").show()

The connection is read-only by construction: every file is checked against the release
manifest (sha256 and size; remote files are downloaded once into the cache dir), opened with
pyarrow as a lazy ``pyarrow.dataset`` (projection and filter push-down) and registered into an
in-memory DuckDB; then external access is switched off and the configuration locked, so no
statement can read or write a file, attach a database, load an extension or undo the settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vgnn_core.phonons.units import THZ_TO_CM1, THZ_TO_MEV

from .release import Release, VerificationCache
from .schema import TABLES, schema

#: Statement types a query may contain: everything else (writes, ATTACH, COPY, SET, LOAD…)
#: is refused. This is a friendly first check; the locked connection is the guarantee.
READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}
_EXPLAIN = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\(\s*[^)]*\)\s*)?(.*)$", re.IGNORECASE | re.DOTALL)

#: Convenience objects: name → (tables read, SQL creating it).
CONVENIENCE: dict[str, tuple[set[str], str]] = {
    "cm1_to_thz": (set(), f"CREATE MACRO cm1_to_thz(x) AS x / {THZ_TO_CM1!r}"),
    "cm1_to_mev": (set(), f"CREATE MACRO cm1_to_mev(x) AS x / {THZ_TO_CM1!r} * {THZ_TO_MEV!r}"),
    "gamma_modes": ({"gamma"}, """CREATE VIEW gamma_modes AS
    SELECT material_id, source, model, m.mode, m.frequency_cm1
    FROM gamma, UNNEST(frequencies_cm1) WITH ORDINALITY AS m(frequency_cm1, mode)"""),
    "material_summary": ({"structures", "gamma", "thermo", "bands"}, """CREATE VIEW material_summary AS
    SELECT s.material_id, s.source, s.formula, s.spacegroup_number, s.spacegroup_symbol, s.nsites,
           g.model, g.max_frequency_cm1, g.min_frequency_cm1, g.n_imaginary,
           g.n_imaginary > 0 AS has_imaginary_modes, g.uncertainty_cm1, g.in_domain,
           b.uncertainty_cm1 AS bands_uncertainty_cm1, coalesce(b.likely_unstable, g.likely_unstable) AS likely_unstable,
           list_slice(g.frequencies_cm1, 4, len(g.frequencies_cm1)) AS gamma_optical_modes_cm1,
           t.heat_capacity_300K_J_K_mol, t.entropy_300K_J_K_mol, t.zero_point_energy_kJ_mol,
           t.heat_capacity_300K_J_K_mol * t.formula_units / t.nsites AS heat_capacity_300K_per_atom
    FROM structures s LEFT JOIN gamma g USING (material_id, source)
    LEFT JOIN thermo t USING (material_id, source)
    LEFT JOIN (SELECT material_id, source, uncertainty_cm1, likely_unstable FROM bands) b USING (material_id, source)"""),
    "dos_points": ({"dos"}, """CREATE VIEW dos_points AS
    SELECT material_id, source, model, frequency_min_cm1 + (k - 1) * frequency_step_cm1 AS frequency_cm1,
           d AS states_per_cm1
    FROM dos, UNNEST(total) WITH ORDINALITY AS t(d, k)"""),
}

#: Hive partition columns of every table's files (``<table>/source=…/bucket=…/``).
PARTITIONS = pa.schema([pa.field("source", pa.string()), pa.field("bucket", pa.int32())])

class QueryError(ValueError):
    """A query failed (DuckDB's message, first line)."""


class ReadOnlyQueryError(QueryError):
    """A query tried to write, attach, copy out or change settings."""


def _empty(table: str) -> pa.Table:
    """No rows, with the table's columns and the partition columns (a table no file holds)."""
    return pa.Table.from_pylist([], schema=pa.schema(list(schema(table)) + list(PARTITIONS)))


def table_dataset(table: str, files: list[Path], base: Path) -> ds.Dataset:
    """A lazy dataset over one table's Parquet files under ``base/<table>``.

    Its schema is the union of the files' schemas (types promoted as pyarrow permits), then the
    hive partition columns ``source`` (string) and ``bucket`` (int32), then any nullable column
    of the current schema no file has (read as NULL: a release written before it existed).
    """
    file_schemas = [pq.read_schema(f).remove_metadata() for f in files]
    merged = pa.unify_schemas(file_schemas, promote_options="permissive")
    fields = [f for f in merged if f.name not in PARTITIONS.names] + list(PARTITIONS)
    present = {f.name for f in fields}
    fields += [f for f in schema(table) if f.name not in present and f.nullable]
    return ds.dataset([str(f) for f in files], schema=pa.schema(fields), format="parquet",
                      partitioning=ds.partitioning(PARTITIONS, flavor="hive"),
                      partition_base_dir=str(base / table))


def tables_read_by(sql: str) -> set[str] | None:
    """The release tables a query reads, through the convenience views; ``None`` = all.

    ``None`` when the query cannot be parsed or names no table of the release (``SHOW TABLES``,
    ``SELECT 1``), so that such a query still sees every table.
    """
    con = duckdb.connect()  # a private parser: the module's default connection may be in any state
    try:
        names = {n.lower() for n in con.get_table_names(sql, qualified=False)}
    except duckdb.Error:
        return None
    finally:
        con.close()
    wanted = {n for n in names if n in TABLES}
    for name, (deps, _) in CONVENIENCE.items():
        if name in names:
            wanted |= deps
    return wanted or None


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``con`` unable to touch files, attach, load extensions or change settings, for good."""
    con.execute("SET python_enable_replacements = false")  # no scanning of the caller's Python objects
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(where, con: duckdb.DuckDBPyConnection | None = None, *, verify: bool = True,
            read_only: bool = True, tables: set[str] | None = None,
            cache: VerificationCache | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the release's tables as views (see the module doc).

    ``where``: a database root, release folder, release URL or :class:`Release`. ``verify``:
    check each file's sha256 and size against the manifest (remembered per file in ``cache``).
    ``read_only``: lock the connection (no file access, no settings changes) once built.
    ``tables``: only these tables get views (and only their files are fetched); the
    convenience views that need another table are left out. Raises
    :class:`storage.release.ReleaseIntegrityError` for a file that differs from the manifest.
    """
    release = where if isinstance(where, Release) else Release.open(where)
    wanted = [t for t in TABLES if tables is None or t in tables]
    files = release.local_files(wanted, verify=verify, cache=cache)
    base = release.local_root
    con = con or duckdb.connect()
    for table in wanted:
        name = f"_files_{table}"
        if files[table]:
            con.register(name, table_dataset(table, files[table], base))
        else:
            con.register(name, _empty(table))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {name}")
    for deps, sql in CONVENIENCE.values():
        if deps <= set(wanted):
            con.execute(sql)
    if read_only:
        lock_down(con)
    return con


def check_read_only(sql: str) -> None:
    """Raise :class:`ReadOnlyQueryError` unless every statement only reads.

    ``EXPLAIN [ANALYZE] <statement>`` is checked as its inner statement. A friendly first line of
    defence: :func:`connect` locks the connection so that no statement can touch a file anyway.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse query: {str(exc).splitlines()[0]}") from None
    if not statements:
        raise ReadOnlyQueryError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise ReadOnlyQueryError(
                f"{kind} statements are refused: queries are read-only (use --out to save results)"
            )
        if kind == "EXPLAIN":
            inner = _EXPLAIN.match(st.query)
            if inner is None or not inner.group(1).strip():
                raise ReadOnlyQueryError("only EXPLAIN [ANALYZE] of a SELECT is allowed")
            check_read_only(inner.group(1))
