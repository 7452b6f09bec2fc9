"""The README's and the Born card's numbers for this release are those of the shipped model cards and
of the saved results, so a release cannot ship with last release's numbers in its tables and sentences.

The places and their formatting are `benchmarks/readme_numbers.py`'s slots (the tool that also writes
them); this file checks each one, and checks the tool itself on a document with a stale number.
History (earlier releases' numbers) is prose and is not checked here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "benchmarks" / "readme_numbers.py")
readme_numbers = importlib.util.module_from_spec(_spec)
sys.modules["readme_numbers"] = readme_numbers  # dataclasses look their module up
_spec.loader.exec_module(readme_numbers)

DOCUMENTS = {"README": readme_numbers.README.read_text(), "born card": readme_numbers.BORN_CARD.read_text()}
SOURCES = readme_numbers.Sources()


@pytest.mark.parametrize("slot", readme_numbers.SLOTS, ids=lambda slot: slot.name)
def test_slot_holds_the_shipped_numbers(slot):
    match = readme_numbers._match(slot, DOCUMENTS[slot.document])  # the words are there, once
    assert readme_numbers._numbers(slot, match) == slot.values(SOURCES)


def test_every_headline_table_is_covered():
    names = {slot.name for slot in readme_numbers.SLOTS}
    for expected in ("results table, k-MVN", "results table, MVN", "val sentence", "uncertainty formula",
                     "instability table, phonondb_test", "vs CHGNet, k-MVN row", "Born card checksum",
                     "Born card, test row", "LO–TO table, `test` LO error at Γ", "C_v sentence (results)"):
        assert expected in names


def test_stale_number_is_found_and_rewritten_with_history():
    card = json.loads((readme_numbers.CHECKPOINTS / "kmvn.card.json").read_text())
    band_mean = f"{card['metrics']['test']['bands']['mae']['mean']:.1f}"
    row = next(line for line in DOCUMENTS["README"].splitlines() if line.startswith("| **this release, k-MVN"))
    stale_row = row.replace(f"**{band_mean} /", "**99.9 /", 1)
    stale = dict(DOCUMENTS, README=DOCUMENTS["README"].replace(row, stale_row))
    findings = readme_numbers.check(stale, SOURCES)
    assert [f.slot.name for f in findings] == ["results table, k-MVN"] and findings[0].shown[0] == "99.9"
    with pytest.raises(SystemExit):  # a new results row needs its members' epochs
        readme_numbers.write(stale, SOURCES)
    fixed = readme_numbers.write(stale, SOURCES, epochs="1, 2 and 3")["README"]
    assert readme_numbers.check(dict(stale, README=fixed), SOURCES) == []
    old_epochs = re.search(r"\(3 members: ([^)]*) epochs\)", row).group(1)
    history = next(line for line in fixed.splitlines() if line.startswith(f"| three members: {old_epochs} epochs |"))
    assert "99.9 /" in history and "**" not in history
    assert "| **this release, k-MVN (3 members: 1, 2 and 3 epochs)** |" in fixed


def test_acoustic_bound_in_the_readme_holds_on_every_split():
    bound = float(re.search(r"acoustic \|ω\(Γ\)\| < (\d+e-\d+) cm⁻¹ everywhere", DOCUMENTS["README"]).group(1))
    for card in (SOURCES.kmvn, SOURCES.mvn):
        for split in card["metrics"].values():
            if isinstance(split, dict) and "acoustic_gamma_cm1" in split:
                assert split["acoustic_gamma_cm1"]["max"] < bound
