"""Hostile inputs: every kind of bad file is one failure that names it and its cause, every good
structure next to it is still read, nothing is dropped without a word, and an empty source
builds nothing (no release, ``latest`` untouched)."""

import json
import os

import pytest
from pymatgen.core import Lattice, Structure

from flows.plan import BuildSettings, InputFailure, read_inputs
from flows.sources import EmptySourceError, SourceItem, directory_source
from vgnn_core.crystal.crystal import Crystal

SI = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                                                 [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75],
                                                 [0.25, 0.75, 0.75]])
MGO = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
H2_BOX = Structure(Lattice.cubic(20), ["H", "H"], [[0, 0, 0], [0.037, 0, 0]])


def poscar(lattice: str, species: str = "Si", count: int = 1, coords: str = "0 0 0") -> str:
    return f"test\n1.0\n{lattice}\n{species}\n{count}\nDirect\n{coords}\n"


def cif_text(structure: Structure, block: str) -> str:
    lines = structure.to(fmt="cif").splitlines()
    return "\n".join(f"data_{block}" if line.startswith("data_") else line for line in lines) + "\n"


@pytest.fixture
def hostile_folder(tmp_path, monkeypatch):
    """A folder of good structures among ≥ 20 kinds of bad input; returns (folder, good ids,
    {bad id: (file named in the message, words of the cause)})."""
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    monkeypatch.setattr("vgnn_core.crystal.structures.MAX_ATOMS", 20)  # "too many atoms" without a huge file
    d = tmp_path / "in"
    d.mkdir()
    SI.to(filename=str(d / "dup.cif"))  # same stem, two formats: both kept, by file name
    MGO.to(filename=str(d / "dup.vasp"), fmt="poscar")
    SI.to(filename=str(d / "POSCAR.a"), fmt="poscar")  # same stem POSCAR: both kept
    MGO.to(filename=str(d / "POSCAR.b"), fmt="poscar")
    (d / "multi.cif").write_text(cif_text(SI, "silicon") + "\n" + cif_text(MGO, "periclase") + "\n"
                                 + cif_text(H2_BOX, "hydrogen"))  # every block is a structure
    write(str(d / "frames.extxyz"), [AseAtomsAdaptor.get_atoms(s) for s in (MGO, SI, H2_BOX)], format="extxyz")
    (d / "empty.cif").write_text("")
    (d / "binary.cif").write_bytes(bytes(range(256)) * 3)
    (d / "no_atoms.cif").write_text("data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n"
                                    "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n")
    (d / "no_atoms.vasp").write_text("empty\n1.0\n4 0 0\n0 4 0\n0 0 4\n\n\nDirect\n")
    (d / "truncated.vasp").write_text(poscar("5.4 0 0\n0 5.4 0\n0 0 5.4", count=2))
    (d / "overlap.vasp").write_text(poscar("4 0 0\n0 4 0\n0 0 4", "Na Cl", "1 1", "0 0 0\n0.01 0 0"))
    (d / "nan.vasp").write_text(poscar("4 0 0\n0 4 0\n0 0 4", coords="nan 0 0"))
    (d / "flat.vasp").write_text(poscar("4 0 0\n0 4 0\n8 8 0"))
    (d / "skewed.vasp").write_text(poscar("4 0 0\n0 4 0\n0 200 0.05"))
    (d / "huge.vasp").write_text(poscar("1000000 0 0\n0 1000000 0\n0 0 1000000", count=2,
                                        coords="0 0 0\n0.25 0.25 0.25"))
    (d / "unknown_element.vasp").write_text(poscar("4 0 0\n0 4 0\n0 0 4", species="Xq"))
    Structure(Lattice.cubic(4), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).to(filename=str(d / "partial.cif"))
    (d / "no_lattice.xyz").write_text("2\nwater fragment\nO 0 0 0\nH 0 0 0.96\n")
    H2_BOX.to(filename=str(d / "molecule.cif"))
    Structure(Lattice.cubic(15), ["Na"], [[0, 0, 0]]).to(filename=str(d / "free_atom.vasp"), fmt="poscar")
    Structure(Lattice.hexagonal(2.46, 20), ["C", "C"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5]]).to(
        filename=str(d / "slab.cif"))
    Structure(Lattice.tetragonal(15, 2.56), ["C", "C"], [[0.5, 0.5, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(d / "chain.cif"))
    (SI * (3, 1, 1)).to(filename=str(d / "too_many.vasp"), fmt="poscar")  # 24 atoms > 20
    os.symlink("loop_b.cif", d / "loop_a.cif")
    os.symlink("loop_a.cif", d / "loop_b.cif")
    os.symlink("nowhere.cif", d / "dangling.cif")
    (d / "folder.cif").mkdir()
    os.symlink("/dev/zero", d / "device.cif")  # endless: must be refused before any read
    MGO.to(filename=str(d / "multi:periclase.vasp"), fmt="poscar")  # the id of a block of multi.cif
    (d / "README.txt").write_text("not a structure: ignored")
    good = {"dup.cif": 8, "dup.vasp": 2, "POSCAR.a": 8, "POSCAR.b": 2, "multi:silicon": 8, "frames:0": 2,
            "frames:1": 8}
    bad = {
        "empty": ("empty.cif", "file is empty"),
        "binary": ("binary.cif", "cannot be parsed"),
        "no_atoms.cif": ("no_atoms.cif", "lists no atoms"),
        "no_atoms.vasp": ("no_atoms.vasp", "cannot be parsed"),
        "truncated": ("truncated.vasp", "cannot be parsed"),
        "overlap": ("overlap.vasp", "atoms 0 and 1 overlap"),
        "nan": ("nan.vasp", "NaN"),
        "flat": ("flat.vasp", "degenerate cell: volume 0"),
        "skewed": ("skewed.vasp", "lattice planes 0.001 Å apart"),
        "huge": ("huge.vasp", "lattice vector of 1e+06 Å, above the limit of 300 Å"),
        "unknown_element": ("unknown_element.vasp", "site 0 holds Xq0+, not a chemical element"),
        "partial": ("partial.cif", "partial occupancy"),
        "no_lattice": ("no_lattice.xyz", "not periodic"),
        "molecule": ("molecule.cif", "molecule: 2 atom(s) form a finite cluster"),
        "free_atom": ("free_atom.vasp", "isolated atom: atom(s) 0"),
        "slab": ("slab.cif", "slab: 2 atom(s) form a 2-D periodic layer"),
        "chain": ("chain.cif", "chain: 2 atom(s) form a 1-D periodic chain"),
        "too_many": ("too_many.vasp", "24 atoms in the cell, above the limit of 20"),
        "loop_a": ("loop_a.cif", "symbolic link loop"),
        "loop_b": ("loop_b.cif", "symbolic link loop"),
        "dangling": ("dangling.cif", "dangling symbolic link (its target nowhere.cif does not exist)"),
        "folder": ("folder.cif", "cannot be read: a folder, not a regular file"),
        "device": ("device.cif", "cannot be read: a device, pipe or socket, not a regular file"),
        "multi:hydrogen": ("multi.cif:hydrogen", "molecule"),
        "frames:2": ("frames.extxyz:2", "molecule"),
    }
    return d, good, bad


def test_every_bad_input_is_one_named_failure_and_every_good_one_is_read(hostile_folder):
    folder, good, bad = hostile_folder
    items = list(directory_source(folder))
    inputs = read_inputs(items)
    crystals = {k: v for k, v in inputs.items() if isinstance(v, Crystal)}
    failures = [v for v in inputs.values() if isinstance(v, InputFailure)]
    assert {k: c.n_atoms for k, c in crystals.items()} == good
    assert all(c.structure.properties["material_id"] == k for k, c in crystals.items())
    by_id = {f.material_id: f for f in failures}
    # the two inputs that share the id "multi:periclase" are both failures (and neither is built)
    dup = [f for f in failures if f.material_id == "multi:periclase"]
    assert len(dup) == 2 and {k for k, v in inputs.items() if v in dup} == {"multi:periclase#1", "multi:periclase#2"}
    for f in dup:
        assert f.error_class == "DuplicateMaterialId" and "multi.cif (structure 1)" in f.message
        assert "multi:periclase.vasp" in f.message and "\n" not in f.message
    assert len(failures) == len(bad) + 2 >= 20
    assert set(by_id) == set(bad) | {"multi:periclase"}
    for mid, (file, cause) in bad.items():
        message = by_id[mid].message
        assert message.startswith(f"{file}: ") and cause in message and "\n" not in message, (mid, message)
    # nothing in the folder vanished: every structure-named entry is a crystal or a failure
    assert {i.path.name for i in items} == {p.name for p in folder.iterdir() if p.name != "README.txt"}


def test_ids_do_not_depend_on_listing_order(tmp_path):
    from flows.sources.files import file_ids

    names = ["a.cif", "a.vasp", "a.cif.vasp", "POSCAR", "POSCAR.b", "b.xyz", "b"]
    ids = file_ids(names)
    assert ids == file_ids(list(reversed(names)))
    assert ids == {"a.cif": "a.cif", "a.vasp": "a.vasp", "a.cif.vasp": "a.cif.vasp", "POSCAR": "POSCAR",
                   "POSCAR.b": "POSCAR.b", "b.xyz": "b.xyz", "b": "b"}
    assert len(set(ids.values())) == len(names)


def test_duplicate_ids_from_any_source_fail_every_copy():
    items = [SourceItem("mp-1", structure=SI), SourceItem("mp-2", structure=MGO), SourceItem("mp-1", structure=MGO)]
    inputs = read_inputs(items)
    assert isinstance(inputs["mp-2"], Crystal) and "mp-1" not in inputs
    assert [inputs[k].material_id for k in ("mp-1#1", "mp-1#2")] == ["mp-1", "mp-1"]
    assert "held by 2 inputs" in inputs["mp-1#1"].message
    # an input whose own id looks like a duplicate's key keeps it; the duplicates get other keys
    items.append(SourceItem("mp-1#1", structure=SI))
    inputs = read_inputs(items)
    assert len(inputs) == 4 and isinstance(inputs["mp-1#1"], Crystal)
    assert sorted(x.material_id for x in inputs.values() if isinstance(x, InputFailure)) == ["mp-1", "mp-1"]


def test_an_empty_source_is_one_error_and_builds_nothing(tmp_path, capsys):
    from flows.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no structures here")
    with pytest.raises(EmptySourceError, match="no structure files"):
        list(directory_source(empty))
    with pytest.raises(EmptySourceError, match="no structures"):
        read_inputs([])
    db = tmp_path / "db"
    db.mkdir()
    (db / "latest").write_text("previous\n")
    code = main(["build", "--source", f"dir:{empty}", "--out", str(db), "--cluster", "none", "--models", "mvn"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "no structure files" in err and "\n" not in err
    assert (db / "latest").read_text() == "previous\n" and not (db / "releases").exists()


def test_predict_isolates_each_input_with_the_build_limits(hostile_folder, tmp_path, capsys, monkeypatch):
    """``vgnn predict`` over the hostile folder: one ``error: FILE: cause`` line per bad input,
    the good ones predicted, exit code 2; above the band limit a cell gets its Γ modes only."""
    from flows.cli import main
    from flows.predict import read_inputs as predict_inputs

    folder, good, bad = hostile_folder
    files = sorted(str(p) for p in folder.iterdir() if p.name != "README.txt")
    ok, failed = predict_inputs(files)
    assert {n for n, _ in ok} == {"dup.cif", "dup.vasp", "POSCAR.a", "POSCAR.b", "multi.cif:silicon",
                                  "multi.cif:periclase", "frames.extxyz:0", "frames.extxyz:1", "multi:periclase.vasp"}
    assert {n for n, _ in failed} == {file for file, _ in bad.values()}
    for name, cause in failed:
        assert not cause.startswith(name) and "\n" not in cause  # the CLI prefixes the name once
    monkeypatch.setattr(BuildSettings, "bands_max_atoms", 4)
    out = tmp_path / "o.json"
    code = main(["predict", str(folder / "huge.vasp"), str(folder / "dup.vasp"), str(folder / "molecule.cif"),
                 str(folder / "POSCAR.a"), "--model", "kmvn", "--format", "json", "--out", str(out),
                 "--keep-cell"])  # POSCAR.a is Si's 8-atom cubic cell: kept, to cross the band limit
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: huge.vasp: lattice vector of 1e+06 Å, above the limit of 300 Å (wrong units or a vacuum box?)",
                   "error: molecule.cif: " + next(c for n, c in failed if n == "molecule.cif"),
                   "note: POSCAR.a: 8 atoms > 4: band structure, DOS and thermal properties skipped (Γ modes only), "
                   "as in a database build"]
    records = {r["name"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"dup.vasp", "POSCAR.a"}
    assert "bands_cm1" in records["dup.vasp"] and "thermal_per_cell" in records["dup.vasp"]  # 2 atoms: all of it
    si = records["POSCAR.a"]  # 8 atoms > 4: Γ only, said so
    assert "bands_cm1" not in si and len(si["gamma_cm1"]) == 24 and "Γ modes only" in si["note"]
    # ... and, as in a build, from the shipped MVN (the k-MVN's networks): its Γ row and uncertainty
    code = main(["predict", str(folder / "POSCAR.a"), "--model", "mvn", "--format", "json", "--out", str(out),
                 "--keep-cell"])
    mvn = json.loads(out.read_text())[0]
    assert code == 0 and mvn["gamma_cm1"] == si["gamma_cm1"] and mvn["uncertainty_cm1"] == si["uncertainty_cm1"]
    assert "from the MVN" in si["note"] and "from the MVN" not in mvn["note"]


def test_predict_above_the_band_limit_without_a_shipped_mvn_uses_the_kmvn(hostile_folder, tmp_path, monkeypatch):
    """A k-MVN-only install: a cell above the band limit still gets the k-MVN's Γ modes."""
    from flows.predict import predict_files
    from vgnn_core.pretrained import registry

    shipped = registry.shipped_checkpoints()
    monkeypatch.setattr(registry, "shipped_checkpoints", lambda: {"kmvn": shipped["kmvn"]})
    monkeypatch.setattr(BuildSettings, "bands_max_atoms", 4)
    folder, _, _ = hostile_folder
    errors = []
    text, failures = predict_files([str(folder / "POSCAR.a")], model="kmvn", fmt="json", keep_cell=True,
                                   log=lambda line: errors.append(line) if line.startswith("error") else None)
    record = json.loads(text)[0]
    assert failures == [] and errors == [] and len(record["gamma_cm1"]) == 24
    assert "Γ modes only" in record["note"] and "from the MVN" not in record["note"]


def test_a_build_of_the_hostile_folder_writes_every_good_structure_and_one_row_per_bad_input(
        hostile_folder, tmp_path):
    import vgnn_core
    from flows.local import build
    from storage.catalog import connect
    from tests.conftest import TINY_ARCH

    folder, good, bad = hostile_folder
    model = tmp_path / "mvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="mvn", **TINY_ARCH), model)
    summary = build(f"dir:{folder}", [str(model)], tmp_path / "db", release="r", progress=None)
    # "failed" counts material ids: the two inputs sharing "multi:periclase" are one id, two rows
    assert summary["written"] == len(good) and summary["failed"] == len(bad) + 1
    con = connect(tmp_path / "db")
    assert {r[0] for r in con.execute("SELECT material_id FROM gamma").fetchall()} == set(good)
    rows = con.execute("SELECT material_id, stage, message FROM failures ORDER BY material_id").fetchall()
    assert sorted(m for m, _, _ in rows) == sorted([*bad, "multi:periclase", "multi:periclase"])
    assert all(stage == "ingest" and "\n" not in message for _, stage, message in rows)


def test_a_newline_in_a_file_name_keeps_ids_and_errors_on_one_line(tmp_path):
    """A file name may hold any byte but ``/``: its id, its failure and its CLI line stay one line,
    and escaping can never make two files one id."""
    from flows.predict import read_inputs as predict_inputs
    from flows.sources.files import file_ids

    (tmp_path / "MgO\nrocksalt.vasp").write_text(MGO.to(fmt="poscar"))
    (tmp_path / "MgO\\nrocksalt.vasp").write_text(MGO.to(fmt="poscar"))  # a literal backslash-n: escapes alike
    (tmp_path / "flat\nSi.vasp").write_text(poscar("5.43 0 0\n5.43 0 0\n0 0 5.43"))  # two equal vectors
    ids = {i.path.name: i.material_id for i in directory_source(tmp_path)}
    assert ids == file_ids(sorted(ids)) and len(set(ids.values())) == 3
    assert ids["flat\nSi.vasp"] == "flat\\nSi" and all("\n" not in i for i in ids.values())
    assert sorted(ids.values())[:2] == ["MgO\\nrocksalt.vasp#1", "MgO\\nrocksalt.vasp#2"]
    inputs = read_inputs(list(directory_source(tmp_path)))
    failure = inputs["flat\\nSi"]
    assert isinstance(failure, InputFailure) and "\n" not in failure.message
    assert sum(isinstance(v, Crystal) for v in inputs.values()) == 2
    ok, failed = predict_inputs([str(tmp_path / "flat\nSi.vasp"), str(tmp_path / "MgO\nrocksalt.vasp")])
    assert [n for n, _ in ok] == ["MgO\\nrocksalt.vasp"] and [n for n, _ in failed] == ["flat\\nSi.vasp"]
    assert "\n" not in failed[0][1]


def test_escaped_ids_never_clash_with_another_files_own_name():
    from flows.sources.files import file_ids

    for names in (["a\nb", "a\\nb", "a\\nb#1"], ["x\n.cif", "x\\n.cif", "x\\n.cif#1.cif"], ["POSCAR\n", "POSCAR\\n", "POSCAR\\n#1"]):
        ids = file_ids(names)
        assert len(set(ids.values())) == len(names) and ids == file_ids(list(reversed(names)))
        assert all(i.isprintable() for i in ids.values())
