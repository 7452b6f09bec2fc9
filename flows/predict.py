"""``vgnn predict``: phonons of a few structures from files or Materials Project ids.

Plain functions (no Prefect): read the inputs, predict with a shipped model, and render a
table, JSON, YAML or Parquet; optional plots and phonopy / band.yaml exports per material.
A bad input is reported with its name and cause and the others still go through; inputs get the
database build's validation and size limits (a cell above ``BuildSettings.bands_max_atoms``
atoms gets its Γ modes only, from the MVN when the k-MVN's networks are the shipped pair's).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.plan import BuildSettings

MP_ID = re.compile(r"^(mp|mvc)-\d+$")

#: the exported charges' file name: phonopy's BORN format, but a name phonopy does not read by
#: itself from the working folder (its NAC would add the whole dipole term to force constants
#: that already hold it away from Γ); ``phonopy.load(..., born_filename=...)`` reads it
PREDICTED_BORN = "BORN.predicted"


def failure_cause(exc: BaseException) -> str:
    """One line for why an input failed: the cause of an
    :class:`~vgnn_core.InvalidStructureError` (the caller names the input), else the error."""
    from vgnn_core import InvalidStructureError
    from vgnn_core.crystal.structures import one_line

    if isinstance(exc, InvalidStructureError):
        return one_line(exc.cause)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def read_inputs(
    items: Sequence[str], keep_cell: bool = False, log: Callable[[str], None] | None = None,
) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """``(name, Crystal)`` for every readable structure and ``(name, cause)`` for the rest,
    each input on its own: one bad file (unreadable, huge, degenerate, a molecule…) never stops
    the others. Files are validated once, as they are read, with the build's limits
    (:mod:`vgnn_core.crystal.structures`). A file of several structures (CIF data blocks, xyz
    frames) gives ``FILE:LABEL`` names; a file name given from two folders is named by its path.

    Unless ``keep_cell``, each structure is reduced to its primitive cell (spglib's, as the
    build reduces conventional zeolite cells; :func:`flows.sources.primitive_cell`), and
    ``log`` gets one ``note: NAME: …`` line for each cell that shrank: a conventional or
    supercell's bands fold (Si's 8-atom cubic cell: 24 branches instead of 6)."""
    from collections import Counter

    from vgnn_core import Crystal, InvalidStructureError, read_structure
    from vgnn_core.crystal.structures import as_structure, one_line, structure_labels

    log = log or (lambda line: None)

    def crystal(name: str, structure) -> Crystal:
        if not keep_cell:
            from flows.sources.files import primitive_cell

            reduced = primitive_cell(structure)
            if len(reduced) < len(structure):
                log(f"note: {name}: reduced to its primitive cell ({len(structure)} → {len(reduced)} atoms; "
                    "--keep-cell predicts the cell as given)")
                structure = reduced
        return Crystal(name, structure)

    items = list(dict.fromkeys(items))  # the same input twice is predicted once
    good, bad = [], []
    mp_ids = [x for x in items if MP_ID.match(x)]
    fetched: dict = {}
    if mp_ids:
        from flows.sources.materials_project import MPError, fetch_structures

        try:
            fetched = fetch_structures(mp_ids)
        except MPError as exc:
            bad += [(x, str(exc)) for x in mp_ids]
            mp_ids = []
    names = Counter(Path(x).name for x in items if not MP_ID.match(x))
    for item in items:
        if MP_ID.match(item):
            if item in fetched:
                try:
                    good.append((item, crystal(item, as_structure(fetched[item], name=item))))
                except Exception as exc:  # noqa: BLE001 - this input's alone
                    bad.append((item, failure_cause(exc)))
            elif item in mp_ids:
                bad.append((item, "not found in the Materials Project"))
            continue
        path = Path(item)
        base = one_line(path.name if names[path.name] == 1 else item)  # a newline in a name stays one line
        try:
            labels = structure_labels(path)
        except InvalidStructureError as exc:
            bad.append((base, one_line(exc.cause)))
            continue
        for k, label in enumerate(labels):
            name = base if len(labels) == 1 else f"{base}:{label}"
            try:
                structure = read_structure(path, index=k if len(labels) > 1 else None)  # validated once
                good.append((name, crystal(name, structure)))
            except Exception as exc:  # noqa: BLE001 - MemoryError, parser crashes: this input's alone
                bad.append((name, failure_cause(exc)))
    return good, bad


def result_record(result, temperature: float, full: bool) -> dict:
    """A JSON-ready record of one :class:`~vgnn_core.phonons.result.PhononResult`."""
    rec = result.summary(temperature)
    if getattr(result, "has_nac", False):
        from storage.rows import nac_columns

        rec["lo_to_splitting_cm1"] = round(nac_columns(result)["lo_to_splitting_cm1"], 4)
    if not full:
        return rec
    if result.bands is not None:
        rec["qpath"] = {
            "qpoints": result.qpath.qpoints.round(6).tolist(),
            "distances": result.qpath.distances.round(6).tolist(),
            "labels": [[int(i), name] for i, name in result.qpath.labels],
        }
        rec["bands_cm1"] = result.bands.round(4).tolist()
    if result.dos is not None:
        rec["dos"] = {
            "frequencies_cm1": result.dos.frequencies.round(3).tolist(),
            "total": result.dos.total.round(8).tolist(),
            "partial": {k: v.round(8).tolist() for k, v in result.dos.partial.items()},
            "mesh": list(result.mesh.mesh),
        }
    if result.thermal is not None:
        t = result.thermal
        rec["thermal_per_cell"] = {
            "temperatures_K": t.temperatures.tolist(),
            "heat_capacity_J_K_mol": t.heat_capacity.round(6).tolist(),
            "entropy_J_K_mol": t.entropy.round(6).tolist(),
            "free_energy_kJ_mol": t.free_energy.round(6).tolist(),
            "zero_point_energy_kJ_mol": t.zero_point_energy,
        }
    return rec


def summary_table(records: list[dict]) -> str:
    """One line per material: the headline numbers."""
    cols = [("name", "{}"), ("formula", "{}"), ("n_atoms", "{}"), ("min_frequency_cm1", "{:.1f}"),
            ("max_frequency_cm1", "{:.1f}"), ("heat_capacity_J_K_mol_fu", "{:.3f}"),
            ("entropy_J_K_mol_fu", "{:.3f}"), ("zero_point_energy_kJ_mol_fu", "{:.3f}"),
            ("uncertainty_cm1", "±{:.1f}"), ("in_domain", "{}"), ("likely_unstable", "{}")]
    header = ["name", "formula", "atoms", "ω_min cm⁻¹", "ω_max cm⁻¹", "Cv J/K/mol·fu", "S J/K/mol·fu", "ZPE kJ/mol·fu",
              "uncertainty cm⁻¹", "in domain", "likely unstable"]
    rows = [[fmt.format(r[k]) if r.get(k) is not None else "-" for k, fmt in cols] for r in records]
    width = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, width))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, width)) for r in rows]
    for r in records:
        lines.append(f"{r['name']}: Γ modes (cm⁻¹) " + " ".join(f"{w:.1f}" for w in r["gamma_cm1"]))
        if r.get("domain_note"):
            lines.append(f"{r['name']}: outside the training domain ({r['domain_note']})")
        if r.get("note"):
            lines.append(f"{r['name']}: {r['note']}")
    return "\n".join(lines)


def write_parquet(records: list[dict], path: str | Path) -> Path:
    """Full records as a Parquet file (nested fields as JSON strings)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in records]
    pq.write_table(pa.Table.from_pylist(flat), path)
    return Path(path)


def safe_name(name: str) -> str:
    """A material name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def plot_path(base: str, name: str, many: bool) -> Path:
    """``base`` itself for one material, ``stem_NAME.suffix`` for several."""
    p = Path(base)
    return p.with_name(f"{p.stem}_{safe_name(name)}{p.suffix or '.png'}") if many else p


def gamma_predictor(predictor, model: str):
    """The predictor of a cell above the band limit, as a database build has it: the shipped MVN
    when it runs ``predictor``'s networks (the shipped k-MVN's, summed per atom pair: the same Γ
    spectrum, with the MVN's uncertainty, whose members agree at Γ alone: one eigen-solve per
    member instead of eight), else ``predictor`` itself."""
    from vgnn_core import load_pretrained
    from vgnn_core.predict import networks_shared
    from vgnn_core.pretrained.registry import ChecksumError, PretrainedNotAvailableError

    if model != "kmvn":
        return predictor
    try:
        mvn = load_pretrained("mvn", device=predictor.device)
    except (PretrainedNotAvailableError, ChecksumError, FileNotFoundError):  # a k-MVN-only install
        return predictor
    return mvn if networks_shared(mvn, predictor) else predictor


def predict_files(
    items: Sequence[str],
    model: str = "kmvn",
    fmt: str = "table",
    out: str | None = None,
    plot: str | None = None,
    unit: str = "cm-1",
    export: str | None = None,
    temperature: float = 300.0,
    mesh_density: float | None = None,
    keep_cell: bool = False,
    nac: bool = False,
    born: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[str, list[tuple[str, str]]]:
    """Predict every input; returns the text to print and the failures ``(name, cause)``.

    The text is the rendered output, or with ``out`` one line saying what was written there.
    ``keep_cell``: predict each cell as given instead of its primitive cell. ``log`` receives,
    as they happen, one ``error: NAME: cause`` line per failed input, one ``note: NAME: …`` line
    per cell reduced to its primitive cell and one before a cell above the band limit (Γ modes
    only). ``nac``: the LO–TO splitting from Born charges and ε∞ predicted by the shipped heads
    (k-MVN only; the jump at Γ on the network's force constants, see ``Predictor.predict_phonons``);
    ``born``: a phonopy ``BORN`` file of the (single) input instead. Raises ``ValueError`` for an
    unknown ``fmt``, Parquet without ``out`` or ``born`` with several inputs, before any work.
    """
    if fmt not in ("table", "json", "yaml", "parquet"):
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "parquet" and not out:
        raise ValueError("--format parquet needs --out FILE")
    if born and len(items) != 1:
        raise ValueError("--born FILE gives the Born charges of one structure: pass exactly one input")
    if (nac or born) and model != "kmvn":
        raise ValueError("the LO-TO correction needs band structures: use --model kmvn")
    from tqdm.auto import tqdm

    from vgnn_core import load_pretrained
    from vgnn_core.io.exports import write_band_yaml, write_born_file, write_phonopy_force_constants
    from vgnn_core.phonons.mesh import DEFAULT_MESH_DENSITY

    log = log or (lambda line: None)
    inputs, failures = read_inputs(items, keep_cell=keep_cell, log=log)
    for name, cause in failures:
        log(f"error: {name}: {cause}")
    predictor = load_pretrained(model) if inputs else None
    gamma_only = None  # the predictor of cells above the band limit, loaded with the first one
    records, many = [], len(inputs) > 1
    limit = BuildSettings.bands_max_atoms
    for name, structure in tqdm(inputs, desc="predicting", disable=len(inputs) < 3 or not sys.stderr.isatty()):
        n_atoms = len(getattr(structure, "structure", structure))
        full = n_atoms <= limit  # as in a database build: above the limit, the Γ spectrum only
        note = (f"{n_atoms} atoms > {limit}: band structure, DOS and thermal properties skipped "
                "(Γ modes only), as in a database build")
        if not full:
            log(f"note: {name}: {note}")  # before the prediction: a cell this size takes minutes
        try:
            charges = nac or None
            if born:
                from vgnn_core.io.phonopy import read_born_file

                charges = read_born_file(born, getattr(structure, "structure", structure)).neutral()
            use = predictor
            if not full and charges is None:
                gamma_only = gamma_only or gamma_predictor(predictor, model)
                use = gamma_only
            result = use.predict_phonons([structure], names=[name], bands=full, thermal=full,
                                         density=mesh_density or DEFAULT_MESH_DENSITY, nac=charges)[0]
        except Exception as exc:  # noqa: BLE001 - one material's failure must not stop the others
            failures.append((name, failure_cause(exc)))
            log(f"error: {name}: {failures[-1][1]}")
            continue
        record = result_record(result, temperature, full=fmt != "table")
        if not full:
            record["note"] = note + ("; Γ modes and uncertainty from the MVN (the same networks)"
                                     if use is not predictor else "")
        records.append(record)
        if plot and result.bands is not None:
            import matplotlib.pyplot as plt

            from vgnn_core.io.plotting import plot_result

            fig = plot_result(result, plot_path(plot, name, many), unit=unit)
            plt.close(fig)
        if export and result.bands is not None:
            folder = Path(export) / safe_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            write_band_yaml(folder / "band.yaml", result.structure, result.qpath, result.bands)
            write_phonopy_force_constants(result.force_constants, result.structure, folder)
            if result.born is not None:  # not named BORN: phonopy would add its (whole) NAC unasked
                write_born_file(folder / PREDICTED_BORN, result.structure, result.born)
    if fmt == "table":
        text = summary_table(records)
    elif fmt == "json":
        text = json.dumps(records, indent=1)
    elif fmt == "yaml":
        import yaml

        text = yaml.safe_dump(records, sort_keys=False, allow_unicode=True)
    else:
        write_parquet(records, out)
    if out and fmt != "parquet":
        Path(out).write_text(text + "\n")
    if out:  # the file holds the output: the terminal only hears where it went
        text = f"{len(records)} material(s) written to {out}"
    return text, failures

