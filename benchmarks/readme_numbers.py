"""This release's numbers in README.md, benchmarks/README.md and the Born card, rendered from the files a release writes.

Every place the README (or ``benchmarks/README.md``, or ``born_heads.md``) quotes the shipped models' metrics is a *slot*: the
words around it with ``{}`` where a number goes, ``{sha}`` for a checksum and ``{*}`` for text
that is kept as it is (history, the members' epochs). The numbers come from the model cards
(``vgnn_core/pretrained/checkpoints``) and the saved results (``benchmarks/results``), formatted
the way the README rounds them.

    python benchmarks/readme_numbers.py            # list every slot whose numbers are not the files'
    python benchmarks/readme_numbers.py --write    # put the files' numbers in those slots

A space in a template stands for spaces or one line break, so prose can be re-wrapped freely.
When the members' epochs (summed over their runs as the k-MVN card records them,
``train_members.py``) differ from the results row's, ``--write`` starts a new release's row: the
last release's row stays above it as history and the one before moves to the table of
``benchmarks/results/training/ROUNDS.md`` (otherwise a wrong number in the row is simply
corrected); ``--epochs`` names them by hand. The history chains
in prose ("… one release back, …") are not slots: ``--write`` lists where they are, to edit by
hand. ``tests/test_readme_numbers.py`` checks every slot.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

import numpy as np

from vgnn_core.training.metrics import every_material_f1

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"
CHECKPOINTS = ROOT / "vgnn_core" / "pretrained" / "checkpoints"
BORN_CARD = CHECKPOINTS / "born_heads.md"
#: the training rounds' record, whose table takes the README's older results rows (:func:`retire_history`)
ROUNDS = ROOT / "benchmarks" / "results" / "training" / "ROUNDS.md"
ROUNDS_TABLE = "## `test` as it came, release by release"
#: the documents that hold slots, by the name a :class:`Slot` gives, and the rounds' record
DOCUMENTS = {"README": README, "benchmarks": BENCHMARKS_README, "born card": BORN_CARD, "rounds": ROUNDS}
RESULTS = ROOT / "benchmarks" / "results"

_FIELDS = {"{}": r"([−+-]?\d[\d,]*(?:\.\d+)?)", "{sha}": r"([0-9a-f]{64})", "{*}": r"([^|\n]*?)"}
_SPACE = r"(?:[ \t]+\n?|\n)[ \t]*"  # a template's space: spaces, or one line break
#: Phrases that start a history chain next to a slot, listed after --write for hand edits.
HISTORY_MARKERS = ("release back", "release before", "releases before", "runs before", "then 10 more: `val`")


class _ReleaseFile:
    """A JSON file of the release, an attribute of :class:`Sources` read on first use."""

    def __init__(self, path: Path, key: str | None = None):
        self.path, self.key = path.relative_to(ROOT), key

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, sources: Sources | None, owner: type | None = None):
        if sources is None:
            return self
        if self.name not in sources.__dict__:  # kept on the instance: read once
            data = json.loads((sources.root / self.path).read_text())
            sources.__dict__[self.name] = data if self.key is None else data[self.key]
        return sources.__dict__[self.name]


class Sources:
    """The release's files, each read on first use."""

    kmvn = _ReleaseFile(CHECKPOINTS / "kmvn.card.json")
    mvn = _ReleaseFile(CHECKPOINTS / "mvn.card.json")
    born = _ReleaseFile(RESULTS / "training" / "born_heads.metrics.json")
    born_seeds = _ReleaseFile(RESULTS / "training" / "born_heads.seeds.json", key="seeds")
    nac_eval = _ReleaseFile(RESULTS / "nac_eval.json")
    vs_mlip = _ReleaseFile(RESULTS / "vs_mlip.json")
    queries = _ReleaseFile(RESULTS / "queries.json")
    silicon = _ReleaseFile(RESULTS / "silicon.json")
    nac_cost = _ReleaseFile(RESULTS / "nac_cost.json")
    uncertainty_cv = _ReleaseFile(RESULTS / "uncertainty_cv.json")
    uncertainty_latent = _ReleaseFile(RESULTS / "uncertainty_latent.json", key="out_of_fold")
    instability_cv = _ReleaseFile(RESULTS / "instability_cv.json", key="splits")

    def __init__(self, root: Path = ROOT):
        self.root = root

    @cached_property
    def born_sha256(self) -> str:
        return hashlib.sha256((self.root / (CHECKPOINTS / "born_heads.pt").relative_to(ROOT)).read_bytes()).hexdigest()

    def k(self, path: str):
        """A value of the k-MVN card's metrics by dotted path: ``s.k("test.bands.mae")``."""
        return _dig(self.kmvn["metrics"], path)

    def m(self, path: str):
        """A value of the MVN card's metrics by dotted path."""
        return _dig(self.mvn["metrics"], path)


def _dig(d: dict, path: str):
    for key in path.split("."):
        d = d[key]
    return d


@dataclass(frozen=True)
class Slot:
    """Words with numbers in one of the documents; ``values`` gives the numbers, formatted."""

    name: str
    document: str  # a key of :data:`DOCUMENTS`: "README", "benchmarks" or "born card"
    template: str
    values: Callable[[Sources], list[str]]

    @cached_property
    def pattern(self) -> re.Pattern:
        regex = ""
        for part in re.split(r"(\{\}|\{sha\}|\{\*\})", self.template):
            if part in _FIELDS:
                regex += _FIELDS[part]
            else:
                regex += _SPACE.join(re.escape(word) for word in part.split(" "))
        return re.compile(regex)

    @cached_property
    def numbered(self) -> list[bool]:
        """Per capture group: a number (checked and written) or kept text."""
        return [field != "{*}" for field in re.findall(r"\{\}|\{sha\}|\{\*\}", self.template)]


# ---------------------------------------------------------------- formatting


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def _pair(stats: dict) -> list[str]:
    return [_f(stats["mean"]), _f(stats["median"])]


def _prf(d: dict) -> list[str]:
    return [_f(d["precision"], 2), _f(d["recall"], 2), _f(d["f1"], 2)]


def _signed(x: float, digits: int = 1) -> str:
    """``x`` with its sign (U+2212 for minus) as printed: a value that rounds to zero is +0."""
    r = round(x, digits)
    return f"{'−' if r < 0 else '+'}{abs(r):.{digits}f}"


def _thousands(x: float) -> str:
    """A ratio as the README prints a range's end: 2,400 (hundreds) from 1,000 on."""
    return f"{round(x, -2):,.0f}" if x >= 1000 else f"{x:.0f}"


# ---------------------------------------------------------------- the model cards

RESULTS_ROW = "| **this release, k-MVN (3 members: {*} epochs)** | **{} / {}** | **{} / {}** | **{} / {}** | {} / {} | **{}** |"
HISTORY_ROW = "| three members: {epochs} epochs | {} / {} | {} / {} | {} / {} | {} / {} | {} |"
HISTORY_LINE = re.compile(r"^\| three members: [\d, and]+? epochs \|.*\|$", re.M)
EPOCHS_SENTENCE = re.compile(r"the members trained ([\d, and]+?) epochs on this")
#: the k-MVN's row of the results table: a new release (``--epochs``) keeps the old one as history
RESULTS_SLOT = Slot("results table, k-MVN", "README", RESULTS_ROW,
                    lambda s: (_pair(s.k("test.bands.mae")) + _pair(s.k("reference_test_subset.bands.mae"))
                               + _pair(s.k("phonondb_test.bands.mae")) + _pair(s.k("phonondb_test.gamma.mae"))
                               + [_f(s.k("phonondb_test.bands.mae_hydrogen.mean"))]))


def _model_slots() -> list[Slot]:
    slots = [
        RESULTS_SLOT,
        Slot("results table, MVN", "README", "| **this release, MVN (Γ)** | Γ {} / {} | Γ {} / {} | – | **{} / {}** | – |",
             lambda s: (_pair(s.m("test.gamma.mae")) + _pair(s.m("reference_test_subset.gamma.mae"))
                        + _pair(s.m("phonondb_test.gamma.mae")))),
        Slot("val sentence", "README", "ensemble reads `val` Petretto {} and phonondb {} (k-MVN bands; MVN Γ {} and {}).",
             lambda s: [_f(s.k("val.bands.mae.mean")), _f(s.k("phonondb_val.bands.mae.mean")),
                        _f(s.m("val.gamma.mae.mean")), _f(s.m("phonondb_val.gamma.mae.mean"))]),
        Slot("twin-free sentence", "README", "Petretto `test` {}, the 66 {}, phonondb `test` {}. At the exact",
             lambda s: [_f(s.k(f"{x}.twin_free.bands_mae_mean")) for x in ("test", "reference_test_subset", "phonondb_test")]),
        Slot("commensurate sentence", "README", "At the exact commensurate q-points of phonondb `test`: {} / {}.",
             lambda s: _pair(s.k("phonondb_test_commensurate.bands.mae"))),
        Slot("C_v sentence (results)", "README", "within {} % of DFPT (mean, Petretto `test`)",
             lambda s: [_pct(s.k("test.heat_capacity.cv300_relative_error.mean"), 2)]),
        Slot("C_v sentence (thermal section)", "README",
             "error is {} % mean, {} % median; the C_v(T) MAE is {} / {} J/K/mol (mean / median), {} s",
             lambda s: [_pct(s.k("test.heat_capacity.cv300_relative_error.mean"), 2),
                        _pct(s.k("test.heat_capacity.cv300_relative_error.median"), 2),
                        _f(s.k("test.heat_capacity.cv_mae_J_K_mol.mean"), 2), _f(s.k("test.heat_capacity.cv_mae_J_K_mol.median"), 2),
                        _f(s.k("test.heat_capacity.seconds_per_material"), 3)]),
        Slot("targets sentence", "README",
             "`test` bands ({} ≤ 13), the 66 reference materials' bands ({} ≤ 13), phonondb `test` bands ({} ≤ 12), "
             "phonondb `test` Γ ({} ≤ 12) and the 38 hydrogen-bearing phonondb `test` materials ({} ≤ 25;",
             lambda s: [_f(s.k(p)) for p in ("test.bands.mae.mean", "reference_test_subset.bands.mae.mean",
                                             "phonondb_test.bands.mae.mean", "phonondb_test.gamma.mae.mean",
                                             "phonondb_test.bands.mae_hydrogen.mean")]),
        Slot("uncertainty formula", "README", "(k-MVN: u = {} · s^{} · ω_max^{} · {}^[H] · n^{} · {}^[unstable])",
             lambda s: [_f(math.exp(s.kmvn["uncertainty_model"]["log_scale"]), 2), _f(s.kmvn["uncertainty_model"]["spread"], 2),
                        _f(s.kmvn["uncertainty_model"]["frequency"], 2), _f(math.exp(s.kmvn["uncertainty_model"]["hydrogen"]), 2),
                        _f(s.kmvn["uncertainty_model"].get("atoms", 0.0), 2),
                        _f(math.exp(s.kmvn["uncertainty_model"].get("unstable", 0.0)), 2)]),
        Slot("uncertainty sentence", "README",
             "This release on `val`, Petretto and phonondb: Spearman {} and {}, top 10 % against the rest {}× and {}×; on `test` as it came: phonondb Spearman {} (target 0.7), "
             "commensurate {}, Petretto {}; the 10 % most uncertain phonondb materials have {}× the error of the rest "
             "({} against {}; target ≥ 3×,",
             lambda s: [_f(s.k("val.uncertainty.spearman"), 2), _f(s.k("phonondb_val.uncertainty.spearman"), 2),
                        _f(s.k("val.uncertainty.top_to_rest_ratio")), _f(s.k("phonondb_val.uncertainty.top_to_rest_ratio")),
                        _f(s.k("phonondb_test.uncertainty.spearman"), 2),
                        _f(s.k("phonondb_test_commensurate.uncertainty.spearman"), 2), _f(s.k("test.uncertainty.spearman"), 2),
                        _f(s.k("phonondb_test.uncertainty.top_to_rest_ratio")), _f(s.k("phonondb_test.uncertainty.top_mean_error")),
                        _f(s.k("phonondb_test.uncertainty.rest_mean_error"))]),
        Slot("uncertainty sentence, Petretto ratio", "README", "not met), Petretto {}×.",
             lambda s: [_f(s.k("test.uncertainty.top_to_rest_ratio"))]),
        Slot("uncertainty's size on test", "README",
             "a mean uncertainty of {} cm⁻¹ against a mean MAE of {} on phonondb, {} against {} on Petretto; {} % and {} % of "
             "the materials are within their uncertainty, {} % and {} % within twice it",
             lambda s: [_f(s.k(f"{split}.uncertainty.{key}")) for split in ("phonondb_test", "test")
                        for key in ("mean_uncertainty", "mean_error")]
                       + [_pct(s.k(f"{split}.uncertainty.{key}"), 0) for key in ("share_within_uncertainty", "share_within_twice_uncertainty")
                          for split in ("phonondb_test", "test")]),
        Slot("instability flag's recall gain", "README", "The flag raises phonondb's recall by {} % and costs precision",
             lambda s: [_f(100 * (s.k("phonondb_test.bands.likely_unstable.recall")
                                  / s.k("phonondb_test.bands.instability.recall") - 1), 0)]),
        Slot("instability flag against the bands' minimum", "README",
             "(at the commensurate q-points {*}, {} against {}; on Petretto's 19 {*}, {} against {})",
             lambda s: [v for split in ("phonondb_test_commensurate", "test") for v in _leader_first(s, split)]),
        Slot("instabilities by the DFT supercell", "benchmarks",
             "For the {} `test` materials whose DFT supercell is the primitive cell itself, the path has {} unstable "
             "and Γ, their one exact point, {} (such a supercell cannot show an instability anywhere else: the other {} "
             "are interpolated,", lambda s: _one_cell_supercells(s)),
        Slot("instability flag by the DFT supercell", "benchmarks",
             "the flag's F1 on phonopy's path is {}, {}, {} and {} on `test` (`val`: {}, {}, {} and {}), against {}, {}, {} "
             "and {} for flagging every material:", lambda s: _flag_by_supercell(s)),
        Slot("instability val sentence", "README", "this release's `val`: {} → {} and {} → {})",
             lambda s: [_f(s.k(f"{split}.bands.{key}.f1"), 2) for split in ("phonondb_val", "val")
                        for key in ("instability", "likely_unstable")]),
    ]
    for split, label, n_from in (("phonondb_test", "phonondb, phonopy's path", "phonondb_test"),
                                 ("phonondb_test_commensurate", "phonondb, exact commensurate q-points", "phonondb_test"),
                                 ("test", "Petretto", "test")):
        slots.append(Slot(f"instability table, {split}", "README",
                          f"| {label} | {{}} of {{}} | {{}} / {{}} / {{}} | {{}} / {{}} / **{{}}** | {{}} |",
                          lambda s, split=split, n_from=n_from: _instability_row(s, split, n_from)))
    return slots


#: the README's sizes of DFT supercell, as the card labels them (:data:`~vgnn_core.training.evaluation.SUPERCELL_CELL_BINS`)
SUPERCELL_SIZES = ("1", "2–4", "5–8", "≥9")


def _supercell_bin(s: Sources, split: str, cells: str) -> dict:
    """One size of DFT supercell of the k-MVN card's ``split`` (``bands.by_supercell_cells``)."""
    for b in s.k(f"{split}.bands.by_supercell_cells"):
        if b["cells"] == cells:
            return b
    raise ValueError(f"the k-MVN card's {split} has no materials with {cells} primitive cells in the DFT supercell")


def _one_cell_supercells(s: Sources) -> list[str]:
    """Test materials whose DFT supercell is one primitive cell, unstable on phonopy's path and at Γ."""
    path, gamma = (_supercell_bin(s, split, "1") for split in ("phonondb_test", "phonondb_test_commensurate"))
    on_path, at_gamma = path["instability"]["n_unstable"], gamma["instability"]["n_unstable"]
    return [str(path["n"]), str(on_path), str(at_gamma), str(on_path - at_gamma)]


def _flag_by_supercell(s: Sources) -> list[str]:
    """``likely_unstable``'s F1 per size of DFT supercell (test, then val), then that of flagging every test material."""
    f1 = [_f(_supercell_bin(s, split, c)["likely_unstable"]["f1"], 2) for split in ("phonondb_test", "phonondb_val")
          for c in SUPERCELL_SIZES]
    every = [_supercell_bin(s, "phonondb_test", c) for c in SUPERCELL_SIZES]
    return f1 + [_f(every_material_f1(b["instability"]["n_unstable"], b["n"]), 2) for b in every]


def _instability_row(s: Sources, split: str, n_from: str) -> list[str]:
    bands = s.k(f"{split}.bands")
    n_unstable, n = bands["instability"]["n_unstable"], len(s.kmvn["per_material"][n_from])
    return ([str(n_unstable), str(n)] + _prf(bands["instability"]) + _prf(bands["likely_unstable"])
            + [_f(every_material_f1(n_unstable, n), 2)])


# ---------------------------------------------------------------- against CHGNet + phonopy


def _vs_mlip_slots() -> list[Slot]:
    def sm(s: Sources, key: str, stat: str = "mean") -> float:
        return s.vs_mlip["summary"][key][stat]

    def sp(s: Sources, key: str) -> float:
        return s.vs_mlip["speedups"][key]

    def eigen_ms(s: Sources, total: str, fc: str) -> float:  # what is left after the force constants
        return 1000 * (sm(s, total) - sm(s, fc))

    return [
        Slot("vs CHGNet, run sentence", "README", "(CHGNet took {} s per material against {*} s in the release before's run, "
             "our batched route {} s against {*}):", lambda s: [_f(sm(s, "mlip_s"), 2), _f(sm(s, "kmvn_batched_s"), 3)]),
        Slot("vs CHGNet, k-MVN row", "README", "| **k-MVN** (bands + C_v mesh) | **{} / {}** | {} / {} | **{}** | **{} %** | **{}** | **{}** |",
             lambda s: (_pair(s.vs_mlip["summary"]["kmvn_bands_mae"]) + _pair(s.vs_mlip["summary"]["kmvn_gamma_mae"])
                        + [_f(sm(s, "kmvn_bands_nmse"), 4), _pct(sm(s, "kmvn_cv300_rel")), _f(sm(s, "kmvn_s"), 3),
                           _f(sm(s, "kmvn_batched_s"), 3)])),
        Slot("vs CHGNet, MVN row", "README", "| **MVN** (Γ only) | – | **{} / {}** | – | – | **{}** | **{}** |",
             lambda s: _pair(s.vs_mlip["summary"]["mvn_gamma_mae"]) + [_f(sm(s, "mvn_s"), 3), _f(sm(s, "mvn_batched_s"), 4)]),
        Slot("vs CHGNet, CHGNet row", "README", "| CHGNet + phonopy | {} / {} | {} / {} | {} | {} % | {} | – |",
             lambda s: (_pair(s.vs_mlip["summary"]["mlip_bands_mae"]) + _pair(s.vs_mlip["summary"]["mlip_gamma_mae"])
                        + [_f(sm(s, "mlip_bands_nmse"), 4), _pct(sm(s, "mlip_cv300_rel")), _f(sm(s, "mlip_s"), 2)])),
        Slot("vs CHGNet, k-MVN speed-up", "README", "| k-MVN, everything (bands + C_v) | {}× | **{}×** |",
             lambda s: [_f(sp(s, "kmvn_alone"), 0), _f(sp(s, "kmvn_batched"), 0)]),
        Slot("vs CHGNet, MVN speed-up", "README", "| MVN, Γ spectrum | {}× | **{}×** |",
             lambda s: [_f(sp(s, "mvn_alone"), 0), _f(sp(s, "mvn_batched"), 0)]),
        Slot("vs CHGNet, force-constant speed-up", "README",
             "| force constants only: CHGNet displacements + phonopy ({} s) vs the k-MVN network | {}× ({} ms) | **{}×** ({} ms) |",
             lambda s: [_f(sm(s, "mlip_fc_s"), 2), _f(sp(s, "force_constants_alone"), 0), _f(1000 * sm(s, "kmvn_fc_s"), 0),
                        _f(sp(s, "force_constants_batched"), 0), _f(1000 * sm(s, "kmvn_fc_batched_s"))]),
        Slot("vs CHGNet, error ratio", "README", "k-MVN has {}× CHGNet's band error (lower on {} % of the materials; on the 66 "
             "`reference_test_subset` materials {} vs {} cm⁻¹).", _error_ratio),
        Slot("vs CHGNet, CHGNet's seconds", "README", "its mean was {} s per material this run (median {} s) and",
             lambda s: [_f(sm(s, "mlip_s"), 2), _f(sm(s, "mlip_s", "median"), 2)]),
        Slot("vs CHGNet, speed-up sentence", "README", "{}× now, for a {} % lower band error (18.36 → {} cm⁻¹).",
             lambda s: [_f(sp(s, "kmvn_batched"), 0), _f(100 * (1 - sm(s, "kmvn_bands_mae") / 18.36), 0),
                        _f(sm(s, "kmvn_bands_mae"), 2)]),
        Slot("vs CHGNet, eigen-solve bound", "README",
             "phonopy takes {} ms per material for that ({*} ms in the release before's run); our code takes {} ms batched "
             "({*}). With a network that cost nothing, the total ratio would still be at most {} s / {} ms ≈ {}× (",
             lambda s: [_f(eigen_ms(s, "mlip_s", "mlip_fc_s"), 0), _f(eigen_ms(s, "kmvn_batched_s", "kmvn_fc_batched_s"), 0),
                        _f(sm(s, "mlip_s"), 2), _f(eigen_ms(s, "mlip_s", "mlip_fc_s"), 0),
                        _f(1000 * sm(s, "mlip_s") / eigen_ms(s, "mlip_s", "mlip_fc_s"), 0)]),
        Slot("vs CHGNet, median", "README", "takes only {} s (median) here.", lambda s: [_f(sm(s, "mlip_s", "median"))]),
        Slot("vs CHGNet, force-constant ratio", "README", "the force-constant step, is {}× faster batched (median per material "
             "{}×, range {}–{}×).", _force_constant_ratios),
        Slot("MVN batched time", "benchmarks", "(MVN Γ spectra batched: {} ms per material in this release's run",
             lambda s: [_f(1000 * sm(s, "mvn_batched_s"))]),
    ]


def _error_ratio(s: Sources) -> list[str]:
    rows = s.vs_mlip["materials"]
    reference = {r["material_id"] for r in s.kmvn["per_material"]["reference_test_subset"]}
    ours = [r["kmvn_bands_mae"] for r in rows if r["material_id"] in reference]
    theirs = [r["mlip_bands_mae"] for r in rows if r["material_id"] in reference]
    lower = np.mean([r["kmvn_bands_mae"] < r["mlip_bands_mae"] for r in rows])
    return [_f(s.vs_mlip["band_mae_ratio_kmvn_vs_mlip"], 2), _pct(lower, 0), _f(np.mean(ours)), _f(np.mean(theirs))]


def _force_constant_ratios(s: Sources) -> list[str]:
    ratios = np.array([r["mlip_fc_s"] / r["kmvn_fc_batched_s"] for r in s.vs_mlip["materials"]])
    return [_f(s.vs_mlip["speedups"]["force_constants_batched"], 0), _f(np.median(ratios), 0), _f(ratios.min(), 0),
            _thousands(ratios.max())]


# ---------------------------------------------------------------- LO–TO and Born charges

NAC_ROWS = (("`val` bands MAE", "val", "band_mae"), ("`val` near Γ", "val", "near_gamma_mae"),
            ("`val` whole spectrum at Γ", "val", "gamma_end_mae"),
            ("`val` LO error at Γ (signed)", "val", "lo_signed"), ("`test` bands MAE", "test", "band_mae"),
            ("`test` near Γ", "test", "near_gamma_mae"), ("`test` whole spectrum at Γ", "test", "gamma_end_mae"),
            ("`test` LO error at Γ", "test", "lo"))
NAC_VARIANTS = ("none", "predicted", "dfpt", "gamma_only")  # the table's columns


def _nac_row(s: Sources, split: str, key: str) -> list[str]:
    out = []
    for variant in NAC_VARIANTS:
        g = s.nac_eval["summaries"][split]["all"][variant]
        if key in ("lo", "lo_signed"):
            out.append(_f(g["lo_abs_error_mean"]))
            if key == "lo_signed":
                out.append(_signed(g["lo_error_mean_signed"]))
        else:
            out.append(_f(g[key], 2))
    return out


def _leader_first(s: Sources, split: str) -> list[str]:
    """The flag's and the bands' own F1 on ``split``, higher first (the words around them say which leads)."""
    f1 = [_f(s.k(f"{split}.bands.{key}.f1"), 2) for key in ("likely_unstable", "instability")]
    return sorted(f1, key=float, reverse=True)


def _born_val(best: dict) -> list[str]:
    return [_f(best["val_born_mae"], 3), _pct(best["val_eps_rel_median"]), _f(best["score"], 3)]


def _born_test(test: dict) -> list[str]:
    return [_f(test["heads"]["born_mae"], 3), _pct(test["heads"]["eps_rel_median"]), _f(test["lo_to"]["split_mae_cm1"])]


def _born_splitting(s: Sources) -> list[str]:
    """The Born card's LO–TO sentence: DFPT splittings and the predicted charges' errors (test)."""
    rows, summary = s.born["lo_to_rows"], s.born["test"]["lo_to"]
    dfpt = np.array([r["dfpt"] for r in rows])
    error = np.abs(np.array([r["predicted"] for r in rows]) - dfpt)
    return [_f(dfpt.mean(), 0), _f(np.median(dfpt), 0), _f(error.mean()), _f(np.median(error)), _f(error.max(), 0),
            _f(100 * summary["split_rel_median_split"], 0), str(summary["n_split"])]


def _born_slots() -> list[Slot]:
    slots = [Slot("MVN Γ with the jump at Γ", "README", "same networks' whole Γ spectrum to {} cm⁻¹ on `test` and {} on `val` (target ≤ 13)",
                  lambda s: [_f(s.nac_eval["summaries"][split]["all"]["gamma_only"]["gamma_end_mae"], 2)
                             for split in ("test", "val")])]
    for label, split, key in NAC_ROWS:
        cell = "{} ({})" if key == "lo_signed" else "{}"
        slots.append(Slot(f"LO–TO table, {label}", "README", f"| {label} | {cell} | {cell} | {cell} | **{cell}** |",
                          lambda s, split=split, key=key: _nac_row(s, split, key)))
    slots += [
        Slot("Born paragraph, val", "README", "on this release's `val` their average scored {}, the best of their seeds alone {})",
             lambda s: [_f(s.born["best"]["score"], 3), _f(min(a["best"]["score"] for a in s.born["averaged"]), 3)]),
        Slot("Born paragraph, Z*", "README", "Z* MAE {} e per component", lambda s: [_f(s.born["test"]["heads"]["born_mae"], 3)]),
        Slot("Born paragraph, ε∞", "README", "error {} % (per-element baseline {} %; target 10 %, met);",
             lambda s: [_pct(s.born["test"]["heads"]["eps_rel_median"]), _pct(s.born["test"]["baseline"]["eps_rel_median"], 0)]),
        Slot("Born paragraph, LO–TO splitting", "README", "MAE {} cm⁻¹ (mean splitting {} cm⁻¹;",
             lambda s: [_f(s.born["test"]["lo_to"]["split_mae_cm1"]), _f(s.born["test"]["lo_to"]["dfpt_split_mean_cm1"], 0)]),
        Slot("Born card checksum", "born card", "sha256 `{sha}`", lambda s: [s.born_sha256]),
        Slot("Born card seeds' epochs", "born card", "best val epochs {}, {} and {}; {}–{} min each",
             lambda s: ([str(a["best"]["epoch"]) for a in s.born["averaged"]]
                        + [_f(min(a["best"]["seconds"] for a in s.born["averaged"]) / 60),
                           _f(max(a["best"]["seconds"] for a in s.born["averaged"]) / 60)])),
        Slot("Born card, LO–TO splitting", "born card",
             "DFPT-charge splitting: mean {} cm⁻¹, median {} cm⁻¹; error of the predicted-charge splitting: MAE {} cm⁻¹, "
             "median {} cm⁻¹, max {} cm⁻¹; median relative error {} % over the {} materials", _born_splitting),
        Slot("Born card, targets", "born card", "Z* MAE ≤ 0.15 e (**not met**: {} e;",
             lambda s: [_f(s.born["test"]["heads"]["born_mae"], 3)]),
        Slot("Born card, ε∞ target", "born card", "ε∞ median relative error ≤ 10 % (met on test, {} %;",
             lambda s: [_pct(s.born["test"]["heads"]["eps_rel_median"])]),
        Slot("Born card, train against val", "born card", "On the physical `train` records the heads reach {} e against {} on `val`",
             lambda s: [_f(s.born["train"]["heads"]["born_mae"], 3), _f(s.born["val"]["heads"]["born_mae"], 3)]),
    ]
    for prefix, split in (("| train (the 1,226 physical records) | 1226 |", "train"), ("| val | 136 |", "val"),
                          ("| test | 156 |", "test")):
        bold = "**" if split == "test" else ""
        slots.append(Slot(f"Born card, {split} row", "born card", f"{prefix} {bold}{{}}{bold} / {{}} | {bold}{{}} %{bold} / {{}} % |",
                          lambda s, split=split: [_f(s.born[split]["heads"]["born_mae"], 3), _f(s.born[split]["baseline"]["born_mae"], 3),
                                                  _pct(s.born[split]["heads"]["eps_rel_median"]),
                                                  _pct(s.born[split]["baseline"]["eps_rel_median"])]))
    # each seed alone: val from the average's record of it, test from born_heads.seeds.json (release.sh)
    for i, label in enumerate(("one interaction layer, wider, 100 epochs: seed 0", "seed 1", "seed 2")):
        slots.append(Slot(f"Born card, seed {i}", "born card", f"| {label} | {{}} | {{}} % | {{}} | {{}} | {{}} % | {{}} |",
                          lambda s, i=i: _born_val(s.born["averaged"][i]["best"]) + _born_test(s.born_seeds[i]["test"])))
    slots.append(Slot("Born card, average", "born card", "| **their average (shipped)** | {} | {} % | **{}** | **{}** | **{} %** | **{}** |",
                      lambda s: _born_val(s.born["best"]) + _born_test(s.born["test"])))
    return slots


def _silicon_slots() -> list[Slot]:
    def cells(s: Sources) -> list[dict]:
        return [s.silicon["cells"][name] for name in ("2 atoms", "4 atoms", "6 atoms (3×1×1)", "8 atoms")]

    return [
        Slot("silicon's optical mode", "README", "silicon's Γ optical mode is {} cm⁻¹ against 509.7 (DFPT).",
             lambda s: [_f(s.silicon["mvn_gamma_optical_cm1"])]),
        Slot("silicon's four cells", "benchmarks",
             "Silicon: {}, {}, {} and {} cm⁻¹ spread, {}, {}, {} and {} cm⁻¹ uncertainty for its 2-, 4-, 6- (3×1×1) and 8-atom cells",
             lambda s: [_f(c["spread_cm1"], 2) for c in cells(s)] + [_f(c["uncertainty_cm1"]) for c in cells(s)]),
    ]


def _query_slots() -> list[Slot]:
    def latency(s: Sources) -> list[float]:
        return [1000 * v for v in s.queries["latency_s"].values()]

    return [Slot("query latency", "README", "each ran in {}–{} ms on the 2-core CPU.",
                 lambda s: [_f(min(latency(s)), 0), _f(max(latency(s)), 0)])]


def _nac_cost_slots() -> list[Slot]:
    def rounds(s: Sources, variant: str) -> list[float]:
        r = s.nac_cost["rounds_seconds_per_material"]
        return [v / off for v, off in zip(r[variant], r["off"], strict=True)]

    return [
        Slot("NAC cost", "README", "{} s/material without, {} s with NAC ({}×,",
             lambda s: [_f(s.nac_cost["seconds_per_material"]["off"], 3), _f(s.nac_cost["seconds_per_material"]["nac"], 3),
                        _f(s.nac_cost["ratio_to_off"]["nac"], 2)]),
        Slot("NAC cost, rounds", "README", "round by round {}×, {}× and {}×;", lambda s: [_f(r, 2) for r in rounds(s, "nac")]),
        Slot("NAC cost, second pass", "README", "the benchmark's last row, measured {}× here against the shared pass's {}×",
             lambda s: [_f(s.nac_cost["ratio_to_off"][k], 2) for k in ("nac_second_pass", "nac")]),
    ]


#: uncertainty_cv.json's rows: the release-25 terms and the shipped ones (out of fold), and the candidates
UCV_BEFORE, UCV_SHIPPED = "spread, ω_max, [H] (release 25)", "+ both (release 26)"
UCV_CANDIDATES_BASE = "shipped terms (check: the table above's last row)"
UCV_CANDIDATES = ("+ number of elements", "+ per-element error prior", "lowest mode's depth for [unstable]",
                  "+ (log spread)²")
#: instability_cv.json's splits, in the README's order, and the classifier it quotes
ICV_SPLITS = ("phonondb path val", "phonondb commensurate val", "petretto2018 path val")
ICV_CLASSIFIER = "logistic, + size"
ICV_RULES = ("bands' own minimum", "likely_unstable", "flag every material")


def _ucv(s: Sources, label: str, source: str, key: str, table: str = "out_of_fold") -> float:
    rows = s.uncertainty_cv["candidates"]["out_of_fold"] if table == "candidates" else s.uncertainty_cv["out_of_fold"]
    return rows[label][source][key]


def _icv_margins(s: Sources) -> list[str]:
    """The classifier's F1 minus the best simple rule's, per split (signed, three decimals)."""
    return [_signed(f1[ICV_CLASSIFIER] - max(f1[rule] for rule in ICV_RULES), 3)
            for f1 in (s.instability_cv[split]["F1"] for split in ICV_SPLITS)]


def _icv_sentence(s: Sources) -> list[str]:
    """The classifier sentence: per split the classifier's F1 and the rules the README names beside it
    (Petretto's also its counts), then the margins."""
    path, commensurate, petretto = (s.instability_cv[split] for split in ICV_SPLITS)
    named = ((path, ("likely_unstable", "flag every material")),
             (commensurate, ("likely_unstable", "bands' own minimum")),
             (petretto, ("likely_unstable", "bands' own minimum")))
    out = []
    for split, rules in named:
        out.append(_f(split["F1"][ICV_CLASSIFIER], 2))
        if split is petretto:
            out += [str(split["n_unstable"]), str(split["n"])]
        out += [_f(split["F1"][rule], 2) for rule in rules]
    return out + _icv_margins(s)


def _cv_slots() -> list[Slot]:
    sources = ("phonondb", "petretto2018")
    return [
        Slot("uncertainty out of fold", "benchmarks",
             "`benchmarks/results/uncertainty_cv.json`): {} → {} and {} → {}, {} → {}× and {} → {}×.",
             lambda s: ([_f(_ucv(s, label, src, "spearman"), 3) for src in sources for label in (UCV_BEFORE, UCV_SHIPPED)]
                        + [_f(_ucv(s, label, src, "top_to_rest_ratio"), 2) for src in sources
                           for label in (UCV_BEFORE, UCV_SHIPPED)])),
        Slot("uncertainty candidates, Spearman", "benchmarks",
             "The prior lifts Spearman to {} and {} (from {} and {}, phonondb and Petretto)",
             lambda s: [_f(_ucv(s, label, src, "spearman", "candidates"), 3)
                        for label in (UCV_CANDIDATES[1], UCV_CANDIDATES_BASE) for src in sources]),
        Slot("uncertainty candidates, top 10 %", "benchmarks",
             "(phonondb and Petretto, from {}× and {}×: the number of elements {}× and {}×, the prior {}× and {}×, "
             "the lowest mode's depth {}× and {}×, the squared log spread {}× and {}×)",
             lambda s: [_f(_ucv(s, label, src, "top_to_rest_ratio", "candidates"), 3)
                        for label in (UCV_CANDIDATES_BASE,) + UCV_CANDIDATES for src in sources]),
        Slot("uncertainty, distance from the training data", "benchmarks",
             "The crystal distance lifts Spearman (Petretto {} → {}, phonondb {} → {}) but not both top-10 % ratios "
             "({} → {}× and {} → {}×)",
             lambda s: [_f(s.uncertainty_latent[label][src][key], digits)
                        for key, digits in (("spearman", 3), ("top_to_rest_ratio", 2))
                        for src in ("petretto2018", "phonondb") for label in ("shipped terms", "+ log distance: crystals")]),
        Slot("uncertainty, ideal ranking", "benchmarks",
             "Even a ranking by the actual error itself gives the 10 % most uncertain only {}× and {}× the error",
             lambda s: [_f(s.uncertainty_latent["ideal (ranked by the actual error)"][src]["top_to_rest_ratio"], 2)
                        for src in ("petretto2018", "phonondb")]),
        Slot("instability classifier", "benchmarks",
             "scores F1 {} on phonondb's path (the flag {}, flagging every material {}), {} at the commensurate q-points "
             "(the flag {}, the bands' own minimum {}) and {} on Petretto's {} unstable of {} (the flag {}, the bands' own "
             "minimum {}): the classifier minus the best simple rule {}, {} and {},",
             _icv_sentence),
    ]


SLOTS = (_model_slots() + _vs_mlip_slots() + _born_slots() + _silicon_slots() + _query_slots() + _nac_cost_slots()
         + _cv_slots())


# ---------------------------------------------------------------- check and write


@dataclass(frozen=True)
class Finding:
    slot: Slot
    shown: list[str]  # the numbers the document shows
    expected: list[str]  # the numbers the files hold

    def __str__(self) -> str:
        return f"{self.slot.document}: {self.slot.name}: shows {', '.join(self.shown)}; the files say {', '.join(self.expected)}"


def find(slot: Slot, text: str) -> re.Match:
    """The one place of ``text`` that has the slot's words (LookupError when not exactly one)."""
    found = list(slot.pattern.finditer(text))
    if len(found) != 1:
        raise LookupError(f"{slot.document}: {slot.name}: the words around the numbers are found {len(found)} times, "
                          f"not once (template: {slot.template!r})")
    return found[0]


def shown(slot: Slot, match: re.Match) -> list[str]:
    """The numbers the document shows in a slot."""
    return [g for g, numbered in zip(match.groups(), slot.numbered) if numbered]


def check(documents: dict[str, str], sources: Sources) -> list[Finding]:
    """Every slot whose numbers differ from the files'."""
    findings = []
    for slot in SLOTS:
        now, expected = shown(slot, find(slot, documents[slot.document])), slot.values(sources)
        if len(expected) != len(now):
            raise ValueError(f"{slot.name}: {len(expected)} numbers for {len(now)} places")
        if now != expected:
            findings.append(Finding(slot, now, expected))
    return findings


def _splice(text: str, match: re.Match, replacements: dict[int, str]) -> str:
    """``text`` with the match's groups (1-based) replaced."""
    pieces, last = [], match.start()
    for group in sorted(replacements):
        pieces += [text[last:match.start(group)], replacements[group]]
        last = match.end(group)
    return text[:match.start()] + "".join(pieces) + text[last:]


def members_epochs(readme: str) -> str:
    """The new members' epochs as the results row names them."""
    return find(RESULTS_SLOT, readme).group(1)


def start_release(readme: str, epochs: str) -> str:
    """The README with a new release's k-MVN results row: the current row, its numbers as shown,
    stays above it as history, and the members' ``epochs`` replace the old ones in the row and in
    the targets sentence (the new row's numbers are then written like any slot's)."""
    match = find(RESULTS_SLOT, readme)
    old = match.group(1)
    if epochs == old:
        return readme
    history = HISTORY_ROW.replace("{epochs}", old).format(*shown(RESULTS_SLOT, match))
    text = _splice(readme, match, {1: epochs})
    text = text[:match.start()] + history + "\n" + text[match.start():]
    sentence = EPOCHS_SENTENCE.search(text)
    if sentence and sentence.group(1) == old:
        text = _splice(text, sentence, {1: epochs})
    return text


def retire_history(readme: str, rounds: str) -> tuple[str, str]:
    """The README keeping one history row (the release before) in its results table, and ROUNDS.md
    with the older ones appended, in order, to its table (:data:`ROUNDS_TABLE`)."""
    rows = HISTORY_LINE.findall(readme)
    if len(rows) <= 1:
        return readme, rounds
    for row in rows[:-1]:
        readme = readme.replace(row + "\n", "", 1)
    if ROUNDS_TABLE not in rounds:
        raise LookupError(f"rounds: no {ROUNDS_TABLE!r} section to move the README's older results rows to")
    table = rounds.index("\n|", rounds.index(ROUNDS_TABLE))
    end = rounds.find("\n\n", table)  # the blank line after the table, or the end of the file
    end = len(rounds.rstrip("\n")) if end < 0 else end
    return readme, rounds[:end] + "\n" + "\n".join(rows[:-1]) + rounds[end:]


def write(documents: dict[str, str], sources: Sources, epochs: str | None = None) -> dict[str, str]:
    """The documents with every slot's numbers replaced by the files'; with ``epochs``, after
    starting a new release's results row (:func:`start_release`) and moving the README's older
    history rows to ROUNDS.md (:func:`retire_history`)."""
    out = dict(documents)
    if epochs is not None:
        out[RESULTS_SLOT.document] = start_release(out[RESULTS_SLOT.document], epochs)
        if "rounds" in out:
            out[RESULTS_SLOT.document], out["rounds"] = retire_history(out[RESULTS_SLOT.document], out["rounds"])
    for slot in SLOTS:
        text = out[slot.document]
        match = find(slot, text)
        groups = [k for k, numbered in enumerate(slot.numbered, start=1) if numbered]
        changes = {g: v for g, v in zip(groups, slot.values(sources)) if match.group(g) != v}
        if changes:
            out[slot.document] = _splice(text, match, changes)
    return out


def _sibling(name: str) -> ModuleType:
    """A script beside this one, imported from its file (``benchmarks/`` is not a package)."""
    if name not in sys.modules:  # registered before it runs: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]  # as a failed import leaves nothing behind
            raise
    return sys.modules[name]


def card_epochs() -> str:
    """The members' epochs, all their runs together, as the k-MVN card records them: "176, 184 and 178"."""
    train_members = _sibling("train_members")
    *first, last = map(str, train_members.member_epochs(json.loads((CHECKPOINTS / "kmvn.card.json").read_text())))
    return f"{', '.join(first)} and {last}" if first else last


def history_lines(text: str) -> list[tuple[int, str]]:
    """Lines holding a history chain (for hand edits after a release)."""
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if any(m in line for m in HISTORY_MARKERS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="put the files' numbers into the documents")
    parser.add_argument("--epochs", help='the members\' epochs for the results row, e.g. "166, 174 and 168" '
                        "(default: the k-MVN card's)")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--benchmarks-readme", type=Path, default=BENCHMARKS_README)
    parser.add_argument("--born-card", type=Path, default=BORN_CARD)
    parser.add_argument("--rounds", type=Path, default=ROUNDS, help="the rounds' record that takes older results rows")
    args = parser.parse_args(argv)
    if args.epochs and not args.write:
        parser.error("--epochs names a new release's row: use it with --write")
    if args.write and args.epochs is None:
        args.epochs = card_epochs()
    paths = {"README": args.readme, "benchmarks": args.benchmarks_readme, "born card": args.born_card, "rounds": args.rounds}
    documents = {name: path.read_text() for name, path in paths.items()}
    sources = Sources()
    try:
        findings = check(documents, sources)
        written = write(documents, sources, args.epochs) if args.write else documents
    except (LookupError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"readme_numbers: {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(("updated " if args.write else "") + str(finding))
    for name, text in written.items():
        if text != documents[name]:
            paths[name].write_text(text)
            print(f"{paths[name]}: written; history chains to edit by hand:")
            for n, line in history_lines(text):
                print(f"  {n}: {line[:100]}")
    if not findings:
        print(f"all {len(SLOTS)} slots hold the files' numbers")
    return 0 if (args.write or not findings) else 1


if __name__ == "__main__":
    sys.exit(main())
