"""The README's and the Born card's headline numbers are those of the shipped model cards and of the
saved benchmark results, so a release cannot ship with last release's numbers in its tables.

Each check reads one line the README shows for *this* release, formats the number the card or result
file holds the way the README rounds it, and compares the text. History (earlier releases' numbers)
is prose and is not checked here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CHECKPOINTS = ROOT / "vgnn_core" / "pretrained" / "checkpoints"
RESULTS = ROOT / "benchmarks" / "results"


def _card(name: str) -> dict:
    return json.loads((CHECKPOINTS / f"{name}.card.json").read_text())


def _line(text: str, prefix: str) -> str:
    """The one line of ``text`` that starts with ``prefix``."""
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"{len(lines)} lines start with {prefix!r}"
    return lines[0]


def _cells(row: str) -> list[str]:
    return [c.strip().strip("*").strip() for c in row.strip().strip("|").split("|")]


def _pair(stats: dict) -> str:
    return f"{stats['mean']:.1f} / {stats['median']:.1f}"


def test_results_table_rows_are_the_shipped_cards():
    k, m = _card("kmvn")["metrics"], _card("mvn")["metrics"]
    row = _cells(_line(README, "| **this release, k-MVN"))
    epochs = re.search(r"\(3 members: ([\d, and]+) epochs\)", row[0])
    assert epochs, row[0]
    assert row[1:6] == [
        _pair(k["test"]["bands"]["mae"]),
        _pair(k["reference_test_subset"]["bands"]["mae"]),
        _pair(k["phonondb_test"]["bands"]["mae"]),
        _pair(k["phonondb_test"]["gamma"]["mae"]),
        f"{k['phonondb_test']['bands']['mae_hydrogen']['mean']:.1f}",
    ]
    row = _cells(_line(README, "| **this release, MVN (Γ)**"))
    assert row[1:5] == [
        "Γ " + _pair(m["test"]["gamma"]["mae"]),
        "Γ " + _pair(m["reference_test_subset"]["gamma"]["mae"]),
        "–",
        _pair(m["phonondb_test"]["gamma"]["mae"]),
    ]
    # the sentence naming the val numbers the ensemble was chosen on
    assert (f"ensemble reads `val` Petretto {k['val']['bands']['mae']['mean']:.1f} and phonondb "
            f"{k['phonondb_val']['bands']['mae']['mean']:.1f} (k-MVN bands; MVN Γ {m['val']['gamma']['mae']['mean']:.1f} "
            f"and {m['phonondb_val']['gamma']['mae']['mean']:.1f})." in README)


@pytest.mark.parametrize("split, label", [("phonondb_test", "phonondb, phonopy's path | 281 of 477"),
                                          ("phonondb_test_commensurate", "phonondb, exact commensurate q-points | 97 of 477"),
                                          ("test", "Petretto | 19 of 156")])
def test_instability_table_is_the_shipped_card(split, label):
    bands = _card("kmvn")["metrics"][split]["bands"]
    row = _cells(_line(README, f"| {label} | "))

    def prf(d: dict) -> str:
        return f"{d['precision']:.2f} / {d['recall']:.2f} / {d['f1']:.2f}"

    assert row[2] == prf(bands["instability"])
    assert row[3].replace("*", "") == prf(bands["likely_unstable"])


def test_uncertainty_formula_is_the_shipped_one():
    u = _card("kmvn")["uncertainty_model"]
    assert (f"(k-MVN: u = {math.exp(u['log_scale']):.2f} · s^{u['spread']:.2f} · ω_max^{u['frequency']:.2f} · "
            f"{math.exp(u['hydrogen']):.2f}^[H])" in README)


def test_vs_mlip_tables_are_the_saved_benchmark():
    result = json.loads((RESULTS / "vs_mlip.json").read_text())
    s, speedups = result["summary"], result["speedups"]
    row = _cells(_line(README, "| **k-MVN** (bands + C_v mesh) |"))
    assert row[1:7] == [_pair(s["kmvn_bands_mae"]), _pair(s["kmvn_gamma_mae"]), f"{s['kmvn_bands_nmse']['mean']:.4f}",
                        f"{100 * s['kmvn_cv300_rel']['mean']:.1f} %", f"{s['kmvn_s']['mean']:.3f}",
                        f"{s['kmvn_batched_s']['mean']:.3f}"]
    row = _cells(_line(README, "| **MVN** (Γ only) |"))
    assert row[2] == _pair(s["mvn_gamma_mae"]) and row[5:7] == [f"{s['mvn_s']['mean']:.3f}",
                                                                 f"{s['mvn_batched_s']['mean']:.4f}"]
    row = _cells(_line(README, "| CHGNet + phonopy |"))
    assert row[1:3] == [_pair(s["mlip_bands_mae"]), _pair(s["mlip_gamma_mae"])] and row[5] == f"{s['mlip_s']['mean']:.2f}"
    for prefix, key in (("| k-MVN, everything", "kmvn"), ("| MVN, Γ spectrum", "mvn")):
        row = _cells(_line(README, prefix))
        assert row[1:3] == [f"{speedups[key + '_alone']:.0f}×", f"{speedups[key + '_batched']:.0f}×"]
    row = _cells(_line(README, "| force constants only:"))
    assert row[1].startswith(f"{speedups['force_constants_alone']:.0f}×")
    assert row[2].startswith(f"{speedups['force_constants_batched']:.0f}×")
    assert f"k-MVN has {result['band_mae_ratio_kmvn_vs_mlip']:.2f}× CHGNet's band error" in README


def test_born_card_is_the_shipped_heads():
    card = (CHECKPOINTS / "born_heads.md").read_text()
    sha = hashlib.sha256((CHECKPOINTS / "born_heads.pt").read_bytes()).hexdigest()
    assert f"sha256 `{sha}`" in card
    metrics = json.loads((RESULTS / "training" / "born_heads.metrics.json").read_text())
    for prefix, split in (("| train (", "train"), ("| val | ", "val"), ("| test | ", "test")):
        row = _cells(_line(card, prefix))
        heads = metrics[split]["heads"]
        assert row[2].split(" / ")[0].strip("*") == f"{heads['born_mae']:.3f}"
        assert row[3].split(" / ")[0].strip("*").strip() == f"{100 * heads['eps_rel_median']:.1f} %"
    # the README's Born paragraph quotes the same test numbers
    assert f"Z* MAE {metrics['test']['heads']['born_mae']:.3f} e per component" in README


def test_heat_capacity_and_twin_free_sentences_are_the_shipped_card():
    k = _card("kmvn")["metrics"]
    hc = k["test"]["heat_capacity"]
    rel, mae = hc["cv300_relative_error"], hc["cv_mae_J_K_mol"]
    # stated twice: with the band results and in the thermal-properties section
    assert f"within {100 * rel['mean']:.2f} % of DFPT (mean, Petretto `test`)" in README
    assert (f"error is {100 * rel['mean']:.2f} % mean, {100 * rel['median']:.2f} % median; the C_v(T) MAE is "
            f"{mae['mean']:.2f} / {mae['median']:.2f} J/K/mol (mean / median), {hc['seconds_per_material']:.3f} s") in README
    twin = [f"{k[s]['twin_free']['bands_mae_mean']:.1f}" for s in ("test", "reference_test_subset", "phonondb_test")]
    assert f"Petretto `test` {twin[0]}, the 66 {twin[1]},\nphonondb `test` {twin[2]}." in README
    commensurate = k["phonondb_test_commensurate"]["bands"]["mae"]
    assert f"At the exact commensurate q-points of phonondb `test`: {_pair(commensurate)}." in README
    # the acoustic bound the README states holds on every split of both cards
    bound = float(re.search(r"acoustic \|ω\(Γ\)\| < (\d+e-\d+) cm⁻¹ everywhere", README).group(1))
    for name in ("kmvn", "mvn"):
        for split in _card(name)["metrics"].values():
            if isinstance(split, dict) and "acoustic_gamma_cm1" in split:
                assert split["acoustic_gamma_cm1"]["max"] < bound
