"""``vgnn query``: read-only SQL over a release, printed or saved."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .catalog import check_read_only, connect

FORMATS = ("table", "csv", "json", "parquet")


def run_query(sql: str, release, fmt: str = "table", out: str | Path | None = None, max_rows: int = 100) -> str:
    """Run a read-only query; return the text to print (or a note of the file written)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not one of {FORMATS}")
    if fmt == "parquet" and out is None:
        raise ValueError("--format parquet needs --out FILE")
    check_read_only(sql)
    con = connect(release)
    try:
        rel = con.sql(sql)
        if rel is None:
            return ""
        if fmt == "table" and out is None:
            return str(rel.limit(max_rows)) if max_rows else str(rel)
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
    finally:
        con.close()
    if out is not None:
        out = Path(out)
        if fmt == "parquet":
            pq.write_table(table, out, compression="zstd")
        elif fmt == "csv":
            pacsv.write_csv(table, out)
        else:
            out.write_text(json.dumps(table.to_pylist(), default=str, indent=1))
        return f"{table.num_rows} rows written to {out}"
    if fmt == "csv":
        import io

        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        return buf.getvalue().decode()
    return json.dumps(table.to_pylist(), default=str, indent=1)
