"""The README's example queries: their output on the demo database, and their latency.

Run after ``make demo`` (which builds ``demo-db/``):
``python benchmarks/bench_queries.py [--release demo-db] [--markdown]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from storage.catalog import check_read_only, connect

EXAMPLES = [
    ("The stiffest crystals: highest Γ frequency, in cm⁻¹ and THz",
     "SELECT formula, spacegroup_symbol AS sg, round(max_frequency_cm1, 1) AS max_cm1, "
     "round(cm1_to_thz(max_frequency_cm1), 2) AS max_thz FROM material_summary "
     "ORDER BY max_frequency_cm1 DESC LIMIT 5"),
    ("Probably unstable crystals (`likely_unstable`: the bands, or one ensemble member alone, below −5 cm⁻¹)",
     "SELECT s.formula, round(list_min(flatten(b.frequencies_cm1)), 1) AS bands_min_cm1, "
     "round(b.uncertainty_cm1, 1) AS uncertainty_cm1 FROM bands b JOIN structures s USING (material_id, source) "
     "WHERE b.likely_unstable ORDER BY bands_min_cm1, s.formula"),
    ("Γ modes of wurtzite GaN in cm⁻¹, THz and meV",
     "SELECT mode, round(frequency_cm1, 1) AS cm1, round(cm1_to_thz(frequency_cm1), 3) AS thz, "
     "round(cm1_to_mev(frequency_cm1), 2) AS mev FROM gamma_modes "
     "WHERE material_id = 'demo-GaN-wurtzite' ORDER BY mode"),
    ("Mass and bonding in rock salts: heavier ions, softer lattice",
     "SELECT formula, round(max_frequency_cm1, 1) AS max_cm1 FROM material_summary "
     "WHERE material_id LIKE '%rocksalt' ORDER BY max_frequency_cm1 DESC"),
    ("Band-structure frequencies at the X point of the fcc crystals",
     "SELECT s.formula, list_transform(b.frequencies_cm1[b.label_indices[list_position(b.labels, 'X')] + 1], "
     "lambda x: round(x, 1)) AS at_X_cm1 FROM bands b JOIN structures s USING (material_id, source) "
     "WHERE s.spacegroup_symbol IN ('Fm-3m', 'F-43m', 'Fd-3m') AND s.nsites <= 2 ORDER BY s.formula LIMIT 8"),
    ("Phonon band width per crystal system (from the full band structures)",
     "SELECT s.spacegroup_symbol AS sg, count(*) AS n, "
     "round(avg(list_max(flatten(b.frequencies_cm1)) - list_min(flatten(b.frequencies_cm1))), 1) AS mean_width_cm1 "
     "FROM bands b JOIN structures s USING (material_id, source) GROUP BY 1 ORDER BY n DESC, sg LIMIT 6"),
    ("Highest heat capacity per atom at 300 K (k-MVN on a q-mesh; Dulong–Petit limit 24.94 J/K/mol)",
     "SELECT formula, nsites, round(heat_capacity_300K_per_atom, 2) AS cv_per_atom, "
     "round(zero_point_energy_kJ_mol, 2) AS zpe_kJ_mol_fu FROM material_summary "
     "ORDER BY heat_capacity_300K_per_atom DESC LIMIT 5"),
    ("Heat capacity of the perovskites at 100, 300 and 800 K (J/K per mole of formula units)",
     "SELECT s.formula, t.temperatures_K[3] AS T1, round(t.heat_capacity_J_K_mol[3], 1) AS cv1, "
     "t.temperatures_K[8] AS T2, round(t.heat_capacity_J_K_mol[8], 1) AS cv2, t.temperatures_K[13] AS T3, "
     "round(t.heat_capacity_J_K_mol[13], 1) AS cv3 FROM thermo t JOIN structures s USING (material_id, source) "
     "WHERE material_id LIKE '%perovskite' ORDER BY s.formula"),
    ("Where the phonon DOS of silicon peaks",
     "SELECT round(frequency_cm1, 0) AS cm1, round(states_per_cm1, 4) AS dos FROM dos_points "
     "WHERE material_id = 'demo-Si-diamond' ORDER BY states_per_cm1 DESC LIMIT 3"),
    ("The acoustic sum rule, checked over the whole database",
     "SELECT model, count(*) AS materials, max(acoustic_residual_cm1) AS worst_acoustic_cm1 FROM gamma GROUP BY model"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="demo-db")
    parser.add_argument("--markdown", action="store_true", help="print README-ready blocks")
    args = parser.parse_args()
    con = connect(args.release)
    timings = {}
    for title, sql in EXAMPLES:
        check_read_only(sql)
        con.execute(sql).fetchall()
        t0 = time.perf_counter()
        rel = con.sql(sql)
        text = str(rel)
        timings[title] = time.perf_counter() - t0
        if args.markdown:
            print(f"**{title}**\n\n```sql\n{sql}\n```\n```\n{text.rstrip()}\n```\n")
        else:
            print(f"-- {title} ({timings[title] * 1000:.1f} ms)\n{sql}\n{text}")
    out = Path(__file__).parent / "results" / "queries.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"release": str(args.release), "latency_s": timings}, indent=1))


if __name__ == "__main__":
    main()
