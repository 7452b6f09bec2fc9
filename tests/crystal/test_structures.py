"""Bad input is refused with an error that names the structure and the cause."""

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pymatgen.core import Lattice, Molecule, Structure

from vgnn_core import InvalidStructureError, as_structure, read_structure


def test_ase_atoms_accepted():
    s = as_structure(bulk("Cu", "fcc", a=3.61))
    assert len(s) == 1 and s[0].specie.symbol == "Cu"


def test_partial_occupancy_refused():
    s = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    s.properties = {"material_id": "mp-disorder"}
    with pytest.raises(InvalidStructureError, match=r"mp-disorder: partial occupancy"):
        as_structure(s)


def test_vacancy_refused():
    s = Structure(Lattice.cubic(4.0), [{"Fe": 0.7}], [[0, 0, 0]])
    with pytest.raises(InvalidStructureError, match="occupancy"):
        as_structure(s, name="Fe0.7")


def test_overlapping_atoms_refused():
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(InvalidStructureError, match=r"overlap \(0\.200 Å apart"):
        as_structure(s, name="bad-NaCl")


def test_overlap_across_periodic_boundary_refused():
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.01, 0, 0], [0.99, 0, 0]])
    with pytest.raises(InvalidStructureError, match="overlap"):
        as_structure(s)


@pytest.mark.parametrize("check_overlaps", [True, False])
def test_atoms_stacked_in_a_thin_cell_are_refused_before_the_contact_search(check_overlaps, monkeypatch):
    """300 atoms on one point of a 300 Å long, 0.7 Å thin cell pass the cell checks; the 6 Å
    contact search would list ~N² pairs per cell image (GBs). A short search refuses them first,
    and an ordinary crystal still gets one search for both checks."""
    from vgnn_core.crystal.dimensionality import contact_pairs_bound
    from vgnn_core.crystal.structures import CROWDED_PAIRS, MIN_INTERATOMIC_DISTANCE

    radii = []
    search = Structure.get_neighbor_list
    monkeypatch.setattr(Structure, "get_neighbor_list", lambda self, r, **kw: radii.append(r) or search(self, r, **kw))
    n = 300
    a = (0.5 * n / 300.0) ** 0.5 * 1.001
    stacked = Structure(Lattice.orthorhombic(a, a, 300.0), ["Si"] * n, np.zeros((n, 3)))
    assert contact_pairs_bound(stacked) > CROWDED_PAIRS
    with pytest.raises(InvalidStructureError, match=r"stacked: atoms \d+ and \d+ overlap \(0\.000 Å apart"):
        as_structure(stacked, name="stacked", check_overlaps=check_overlaps)
    assert radii == [MIN_INTERATOMIC_DISTANCE]
    radii.clear()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert contact_pairs_bound(nacl) < CROWDED_PAIRS
    as_structure(nacl, name="NaCl", check_overlaps=check_overlaps)
    assert len(radii) == 1 and radii[0] >= 6.0


def test_empty_structure_refused():
    with pytest.raises(InvalidStructureError, match="no atoms"):
        as_structure(Atoms(cell=np.eye(3) * 4, pbc=True), name="empty")


def test_non_periodic_refused():
    with pytest.raises(InvalidStructureError, match="not periodic"):
        as_structure(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), name="H2 molecule")
    with pytest.raises(InvalidStructureError, match="Molecule is not periodic"):
        as_structure(Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), name="H2")


def test_degenerate_cell_refused():
    atoms = Atoms("Si", positions=[[0, 0, 0]], cell=[[4, 0, 0], [0, 4, 0], [0, 0, 1e-4]], pbc=True)
    with pytest.raises(InvalidStructureError, match="degenerate cell"):
        as_structure(atoms, name="flat")


def test_files(tmp_path, si_conventional):
    cif = tmp_path / "Si.cif"
    si_conventional.to(filename=str(cif))
    assert len(read_structure(cif)) == 8
    poscar = tmp_path / "POSCAR"
    si_conventional.to(filename=str(poscar), fmt="poscar")
    assert len(as_structure(poscar)) == 8
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(InvalidStructureError, match="empty.cif: file is empty"):
        read_structure(empty)
    junk = tmp_path / "junk.cif"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InvalidStructureError, match="junk.cif: cannot be parsed"):
        read_structure(junk)
    with pytest.raises(InvalidStructureError, match="file not found"):
        read_structure(tmp_path / "missing.cif")


def test_unsupported_type():
    with pytest.raises(InvalidStructureError, match="unsupported input type"):
        as_structure(42)


def test_a_callers_structure_is_left_untouched(si_conventional):
    """as_structure copies a Structure it is handed (only a reader's own fresh one is not)."""
    mine = si_conventional.copy()
    mine.properties = {"note": "mine"}
    before = mine.as_dict()
    out = as_structure(mine, name="si")
    assert out is not mine and out.properties["name"] == "si"
    assert mine.properties == {"note": "mine"} and mine.as_dict() == before


def test_invalid_structure_errors_pickle_with_name_and_cause():
    import pickle

    back = pickle.loads(pickle.dumps(InvalidStructureError("mp-1", "structure has no atoms")))
    assert (back.name, back.cause, str(back)) == ("mp-1", "structure has no atoms", "mp-1: structure has no atoms")


def test_declared_atom_counts_are_refused_before_any_parser_allocates(tmp_path):
    """An xyz or POSCAR header may declare 10⁹ atoms in a few bytes: pymatgen and ASE allocate
    for them (or, counting xyz frames, read line by line) before finding the file short."""
    xyz = tmp_path / "huge.xyz"
    xyz.write_text("1000000000000\ncomment\nSi 0 0 0\n")
    with pytest.raises(InvalidStructureError, match=r"huge.xyz: 1000000000000 atoms in the cell, above the limit of 5000 \(its header\)"):
        read_structure(xyz)
    poscar = tmp_path / "huge.vasp"
    poscar.write_text("Si\n1.0\n5.43 0 0\n0 5.43 0\n0 0 5.43\nSi\n1000000000\nDirect\n0 0 0\n0.25 0.25 0.25\n")
    with pytest.raises(InvalidStructureError, match=r"huge.vasp: 1000000000 atoms in the cell"):
        read_structure(poscar)
    vasp4 = tmp_path / "POSCAR"  # VASP 4: no symbols line, the counts on line 6
    vasp4.write_text("Si\n1.0\n5.43 0 0\n0 5.43 0\n0 0 5.43\n600000 400000\nDirect\n0 0 0\n")
    with pytest.raises(InvalidStructureError, match=r"POSCAR: 1000000 atoms in the cell"):
        read_structure(vasp4)


def test_unwrapped_coordinates_are_the_same_crystal(si_conventional):
    """Atoms given whole cells away (unwrapped MD coordinates) are moved back before the neighbour
    search, which would otherwise allocate for every cell in between; beyond what a float can
    place in the cell, the file is refused."""
    far = si_conventional.copy()
    shift = np.zeros((len(far), 3))
    shift[1] = [1000, -3, 7]
    far = Structure(far.lattice, far.species, far.frac_coords + shift)
    wrapped = as_structure(far, name="far-Si")
    np.testing.assert_allclose(wrapped.frac_coords % 1, si_conventional.frac_coords % 1, atol=1e-9)
    assert np.abs(wrapped.frac_coords).max() <= 1.0
    hopeless = Structure(far.lattice, far.species, si_conventional.frac_coords + shift * 1e17)
    with pytest.raises(InvalidStructureError, match=r"lost-Si: fractional coordinate 1e\+20"):
        as_structure(hopeless, name="lost-Si")


def test_ase_cell_is_checked_before_pymatgen_inverts_it():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.zeros((3, 3)), pbc=True)
    with pytest.raises(InvalidStructureError, match=r"zero-cell: degenerate cell"):
        as_structure(atoms, name="zero-cell")


ROCKSALT_CIF = """data_NaCl
_cell_length_a {a}
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma {gamma}
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na+ 0 0 0 1
Cl1 Cl- 0.5 0.5 0.5 1
{extra}
"""


def _rocksalt(tmp_path, name="NaCl.cif", a="5.64", gamma="90", extra=""):
    path = tmp_path / name
    path.write_text(ROCKSALT_CIF.format(a=a, gamma=gamma, extra=extra))
    return path


def test_cif_cell_lengths_and_angles_are_checked_before_a_parser_reinterprets_them(tmp_path):
    """pymatgen reads a negative length as a vector pointing the other way: another crystal."""
    assert read_structure(_rocksalt(tmp_path)).composition.reduced_formula == "NaCl"
    with pytest.raises(InvalidStructureError, match=r"neg.cif: _cell_length_a is -5.64 Å; a cell length must be positive"):
        read_structure(_rocksalt(tmp_path, "neg.cif", a="-5.64"))
    with pytest.raises(InvalidStructureError, match=r"flat.cif: _cell_angle_gamma is 180\(1\)°"):
        read_structure(_rocksalt(tmp_path, "flat.cif", gamma="180(1)"))


def test_cif_cells_and_coordinates_no_crystal_has_are_refused_by_name(tmp_path):
    """Angles that make no cell (60°, 60°, 130°: the volume would be imaginary) and a coordinate that is no
    number ('?'): refused saying so, not with a parser's internal error."""
    rhombic = ROCKSALT_CIF.format(a="5.64", gamma="130", extra="")
    for key in ("alpha", "beta"):
        rhombic = rhombic.replace(f"_cell_angle_{key} 90", f"_cell_angle_{key} 60")
    (tmp_path / "angles.cif").write_text(rhombic)
    with pytest.raises(InvalidStructureError, match=r"angles.cif: cell angles 60, 60, 130°: no cell has them"):
        read_structure(tmp_path / "angles.cif")
    # the same angles' limit, a flat cell (60 + 60 = 120): refused; an ordinary rhombohedral one is read
    (tmp_path / "flat.cif").write_text(rhombic.replace("_cell_angle_gamma 130", "_cell_angle_gamma 120"))
    with pytest.raises(InvalidStructureError, match="no cell has them"):
        read_structure(tmp_path / "flat.cif")
    (tmp_path / "rhombohedral.cif").write_text(rhombic.replace("_cell_angle_gamma 130", "_cell_angle_gamma 60")
                                               .replace("'F m -3 m'", "'P 1'").replace("225", "1"))
    assert len(read_structure(tmp_path / "rhombohedral.cif")) == 2
    unknown = ROCKSALT_CIF.format(a="5.64", gamma="90", extra="").replace("Cl1 Cl- 0.5 0.5 0.5 1", "Cl1 Cl- ? 0.5 0.5 1")
    (tmp_path / "unknown.cif").write_text(unknown)
    with pytest.raises(InvalidStructureError,
                       match=r"unknown.cif: atom site Cl1: _atom_site_fract_x is \?; a coordinate must be a number"):
        read_structure(tmp_path / "unknown.cif")
    # what the parsers do not read is not checked: an unlocated site of occupancy 0, '.' (read as 0)
    unread = ROCKSALT_CIF.format(a="5.64", gamma="90", extra="H1 H ? ? ? 0")
    (tmp_path / "unread.cif").write_text(unread)
    assert read_structure(tmp_path / "unread.cif").composition.reduced_formula == "NaCl"
    (tmp_path / "dot.cif").write_text(ROCKSALT_CIF.format(a="5.64", gamma="90", extra="").replace("Na1 Na+ 0 0 0 1",
                                                                                                  "Na1 Na+ . 0 0 1"))
    assert read_structure(tmp_path / "dot.cif").composition.reduced_formula == "NaCl"


def test_cif_that_lists_no_atoms_is_refused_saying_so(tmp_path):
    """An atom-site loop with no rows or an incomplete one (pymatgen's tokeniser divides by zero on
    both), no atom-site coordinates at all, or only CIF2's dotted ones: one line each saying why no
    atoms are read. ``LOOP_`` is CIF's ``loop_`` (reserved words are case-blind) and is read."""
    cif = ROCKSALT_CIF.format(a="5.64", gamma="90", extra="")
    header = cif.partition("Na1 Na+")[0]
    cases = {
        "empty_loop.cif": (header, "lists no atoms: its atom-site loop has no rows"),
        "then_a_loop.cif": (header + "# no sites\n\nloop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n",
                            "lists no atoms: its atom-site loop has no rows"),
        "commented.cif": (header.replace("loop_\n_atom_site_label", "loop_  # the atoms\n_atom_site_label"),
                          "lists no atoms: its atom-site loop has no rows"),
        "truncated.cif": (header + "Na1 Na 0\n", r"its atom-site loop has 3 value\(s\) for 6 columns: a row is incomplete"),
        "no_sites.cif": (header.partition("loop_")[0], "lists no atoms: no _atom_site_fract_x or _atom_site_Cartn_x"),
        "dotted.cif": (cif.replace("_atom_site_", "_atom_site."),
                       r"lists no atoms the parsers read: its coordinates are in dotted tags \(_atom_site.fract_x\)"),
    }
    for name, (text, cause) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidStructureError, match=rf"^{name}: {cause}$"):
            read_structure(tmp_path / name)
    (tmp_path / "upper.cif").write_text(cif.replace("loop_", "LOOP_"))
    assert read_structure(tmp_path / "upper.cif").composition.reduced_formula == "NaCl"


def test_cif_occupancies_outside_zero_to_one_are_refused(tmp_path):
    """pymatgen drops a site of negative occupancy (NaCl would read as a Cl crystal) and reads 1.5 as a
    whole atom: both refused, naming the site; rounding in the file (1.04) and a value within three times its
    written uncertainty (1.12(4)) are not."""
    for occupancy, name in (("-1", "negative.cif"), ("1.5", "over.cif")):
        path = tmp_path / name
        path.write_text(ROCKSALT_CIF.format(a="5.64", gamma="90", extra="").replace("Na1 Na+ 0 0 0 1",
                                                                                    f"Na1 Na+ 0 0 0 {occupancy}"))
        with pytest.raises(InvalidStructureError,
                           match=rf"{name}: atom site Na1 \(Na\+\) has occupancy {occupancy}; an occupancy lies between 0 and 1"):
            read_structure(path)
    for occupancy in ("1.04", "1.12(4)", "1.0(0)"):
        rounded = tmp_path / "rounded.cif"
        rounded.write_text(ROCKSALT_CIF.format(a="5.64", gamma="90", extra="").replace("Na1 Na+ 0 0 0 1",
                                                                                       f"Na1 Na+ 0 0 0 {occupancy}"))
        assert read_structure(rounded).composition.reduced_formula == "NaCl", occupancy


def test_cif_atoms_of_two_elements_on_one_position_are_refused(tmp_path):
    """Two fully occupied sites of different elements on one position: pymatgen gives up and ASE
    merges them into one element (Na8 for NaCl), a crystal of another composition."""
    clash = _rocksalt(tmp_path, "clash.cif", extra="Na2 Na 0.5 0.5 0.5 1")
    with pytest.raises(InvalidStructureError,
                       match=r"clash.cif: atom sites Cl1 \(Cl\) and Na2 \(Na\) are on one position \(0.5, 0.5, 0.5\)"):
        read_structure(clash)
    # a site listed twice (same element, same place) is one atom, as in the crystal
    twice = read_structure(_rocksalt(tmp_path, "twice.cif", extra="Cl2 Cl 0.5 0.5 0.5 1"))
    assert twice.composition.as_dict() == {"Na": 4.0, "Cl": 4.0}
    # deuterium is hydrogen's element: no clash when a parser calls it H (or D)
    heavy = (tmp_path / "NaD.cif")
    heavy.write_text(ROCKSALT_CIF.format(a="4.88", gamma="90", extra="").replace("Cl1 Cl- 0.5 0.5 0.5 1", "D1 D 0.5 0.5 0.5 1"))
    assert read_structure(heavy).composition.reduced_formula in ("NaH", "NaD")
    # disorder written with occupancies keeps its own message
    mixed = _rocksalt(tmp_path, "mixed.cif", extra="Na2 Na 0.5 0.5 0.5 0.5").read_text()
    mixed_path = tmp_path / "mixed.cif"
    mixed_path.write_text(mixed.replace("Cl1 Cl- 0.5 0.5 0.5 1", "Cl1 Cl- 0.5 0.5 0.5 0.5"))
    with pytest.raises(InvalidStructureError, match=r"mixed.cif: partial occupancy"):
        read_structure(mixed_path)


def test_errors_are_one_line_whatever_the_name(tmp_path):
    error = InvalidStructureError("bad\nname.cif", "cannot be parsed (line 1\nline 2\x1b[31m)")
    assert str(error) == "bad\\nname.cif: cannot be parsed (line 1\\nline 2\\x1b[31m)"
    assert (error.name, error.cause) == ("bad\nname.cif", "cannot be parsed (line 1\nline 2\x1b[31m)")
    with pytest.raises(InvalidStructureError) as info:
        read_structure(tmp_path / "no\nsuch.cif")
    assert "\n" not in str(info.value) and str(info.value).startswith("no\\nsuch.cif: cannot be read: file not found")


def _p1_rocksalt(rows: list[str], head_extra: str = "", upper: bool = False, name: str = "t") -> str:
    """A P1 NaCl CIF with only label and fractional-coordinate columns (plus ``rows``' extra ones)."""
    head = ("_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n" + head_extra +
            "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n"
            "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n")
    if upper:  # CIF tags are case-insensitive; pymatgen's lookups are not (ASE reads the file instead)
        head = "\n".join(line.upper() if line.startswith("_") else line for line in head.splitlines()) + "\n"
    return f"data_{name}\n" + head + "\n".join(rows) + "\n"


NA4 = ["Na1 0 0 0", "Na2 0.5 0.5 0", "Na3 0.5 0 0.5", "Na4 0 0.5 0.5"]
CL4 = ["Cl1 0.5 0.5 0.5", "Cl2 0 0 0.5", "Cl3 0 0.5 0", "Cl4 0.5 0 0"]


def test_cif_checks_hold_whichever_parser_reads_the_file(tmp_path):
    """The ASE fallback (upper-case tags) gets the same checks; a block whose sites cannot be
    checked is not handed to ASE; labels are read as pymatgen reads them (``Wat`` is water's O)."""
    def read(name, text):
        path = tmp_path / name
        path.write_text(text)
        return read_structure(path)

    water = read("wat.cif", _p1_rocksalt(NA4 + [r.replace("Cl", "Wat") for r in CL4]))
    assert water.composition.as_dict() == {"Na": 4.0, "O": 4.0}
    upper = _p1_rocksalt(NA4 + ["Cl1 0 0 0"] + CL4[1:], upper=True)
    with pytest.raises(InvalidStructureError, match=r"upper.cif: atom sites Cl1 \(Cl\) and Na1 \(Na\) are on one position"):
        read("upper.cif", upper)
    with pytest.raises(InvalidStructureError, match=r"upperneg.cif: _cell_length_a is -5.64 Å"):
        read("upperneg.cif", _p1_rocksalt(NA4 + CL4, upper=True).replace("_CELL_LENGTH_A 5.64", "_CELL_LENGTH_A -5.64"))
    assert read("upperok.cif", _p1_rocksalt(NA4 + CL4, upper=True)).composition.reduced_formula == "NaCl"
    with pytest.raises(InvalidStructureError, match=r"stray.cif: its atom-site loop has 37 value\(s\) for 4 columns"):
        read("stray.cif", _p1_rocksalt(NA4 + ["Cl1 0 0 0"] + CL4[1:] + ["H9 0.1 0.1 0.1 extra"]))
    # ASE ignores occupancies: a partly occupied site is refused before it reads as a whole atom
    partial = _p1_rocksalt([r + " 1" for r in NA4] + ["Cl1 0.5 0.5 0.5 0.99"] + [r + " 1" for r in CL4[1:]], upper=True)
    partial = partial.replace("_ATOM_SITE_FRACT_Z\n", "_ATOM_SITE_FRACT_Z\n_ATOM_SITE_OCCUPANCY\n")
    with pytest.raises(InvalidStructureError, match=r"partial.cif: partial occupancy / disorder at site Cl1 \(occupancy 0.99\)"):
        read("partial.cif", partial)
    # a label pymatgen reads as no atom would drop the site: refused, not a crystal of another composition
    with pytest.raises(InvalidStructureError, match=r"oh.cif: atom site OH1 \(OH1\) names no element"):
        read("oh.cif", _p1_rocksalt(NA4 + [r.replace("Cl", "OH") for r in CL4]))


def test_cif_block_names_are_printable_labels(tmp_path):
    from vgnn_core.crystal.structures import structure_labels

    path = tmp_path / "two.cif"
    path.write_text(_p1_rocksalt(NA4 + CL4, name="a\x1b[2Kb") + _p1_rocksalt(NA4 + CL4, name="c\td"))
    assert structure_labels(path) == ["a\\x1b[2kb", "c\\td"]
    assert read_structure(path, index=1).composition.reduced_formula == "NaCl"


def test_cif_cartesian_sites_are_checked_on_the_cif_axes(tmp_path):
    """Cartesian sites (Å; a along x, b in the xy plane, the CIF default) are checked like fractional ones:
    a wurtzite cell reads back whole, NaCl with Na and Cl on one point is refused."""
    lattice = Lattice.hexagonal(3.25, 5.2)
    zno = Structure.from_spacegroup("P6_3mc", lattice, ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])
    rows = [f"{site.specie}{k + 1} {site.specie} " + " ".join(f"{v:.5f}" for v in site.coords) for k, site in enumerate(zno)]

    def cartesian(name, cell, rows):
        text = _p1_rocksalt(rows, name=name).replace("_atom_site_fract", "_atom_site_Cartn")
        text = text.replace("_atom_site_label\n", "_atom_site_label\n_atom_site_type_symbol\n")
        for key, value in zip(("a", "b", "c", "alpha", "beta", "gamma"), cell):
            text = re.sub(rf"(_cell_(?:length|angle)_{key}) \S+", rf"\g<1> {value}", text)
        path = tmp_path / f"{name}.cif"
        path.write_text(text)
        return path

    assert read_structure(cartesian("zno", (3.25, 3.25, 5.2, 90, 90, 120), rows)).composition.reduced_formula == "ZnO"
    nacl = ["Na1 Na 0 0 0", "Na2 Na 2.82 2.82 0", "Na3 Na 2.82 0 2.82", "Na4 Na 0 2.82 2.82",
            "Cl1 Cl 0.0 0 0", "Cl2 Cl 0 0 2.82", "Cl3 Cl 0 2.82 0", "Cl4 Cl 2.82 0 0"]
    with pytest.raises(InvalidStructureError, match=r"clash.cif: atom sites Cl1 \(Cl\) and Na1 \(Na\) are on one position \(0.0, 0, 0\)"):
        read_structure(cartesian("clash", (5.64, 5.64, 5.64, 90, 90, 90), nacl))
