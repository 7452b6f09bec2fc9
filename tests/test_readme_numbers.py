"""The numbers for this release in README.md, benchmarks/README.md and the Born card are those of the
shipped model cards and of the saved results, so a release cannot ship with last release's numbers in
its tables and sentences.

The places and their formatting are `benchmarks/readme_numbers.py`'s slots (the tool that also writes
them); this file checks each one, and checks the tool on documents with stale numbers.
History (earlier releases' numbers) is prose and is not checked here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from vgnn_core.pretrained.registry import shipped_checkpoints

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "benchmarks" / "readme_numbers.py")
rn = importlib.util.module_from_spec(_spec)
sys.modules["readme_numbers"] = rn  # dataclasses look their module up
_spec.loader.exec_module(rn)

DOCUMENTS = {name: path.read_text() for name, path in rn.DOCUMENTS.items()}
SOURCES = rn.Sources()
SLOT = {slot.name: slot for slot in rn.SLOTS}


@pytest.mark.parametrize("slot", rn.SLOTS, ids=lambda slot: slot.name)
def test_slot_holds_the_shipped_numbers(slot):
    match = rn.find(slot, DOCUMENTS[slot.document])  # the words are there, once
    assert rn.shown(slot, match) == slot.values(SOURCES)


def test_members_epochs_are_named_alike_in_the_row_and_the_targets_sentence():
    epochs = rn.members_epochs(DOCUMENTS["README"])
    assert re.fullmatch(r"\d+, \d+ and \d+", epochs)
    assert rn.EPOCHS_SENTENCE.search(DOCUMENTS["README"]).group(1) == epochs


def _stale(document: str, slot_name: str, k: int, value: str) -> str:
    """``document`` with the ``k``-th number of a slot replaced by ``value``."""
    slot = SLOT[slot_name]
    match = rn.find(slot, document)
    group = [g for g, numbered in enumerate(slot.numbered, start=1) if numbered][k]
    return rn._splice(document, match, {group: value})


def test_stale_numbers_are_found_and_written_back():
    readme = _stale(DOCUMENTS["README"], "vs CHGNet, MVN row", 0, "99.9")
    readme = _stale(readme, "LO–TO table, `val` LO error at Γ (signed)", 1, "+99.0")
    readme = _stale(readme, "uncertainty formula", 3, "0.11")
    readme = _stale(readme, "NAC cost, rounds", 2, "9.99")
    card = _stale(DOCUMENTS["born card"], "Born card checksum", 0, "0" * 64)
    card = _stale(card, "Born card, targets", 0, "0.999")
    bench = _stale(DOCUMENTS["benchmarks"], "instability classifier", 13, "+9.999")
    stale = {"README": readme, "benchmarks": bench, "born card": card, "rounds": DOCUMENTS["rounds"]}
    found = {(f.slot.name, tuple(f.shown)) for f in rn.check(stale, SOURCES)}
    assert {name for name, _ in found} == {"vs CHGNet, MVN row", "LO–TO table, `val` LO error at Γ (signed)",
                                          "uncertainty formula", "NAC cost, rounds", "instability classifier",
                                          "Born card checksum", "Born card, targets"}
    fixed = rn.write(stale, SOURCES)
    assert fixed == DOCUMENTS  # numbers back, every other character as it was


def test_a_wrong_number_in_the_results_row_is_corrected_without_history():
    stale = dict(DOCUMENTS, README=_stale(DOCUMENTS["README"], "results table, k-MVN", 0, "99.9"))
    assert [f.slot.name for f in rn.check(stale, SOURCES)] == ["results table, k-MVN"]
    assert rn.write(stale, SOURCES) == DOCUMENTS


def test_a_new_release_keeps_the_last_results_row_as_history():
    old_epochs = rn.members_epochs(DOCUMENTS["README"])
    readme = DOCUMENTS["README"].replace(f"(3 members: {old_epochs} epochs)", f"(3 members:  {old_epochs} epochs)")
    stale = dict(DOCUMENTS, README=_stale(readme, "results table, k-MVN", 0, "99.9"))  # last release's numbers
    fixed = rn.write(stale, SOURCES, epochs="1, 2 and 3")["README"]
    assert rn.check(dict(DOCUMENTS, README=fixed), SOURCES) == []
    assert rn.members_epochs(fixed) == "1, 2 and 3"
    assert rn.EPOCHS_SENTENCE.search(fixed).group(1) == "1, 2 and 3"
    history = [line for line in fixed.splitlines() if line.startswith(f"| three members: {old_epochs} epochs |")]
    assert len(history) == 1 and "| 99.9 /" in history[0] and "**" not in history[0]
    lines = fixed.splitlines()
    assert lines[lines.index(history[0]) + 1].startswith("| **this release, k-MVN (3 members:  1, 2 and 3 epochs)** |")
    # the row that was the release before moves to the end of ROUNDS.md's table; the README keeps one history row
    before = [line for line in DOCUMENTS["README"].splitlines() if rn.HISTORY_LINE.fullmatch(line)]
    assert len(before) == 1 and [line for line in lines if rn.HISTORY_LINE.fullmatch(line)] == history
    rounds = rn.write(stale, SOURCES, epochs="1, 2 and 3")["rounds"]
    table = rounds[rounds.index(rn.ROUNDS_TABLE):].split("\n\n")[2].splitlines()
    assert table[-1] == before[0] and table[:-1] == DOCUMENTS["rounds"][DOCUMENTS["rounds"].index(rn.ROUNDS_TABLE):].split("\n\n")[2].splitlines()


def test_acoustic_bound_in_the_readme_holds_on_every_split():
    bound = float(re.search(r"acoustic \|ω\(Γ\)\| < (\d+e-\d+) cm⁻¹ everywhere", DOCUMENTS["README"]).group(1))
    for card in (SOURCES.kmvn, SOURCES.mvn):
        for split in card["metrics"].values():
            if isinstance(split, dict) and "acoustic_gamma_cm1" in split:
                assert split["acoustic_gamma_cm1"]["max"] < bound


def test_the_classifier_margins_are_against_the_best_simple_rule():
    """The instability classifier's margin is its F1 minus the best of the bands' own minimum, the
    ``likely_unstable`` flag and flagging every material, per split; a margin that rounds to zero is +0.000."""
    def split(classifier, own, flag, every):
        return {"F1": {"logistic, + size": classifier, "bands' own minimum": own, "likely_unstable": flag,
                       "flag every material": every}}

    class Fake:
        instability_cv = {"phonondb path val": split(0.70, 0.50, 0.66, 0.60),     # the flag is the best rule
                          "phonondb commensurate val": split(0.58, 0.40, 0.50, 0.62),  # flagging every material
                          "petretto2018 path val": split(0.6004, 0.6008, 0.30, 0.10)}  # a hair below: +0.000
    assert rn._icv_margins(Fake()) == ["+0.040", "−0.040", "+0.000"]


def test_the_cv_results_are_this_releases():
    """The saved cross-validations scored the shipped k-MVN: instability_cv.json's rules on the path
    splits are the card's `val` scores, and uncertainty_cv.json and uncertainty_latent.json name the shipped
    checkpoint."""
    for split, card_split in (("phonondb path val", "phonondb_val"), ("petretto2018 path val", "val")):
        saved, card = SOURCES.instability_cv[split], SOURCES.k(f"{card_split}.bands")
        assert saved["F1"]["bands' own minimum"] == pytest.approx(card["instability"]["f1"], abs=1e-12)
        assert saved["F1"]["likely_unstable"] == pytest.approx(card["likely_unstable"]["f1"], abs=1e-12)
        assert saved["n_unstable"] == card["instability"]["n_unstable"]
    assert SOURCES.uncertainty_cv["checkpoint_sha256"] == shipped_checkpoints()["kmvn"]["sha256"]
    latent = json.loads((ROOT / "benchmarks" / "results" / "uncertainty_latent.json").read_text())
    assert latent["checkpoint_sha256"] == shipped_checkpoints()["kmvn"]["sha256"]


def test_the_met_and_not_met_words_follow_the_numbers():
    """The Born targets' words (Z* ≤ 0.15 e not met, ε∞ ≤ 10 % met) agree with the shipped heads' `test`."""
    heads = SOURCES.born["test"]["heads"]
    z_met, eps_met = heads["born_mae"] <= 0.15, heads["eps_rel_median"] <= 0.10
    card, readme = (" ".join(DOCUMENTS[name].split()) for name in ("born card", "README"))
    assert ("Z* MAE ≤ 0.15 e (**not met**:" in card) == (not z_met)
    assert ("the issue's target 0.15 is not met)" in readme) == (not z_met)
    assert ("(met on test," in card) == eps_met
    assert ("target 10 %, met);" in readme) == eps_met


def test_the_uncertainty_candidates_prose_holds():
    """benchmarks/README.md: the per-element prior lifts both Spearmans, yet no candidate lifts both top-10 % ratios
    by more than 0.05 (so none is taken); the prior and the squared log spread lower both, the number
    of elements and the depth lift both by hundredths or less."""
    rows = SOURCES.uncertainty_cv["candidates"]["out_of_fold"]
    base = rows[rn.UCV_CANDIDATES_BASE]
    readme = " ".join(DOCUMENTS["benchmarks"].split())
    assert "no candidate lifts both top-10 % ratios by more than 0.05: the prior and the squared log spread lower " \
           "both, the number of elements and the depth lift both by hundredths or less" in readme
    for source in ("phonondb", "petretto2018"):
        assert rows["+ per-element error prior"][source]["spearman"] > base[source]["spearman"]
    lift = {name: [rows[name][src]["top_to_rest_ratio"] - base[src]["top_to_rest_ratio"]
                   for src in ("phonondb", "petretto2018")] for name in rn.UCV_CANDIDATES}
    assert all(min(d) <= 0.05 for d in lift.values())
    for name in ("+ per-element error prior", "+ (log spread)²"):
        assert max(lift[name]) < 0
    for name in ("+ number of elements", "lowest mode's depth for [unstable]"):
        assert 0 < min(lift[name]) and max(lift[name]) < 0.05


def test_older_history_rows_move_to_a_rounds_table_that_ends_the_file():
    rounds = DOCUMENTS["rounds"]
    table_only = rounds[:rounds.index("\n\n", rounds.index("\n|", rounds.index(rn.ROUNDS_TABLE)))]  # the table last
    older = rn.HISTORY_ROW.replace("{epochs}", "1, 2 and 3").format(*["9.9"] * 9)
    readme = DOCUMENTS["README"].replace("| three members: ", older + "\n| three members: ", 1)
    for ending in ("", "\n"):
        moved_readme, moved_rounds = rn.retire_history(readme, table_only + ending)
        assert moved_readme == DOCUMENTS["README"] and moved_rounds.rstrip("\n").endswith("\n" + older)
    with pytest.raises(LookupError, match="section"):
        rn.retire_history(readme, "# no table here\n")
