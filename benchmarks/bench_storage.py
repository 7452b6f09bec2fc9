"""Storage throughput: write and read synthetic Γ and band rows; DuckDB query latency.

100k ``gamma`` rows (12–60 modes) and 10k ``bands`` rows (100 q × 60 bands), written as
shards through the real writer (validation, zstd, atomic renames), finalized into a
release, then read back through DuckDB. Run: ``python benchmarks/bench_storage.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from storage.catalog import connect
from storage.release import finalize_release, release_dir
from storage.rows import gamma_row
from storage.writer import write_shard

QUERIES = {
    "count per table": "SELECT (SELECT count(*) FROM gamma), (SELECT count(*) FROM bands)",
    "stiffest 10": "SELECT material_id, max_frequency_cm1 FROM gamma ORDER BY max_frequency_cm1 DESC LIMIT 10",
    "unstable share": "SELECT avg((n_imaginary > 0)::INT) FROM gamma",
    "mode histogram": "SELECT floor(frequency_cm1 / 100) * 100 AS bin, count(*) FROM gamma_modes GROUP BY 1 ORDER BY 1",
    "one band structure": "SELECT frequencies_cm1 FROM bands WHERE material_id = 'b-5000'",
    "band maxima": "SELECT max(list_max(flatten(frequencies_cm1))) FROM bands",
}


def synthetic(n_gamma: int, n_bands: int, rng: np.random.Generator):
    gamma = [gamma_row(f"g-{k}", "kmvn", "ab" * 32, rng.normal(300, 150, 3 * int(rng.integers(4, 21))))
             for k in range(n_gamma)]
    q = np.linspace(0, 0.5, 100)[:, None] * np.ones(3)
    bands = [{
        "material_id": f"b-{k}", "model": "kmvn", "model_sha256": "ab" * 32, "qpoints": q,
        "distances_per_angstrom": np.linspace(0, 3, 100).astype(np.float32), "label_indices": [0, 99],
        "labels": ["GAMMA", "X"], "segment_breaks": [],
        "frequencies_cm1": np.sort(rng.normal(300, 150, (100, 60)), axis=1).astype(np.float32),
    } for k in range(n_bands)]
    return gamma, bands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=int, default=100_000)
    parser.add_argument("--bands", type=int, default=10_000)
    parser.add_argument("--shard", type=int, default=5_000, help="rows per shard")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gamma, bands = synthetic(args.gamma, args.bands, rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rdir = release_dir(root, "bench")
        t0 = time.perf_counter()
        for k in range(0, len(gamma), args.shard):
            write_shard(rdir, "bench", f"g{k // args.shard:05d}", {"gamma": gamma[k : k + args.shard]})
        t_gamma = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(0, len(bands), args.shard // 10):
            write_shard(rdir, "bench", f"b{k // (args.shard // 10):05d}", {"bands": bands[k : k + args.shard // 10]})
        t_bands = time.perf_counter() - t0
        t0 = time.perf_counter()
        finalize_release(root, "bench")
        t_final = time.perf_counter() - t0
        size = {t: sum(p.stat().st_size for p in (rdir / t).rglob("*.parquet")) / 2**20 for t in ("gamma", "bands")}
        raw = {"gamma": sum(len(r["frequencies_cm1"]) for r in gamma) * 4 / 2**20,
               "bands": args.bands * 100 * 60 * 4 / 2**20}
        con = connect(root)
        t0 = time.perf_counter()
        n = con.sql("SELECT frequencies_cm1 FROM bands").to_arrow_table().num_rows
        t_read = time.perf_counter() - t0
        latency = {}
        for name, sql in QUERIES.items():
            con.execute(sql).fetchall()
            t0 = time.perf_counter()
            for _ in range(3):
                con.execute(sql).fetchall()
            latency[name] = (time.perf_counter() - t0) / 3
    print(f"\nStorage benchmark — {platform.machine()}, {platform.python_version()}")
    print(f"{'what':<34}{'rows':>9}{'seconds':>10}{'raw MB/s':>10}{'on disk MB':>12}")
    print(f"{'write gamma (validate+zstd)':<34}{args.gamma:>9}{t_gamma:>10.2f}{raw['gamma'] / t_gamma:>10.1f}{size['gamma']:>12.1f}")
    print(f"{'write bands (100 q x 60)':<34}{args.bands:>9}{t_bands:>10.2f}{raw['bands'] / t_bands:>10.1f}{size['bands']:>12.1f}")
    print(f"{'finalize (sha256 manifest)':<34}{'':>9}{t_final:>10.2f}")
    print(f"{'read all bands via DuckDB':<34}{n:>9}{t_read:>10.2f}{raw['bands'] / t_read:>10.1f}")
    print("\nDuckDB query latency (ms)")
    for name, t in latency.items():
        print(f"  {name:<28}{t * 1000:>8.1f}")
    out = Path(__file__).parent / "results" / "storage.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"write_gamma_s": t_gamma, "write_bands_s": t_bands, "finalize_s": t_final,
                               "read_bands_s": t_read, "size_mb": size, "raw_mb": raw, "latency_s": latency}, indent=1))


if __name__ == "__main__":
    main()
