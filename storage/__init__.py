"""Parquet schema and writers, DuckDB catalog, OSF client (knows nothing of Prefect or Dask)."""
