"""This release's numbers in README.md and the Born card, rendered from the files a release writes.

Every place the README (or ``born_heads.md``) quotes the shipped models' metrics is a *slot*: a
template of the surrounding words with ``{}`` where a number goes (``{*}`` for free text such as
the members' epochs). The numbers come from the model cards (``vgnn_core/pretrained/checkpoints``)
and the saved results (``benchmarks/results``), formatted the way the README rounds them.

    python benchmarks/readme_numbers.py            # list every slot whose text is not the files' numbers
    python benchmarks/readme_numbers.py --write    # put the files' numbers in those slots

The words around the numbers (and the line breaks between them) are left as they are, so prose can
be re-wrapped freely. A new release's k-MVN results row keeps the last release's row above it as
history; ``--epochs "166, 174 and 168"`` names the new members' epochs (required then). History
chains in prose ("… one release back, …") are not slots: they are edited by hand.
``tests/test_readme_numbers.py`` checks every slot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHECKPOINTS = ROOT / "vgnn_core" / "pretrained" / "checkpoints"
BORN_CARD = CHECKPOINTS / "born_heads.md"
RESULTS = ROOT / "benchmarks" / "results"
NUMBER = r"([−+-]?[\d.,]+|[0-9a-f]{64})"  # a number as the README prints it, or a sha256


class Sources:
    """The release's files, read once (each attribute on first use)."""

    def __init__(self, root: Path = ROOT):
        self.root = root

    def _json(self, *parts: str) -> dict:
        return json.loads(self.root.joinpath(*parts).read_text())

    @property
    def kmvn(self) -> dict:
        return self._json("vgnn_core", "pretrained", "checkpoints", "kmvn.card.json")

    @property
    def mvn(self) -> dict:
        return self._json("vgnn_core", "pretrained", "checkpoints", "mvn.card.json")

    @property
    def born(self) -> dict:
        return self._json("benchmarks", "results", "training", "born_heads.metrics.json")

    @property
    def born_sha256(self) -> str:
        return hashlib.sha256(self.root.joinpath(CHECKPOINTS.relative_to(ROOT), "born_heads.pt").read_bytes()).hexdigest()

    @property
    def nac_eval(self) -> dict:
        return self._json("benchmarks", "results", "nac_eval.json")

    @property
    def vs_mlip(self) -> dict:
        return self._json("benchmarks", "results", "vs_mlip.json")

    @property
    def queries(self) -> dict:
        return self._json("benchmarks", "results", "queries.json")


@dataclass(frozen=True)
class Slot:
    """Words with numbers in one of the documents; ``values`` gives the numbers, formatted."""

    name: str
    document: str  # "README" or "born card"
    template: str
    values: Callable[[Sources], list[str]]

    @property
    def pattern(self) -> re.Pattern:
        parts = re.split(r"(\{\*?\})", self.template)
        regex = ""
        for part in parts:
            if part == "{}":
                regex += NUMBER
            elif part == "{*}":
                regex += r"([^|\n]*?)"
            else:  # literal words: any run of spaces or one line break where the template has a space
                regex += r"\s+".join(re.escape(word) for word in part.split(" "))
        return re.compile(regex)

    @property
    def numbered(self) -> list[bool]:
        """Per capture group: whether it is a number (checked) or free text (kept)."""
        return [p == "{}" for p in re.findall(r"\{\*?\}", self.template)]


def _pair(stats: dict) -> list[str]:
    return [f"{stats['mean']:.1f}", f"{stats['median']:.1f}"]


def _prf(d: dict) -> list[str]:
    return [f"{d['precision']:.2f}", f"{d['recall']:.2f}", f"{d['f1']:.2f}"]


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def _signed(x: float) -> str:
    return f"{'+' if x >= 0 else '−'}{abs(x):.1f}"


def _results_row(s: Sources) -> list[str]:
    k = s.kmvn["metrics"]
    return (_pair(k["test"]["bands"]["mae"]) + _pair(k["reference_test_subset"]["bands"]["mae"])
            + _pair(k["phonondb_test"]["bands"]["mae"]) + _pair(k["phonondb_test"]["gamma"]["mae"])
            + [f"{k['phonondb_test']['bands']['mae_hydrogen']['mean']:.1f}"])


RESULTS_ROW = ("| **this release, k-MVN (3 members: {*} epochs)** | **{} / {}** | **{} / {}** | **{} / {}** | {} / {} | "
               "**{}** |")
HISTORY_ROW = "| three members: {epochs} epochs | {} / {} | {} / {} | {} / {} | {} / {} | {} |"


def _slots() -> list[Slot]:
    slots = [
        Slot("results table, k-MVN", "README", RESULTS_ROW, _results_row),
        Slot("results table, MVN", "README", "| **this release, MVN (Γ)** | Γ {} / {} | Γ {} / {} | – | **{} / {}** | – |",
             lambda s: (_pair(s.mvn["metrics"]["test"]["gamma"]["mae"])
                        + _pair(s.mvn["metrics"]["reference_test_subset"]["gamma"]["mae"])
                        + _pair(s.mvn["metrics"]["phonondb_test"]["gamma"]["mae"]))),
        Slot("val sentence", "README", "ensemble reads `val` Petretto {} and phonondb {} (k-MVN bands; MVN Γ {} and {}).",
             lambda s: [f"{s.kmvn['metrics']['val']['bands']['mae']['mean']:.1f}",
                        f"{s.kmvn['metrics']['phonondb_val']['bands']['mae']['mean']:.1f}",
                        f"{s.mvn['metrics']['val']['gamma']['mae']['mean']:.1f}",
                        f"{s.mvn['metrics']['phonondb_val']['gamma']['mae']['mean']:.1f}"]),
        Slot("twin-free sentence", "README", "Petretto `test` {}, the 66 {}, phonondb `test` {}. At the exact",
             lambda s: [f"{s.kmvn['metrics'][x]['twin_free']['bands_mae_mean']:.1f}"
                        for x in ("test", "reference_test_subset", "phonondb_test")]),
        Slot("commensurate sentence", "README", "At the exact commensurate q-points of phonondb `test`: {} / {}.",
             lambda s: _pair(s.kmvn["metrics"]["phonondb_test_commensurate"]["bands"]["mae"])),
        Slot("C_v sentence (results)", "README", "within {} % of DFPT (mean, Petretto `test`)",
             lambda s: [_pct(s.kmvn["metrics"]["test"]["heat_capacity"]["cv300_relative_error"]["mean"], 2)]),
        Slot("C_v sentence (thermal section)", "README",
             "error is {} % mean, {} % median; the C_v(T) MAE is {} / {} J/K/mol (mean / median), {} s",
             lambda s: _heat_capacity(s.kmvn["metrics"]["test"]["heat_capacity"])),
        Slot("targets sentence", "README",
             "`test` bands ({} ≤ 13), the 66 reference materials' bands ({} ≤ 13), phonondb `test` bands ({} ≤ 12), "
             "phonondb `test` Γ ({} ≤ 12) and the 38 hydrogen-bearing phonondb `test` materials ({} ≤ 25;",
             lambda s: [f"{x:.1f}" for x in (
                 s.kmvn["metrics"]["test"]["bands"]["mae"]["mean"],
                 s.kmvn["metrics"]["reference_test_subset"]["bands"]["mae"]["mean"],
                 s.kmvn["metrics"]["phonondb_test"]["bands"]["mae"]["mean"],
                 s.kmvn["metrics"]["phonondb_test"]["gamma"]["mae"]["mean"],
                 s.kmvn["metrics"]["phonondb_test"]["bands"]["mae_hydrogen"]["mean"])]),
        Slot("uncertainty formula", "README", "(k-MVN: u = {} · s^{} · ω_max^{} · {}^[H])",
             lambda s: _uncertainty_formula(s.kmvn["uncertainty_model"])),
        Slot("uncertainty sentence", "README",
             "This release on `val`: {} and {}, {}× and {}×; on `test` as it came: phonondb Spearman {} (target 0.7), "
             "commensurate {}, Petretto {}; the 10 % most uncertain phonondb materials have {}× the error of the rest "
             "({} against {}; target ≥ 3×,",
             lambda s: _uncertainty_sentence(s.kmvn["metrics"])),
        Slot("uncertainty sentence, Petretto ratio", "README", "the fit leaves this ratio where it was), Petretto {}×.",
             lambda s: [f"{s.kmvn['metrics']['test']['uncertainty']['top_to_rest_ratio']:.1f}"]),
        Slot("instability val sentence", "README", "this release's `val`: {} → {} and {} → {})",
             lambda s: [f"{s.kmvn['metrics'][split]['bands'][key]['f1']:.2f}" for split in ("phonondb_val", "val")
                        for key in ("instability", "likely_unstable")]),
    ]
    for split, label in (("phonondb_test", "phonondb, phonopy's path | 281 of 477"),
                         ("phonondb_test_commensurate", "phonondb, exact commensurate q-points | 97 of 477"),
                         ("test", "Petretto | 19 of 156")):
        slots.append(Slot(f"instability table, {split}", "README", f"| {label} | {{}} / {{}} / {{}} | {{}} / {{}} / **{{}}** |",
                          lambda s, split=split: (_prf(s.kmvn["metrics"][split]["bands"]["instability"])
                                                  + _prf(s.kmvn["metrics"][split]["bands"]["likely_unstable"]))))
    slots += _vs_mlip_slots() + _nac_slots() + _born_slots()
    slots.append(Slot("query latency", "README", "each ran in {}–{} ms on the 2-core CPU.",
                      lambda s: [f"{min(s.queries['latency_s'].values()) * 1000:.0f}",
                                 f"{max(s.queries['latency_s'].values()) * 1000:.0f}"]))
    return slots


def _heat_capacity(hc: dict) -> list[str]:
    rel, mae = hc["cv300_relative_error"], hc["cv_mae_J_K_mol"]
    return [_pct(rel["mean"], 2), _pct(rel["median"], 2), f"{mae['mean']:.2f}", f"{mae['median']:.2f}",
            f"{hc['seconds_per_material']:.3f}"]


def _uncertainty_formula(u: dict) -> list[str]:
    return [f"{math.exp(u['log_scale']):.2f}", f"{u['spread']:.2f}", f"{u['frequency']:.2f}", f"{math.exp(u['hydrogen']):.2f}"]


def _uncertainty_sentence(k: dict) -> list[str]:
    v, pv = k["val"]["uncertainty"], k["phonondb_val"]["uncertainty"]
    t, c, p = k["test"]["uncertainty"], k["phonondb_test_commensurate"]["uncertainty"], k["phonondb_test"]["uncertainty"]
    return [f"{v['spearman']:.2f}", f"{pv['spearman']:.2f}", f"{v['top_to_rest_ratio']:.1f}", f"{pv['top_to_rest_ratio']:.1f}",
            f"{p['spearman']:.2f}", f"{c['spearman']:.2f}", f"{t['spearman']:.2f}", f"{p['top_to_rest_ratio']:.1f}",
            f"{p['top_mean_error']:.1f}", f"{p['rest_mean_error']:.1f}"]


def _vs_mlip_slots() -> list[Slot]:
    def summary(s: Sources) -> dict:
        return s.vs_mlip["summary"]

    def speedups(s: Sources) -> dict:
        return s.vs_mlip["speedups"]

    return [
        Slot("vs CHGNet, k-MVN row", "README", "| **k-MVN** (bands + C_v mesh) | **{} / {}** | {} / {} | **{}** | **{} %** | **{}** | **{}** |",
             lambda s: (_pair(summary(s)["kmvn_bands_mae"]) + _pair(summary(s)["kmvn_gamma_mae"])
                        + [f"{summary(s)['kmvn_bands_nmse']['mean']:.4f}", _pct(summary(s)["kmvn_cv300_rel"]["mean"]),
                           f"{summary(s)['kmvn_s']['mean']:.3f}", f"{summary(s)['kmvn_batched_s']['mean']:.3f}"])),
        Slot("vs CHGNet, MVN row", "README", "| **MVN** (Γ only) | – | **{} / {}** | – | – | **{}** | **{}** |",
             lambda s: (_pair(summary(s)["mvn_gamma_mae"])
                        + [f"{summary(s)['mvn_s']['mean']:.3f}", f"{summary(s)['mvn_batched_s']['mean']:.4f}"])),
        Slot("vs CHGNet, CHGNet row", "README", "| CHGNet + phonopy | {} / {} | {} / {} | {} | {} % | {} | – |",
             lambda s: (_pair(summary(s)["mlip_bands_mae"]) + _pair(summary(s)["mlip_gamma_mae"])
                        + [f"{summary(s)['mlip_bands_nmse']['mean']:.4f}", _pct(summary(s)["mlip_cv300_rel"]["mean"]),
                           f"{summary(s)['mlip_s']['mean']:.2f}"])),
        Slot("vs CHGNet, k-MVN speed-up", "README", "| k-MVN, everything (bands + C_v) | {}× | **{}×** |",
             lambda s: [f"{speedups(s)['kmvn_alone']:.0f}", f"{speedups(s)['kmvn_batched']:.0f}"]),
        Slot("vs CHGNet, MVN speed-up", "README", "| MVN, Γ spectrum | {}× | **{}×** |",
             lambda s: [f"{speedups(s)['mvn_alone']:.0f}", f"{speedups(s)['mvn_batched']:.0f}"]),
        Slot("vs CHGNet, force-constant speed-up", "README",
             "| force constants only: CHGNet displacements + phonopy ({} s) vs the k-MVN network | {}× ({} ms) | **{}×** ({} ms) |",
             lambda s: [f"{summary(s)['mlip_fc_s']['mean']:.2f}", f"{speedups(s)['force_constants_alone']:.0f}",
                        f"{1000 * summary(s)['kmvn_fc_s']['mean']:.0f}", f"{speedups(s)['force_constants_batched']:.0f}",
                        f"{1000 * summary(s)['kmvn_fc_batched_s']['mean']:.1f}"]),
        Slot("vs CHGNet, error ratio", "README", "k-MVN has {}× CHGNet's band error",
             lambda s: [f"{s.vs_mlip['band_mae_ratio_kmvn_vs_mlip']:.2f}"]),
        Slot("MVN batched time", "README", "the machine's speed varies) and {} ms in this release's",
             lambda s: [f"{1000 * summary(s)['mvn_batched_s']['mean']:.1f}"]),
    ]


NAC_ROWS = (("`val` bands MAE", "val", "band_mae"), ("`val` near Γ", "val", "near_gamma_mae"),
            ("`val` LO error at Γ (signed)", "val", "lo_signed"), ("`test` bands MAE", "test", "band_mae"),
            ("`test` near Γ", "test", "near_gamma_mae"), ("`test` LO error at Γ", "test", "lo"))
NAC_VARIANTS = ("none", "predicted", "dfpt", "gamma_only")


def _nac_row(s: Sources, split: str, key: str) -> list[str]:
    group = s.nac_eval["summaries"][split]["all"]
    out = []
    for variant in NAC_VARIANTS:
        g = group[variant]
        if key == "lo":
            out.append(f"{g['lo_abs_error_mean']:.1f}")
        elif key == "lo_signed":
            out += [f"{g['lo_abs_error_mean']:.1f}", _signed(g["lo_error_mean_signed"])]
        else:
            out.append(f"{g[key]:.2f}")
    return out


def _nac_slots() -> list[Slot]:
    slots = []
    for label, split, key in NAC_ROWS:
        cell = "{} ({})" if key == "lo_signed" else "{}"
        template = f"| {label} | {cell} | {cell} | {cell} | **{cell}** |"
        slots.append(Slot(f"LO–TO table, {label}", "README", template,
                          lambda s, split=split, key=key: _nac_row(s, split, key)))
    return slots


def _born_slots() -> list[Slot]:
    def born(s: Sources) -> dict:
        return s.born

    slots = [
        Slot("Born card checksum", "born card", "sha256 `{}`", lambda s: [s.born_sha256]),
        Slot("Born card seeds' epochs", "born card", "best val epochs {}, {} and {}; {}–{} min each",
             lambda s: ([str(a["best"]["epoch"]) for a in born(s)["averaged"]]
                        + [f"{min(a['best']['seconds'] for a in born(s)['averaged']) / 60:.1f}",
                           f"{max(a['best']['seconds'] for a in born(s)['averaged']) / 60:.1f}"])),
        Slot("Born paragraph, Z*", "README", "Z* MAE {} e per component",
             lambda s: [f"{born(s)['test']['heads']['born_mae']:.3f}"]),
        Slot("Born paragraph, ε∞", "README", "error {} % (per-element baseline {} %; target 10 %, met);",
             lambda s: [_pct(born(s)["test"]["heads"]["eps_rel_median"]), _pct(born(s)["test"]["baseline"]["eps_rel_median"], 0)]),
        Slot("Born paragraph, LO–TO splitting", "README", "MAE {} cm⁻¹ (mean splitting {} cm⁻¹;",
             lambda s: [f"{born(s)['test']['lo_to']['split_mae_cm1']:.1f}", f"{born(s)['test']['lo_to']['dfpt_split_mean_cm1']:.0f}"]),
        Slot("Born card, train against val", "born card", "On the physical `train` records the heads reach {} e against {} on `val`",
             lambda s: [f"{born(s)['train']['heads']['born_mae']:.3f}", f"{born(s)['val']['heads']['born_mae']:.3f}"]),
    ]
    for prefix, split in (("| train (the 1,226 physical records) | 1226 |", "train"), ("| val | 136 |", "val"),
                          ("| test | 156 |", "test")):
        bold = "**" if split == "test" else ""
        slots.append(Slot(f"Born card, {split} row", "born card",
                          f"{prefix} {bold}{{}}{bold} / {{}} | {bold}{{}} %{bold} / {{}} % |",
                          lambda s, split=split: [f"{born(s)[split]['heads']['born_mae']:.3f}",
                                                  f"{born(s)[split]['baseline']['born_mae']:.3f}",
                                                  _pct(born(s)[split]["heads"]["eps_rel_median"]),
                                                  _pct(born(s)[split]["baseline"]["eps_rel_median"])]))
    labels = ("one interaction layer, wider, 100 epochs: seed 0", "seed 1", "seed 2")
    for i, label in enumerate(labels):
        slots.append(Slot(f"Born card, seed {i} val", "born card", f"| {label} | {{}} | {{}} % | {{}} |",
                          lambda s, i=i: _born_val(born(s)["averaged"][i]["best"])))
    slots.append(Slot("Born card, average", "born card",
                      "| **their average (shipped)** | {} | {} % | **{}** | **{}** | **{} %** | **{}** |",
                      lambda s: _born_val(born(s)["best"]) + [f"{born(s)['test']['heads']['born_mae']:.3f}",
                                                               _pct(born(s)["test"]["heads"]["eps_rel_median"]),
                                                               f"{born(s)['test']['lo_to']['split_mae_cm1']:.1f}"]))
    return slots


def _born_val(best: dict) -> list[str]:
    return [f"{best['val_born_mae']:.3f}", _pct(best["val_eps_rel_median"]), f"{best['score']:.3f}"]


SLOTS = _slots()


@dataclass(frozen=True)
class Finding:
    slot: Slot
    shown: list[str]  # the numbers the document shows
    expected: list[str]  # the numbers the files hold

    def __str__(self) -> str:
        return f"{self.slot.document}: {self.slot.name}: shows {', '.join(self.shown)}; the files say {', '.join(self.expected)}"


def _match(slot: Slot, text: str) -> re.Match:
    found = list(slot.pattern.finditer(text))
    if len(found) != 1:
        raise LookupError(f"{slot.document}: {slot.name}: the words around the numbers are found {len(found)} times, "
                          f"not once (template: {slot.template!r})")
    return found[0]


def _numbers(slot: Slot, match: re.Match) -> list[str]:
    return [g for g, numbered in zip(match.groups(), slot.numbered) if numbered]


def check(documents: dict[str, str], sources: Sources) -> list[Finding]:
    """Every slot whose numbers differ from the files' (raises LookupError for a slot not found once)."""
    findings = []
    for slot in SLOTS:
        shown, expected = _numbers(slot, _match(slot, documents[slot.document])), slot.values(sources)
        if len(expected) != len(shown):
            raise ValueError(f"{slot.name}: {len(expected)} numbers for {len(shown)} places")
        if shown != expected:
            findings.append(Finding(slot, shown, expected))
    return findings


def write(documents: dict[str, str], sources: Sources, epochs: str | None = None) -> dict[str, str]:
    """The documents with every slot's numbers replaced by the files'. When the k-MVN results row
    changes, the row it replaces stays above it as history and ``epochs`` names the new members'."""
    out = dict(documents)
    for finding in check(documents, sources):
        slot = finding.slot
        text = out[slot.document]
        match = _match(slot, text)
        pieces, last, numbers = [], match.start(), iter(finding.expected)
        for k, numbered in enumerate(slot.numbered, start=1):
            pieces += [text[last:match.start(k)], next(numbers) if numbered else match.group(k)]
            last = match.end(k)
        new = "".join(pieces) + text[last:match.end()]
        if slot.template is RESULTS_ROW:
            if not epochs:
                raise SystemExit("the k-MVN results row changes: name the new members' epochs with --epochs")
            old_epochs = match.group(1)
            history = HISTORY_ROW.replace("{epochs}", old_epochs).format(*finding.shown)
            new = history + "\n" + new.replace(f"(3 members: {old_epochs} epochs)", f"(3 members: {epochs} epochs)")
        out[slot.document] = text[:match.start()] + new + text[match.end():]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="put the files' numbers into the documents")
    parser.add_argument("--epochs", help='the new members\' epochs for a new results row, e.g. "166, 174 and 168"')
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--born-card", type=Path, default=BORN_CARD)
    args = parser.parse_args(argv)
    paths = {"README": args.readme, "born card": args.born_card}
    documents = {name: path.read_text() for name, path in paths.items()}
    sources = Sources()
    try:
        findings = check(documents, sources)
        if args.write:
            for name, text in write(documents, sources, args.epochs).items():
                if text != documents[name]:
                    paths[name].write_text(text)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    for finding in findings:
        print(("updated " if args.write else "") + str(finding))
    if not findings:
        print(f"all {len(SLOTS)} slots hold the files' numbers")
    return 0 if (args.write or not findings) else 1


if __name__ == "__main__":
    sys.exit(main())
