"""``vgnn query``: read-only SQL over a release, printed or saved.

The release's files are verified against its manifest (see :meth:`storage.release.Release.local_files`)
and served through a locked, in-memory DuckDB (see :func:`storage.catalog.connect`), so a query
can neither read nor write any file; the result is written by this module, never by DuckDB.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .catalog import QueryError, check_read_only, connect, tables_read_by
from .release import Release

FORMATS = ("table", "csv", "json", "parquet")


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def run_query(sql: str, release, fmt: str = "table", out: str | Path | None = None, max_rows: int = 100,
              verify: bool = True) -> str:
    """Run a read-only query; return the text to print (or a note of the file written).

    ``release``: database root, release folder or release URL. ``verify``: check every file
    served against the manifest's sha256 and size. ``max_rows``: rows shown in table format
    (0 = all). Raises :class:`storage.catalog.QueryError` (one line) for a refused or failing
    query and :class:`storage.release.ReleaseIntegrityError` for a file that differs from the
    manifest.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not one of {FORMATS}")
    if fmt == "parquet" and out is None:
        raise ValueError("--format parquet needs --out FILE")
    check_read_only(sql)
    try:
        release = release if isinstance(release, Release) else Release.open(release)
        if out is not None and Path(out).resolve().is_relative_to(release.local_root.resolve()):
            raise QueryError(f"--out {out} is inside the release folder {release.local_root}; refused")
        con = connect(release, verify=verify, tables=tables_read_by(sql))
    except duckdb.Error as exc:
        raise QueryError(f"cannot open {release}: {_one_line(exc)}") from None
    except OSError as exc:  # requests' errors are OSErrors too
        if isinstance(exc, FileNotFoundError):
            raise
        raise QueryError(f"cannot open {release}: {_one_line(exc)}") from None
    try:
        rel = con.sql(sql)
        if rel is None:
            return ""
        shown = rel.limit(max_rows) if fmt == "table" and out is None and max_rows else rel
        # run the query here, so that an error raises (printing a relation would show it as text)
        table = shown.to_arrow_table() if hasattr(shown, "to_arrow_table") else shown.fetch_arrow_table()
        if fmt == "table" and out is None:
            return str(con.from_arrow(table))
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from None
    finally:
        con.close()
    return _write(table, fmt, out)


def csv_ready(table: pa.Table) -> pa.Table:
    """``table`` with every nested column (lists, structs, maps) as JSON text: CSV holds scalars."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            column = pa.array([None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
                              type=pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _write(table: pa.Table, fmt: str, out: str | Path | None) -> str:
    """``table`` in ``fmt``, to ``out`` (a note is returned) or as text."""
    if out is not None:
        out = Path(out)
        if fmt == "parquet":
            pq.write_table(table, out, compression="zstd")
        elif fmt == "csv":
            pacsv.write_csv(csv_ready(table), out)
        else:
            out.write_text(json.dumps(table.to_pylist(), default=str, indent=1))
        return f"{table.num_rows} rows written to {out}"
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(csv_ready(table), buf)
        return buf.getvalue().decode()
    return json.dumps(table.to_pylist(), default=str, indent=1)
