"""q-paths in the basis of the cell the user gave, checked against seekpath by hand."""

import numpy as np
import pytest
import seekpath
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation

from vgnn_core.phonons.qpath import high_symmetry_path, reciprocal_lattice


def seekpath_points_by_hand(structure):
    """seekpath's special points, moved into ``structure``'s reciprocal basis step by step."""
    cell = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    res = seekpath.get_path(cell)
    b_seek = np.asarray(res["reciprocal_primitive_lattice"])  # rows, seekpath frame, 2π incl.
    rot = np.asarray(res["rotation_matrix"])  # seekpath frame = R · input frame (columns)
    out = {}
    for label, frac in res["point_coords"].items():
        k_seek = np.asarray(frac) @ b_seek  # Cartesian, seekpath frame
        k_input = rot.T @ k_seek  # Cartesian, input frame
        out[label] = structure.lattice.matrix @ k_input / (2 * np.pi)  # q_i = a_i · k / 2π
    return res, out


def rotated(s, angles=(0.3, 1.1, -0.7)):
    r = Rotation.from_euler("xyz", angles).as_matrix()
    return Structure(s.lattice.matrix @ r.T, s.species, s.frac_coords)


def check_against_seekpath(structure):
    res, expected = seekpath_points_by_hand(structure)
    path = high_symmetry_path(structure)
    assert set(path.special_points) == set(expected)
    for label, q in expected.items():
        np.testing.assert_allclose(path.special_points[label], q, atol=1e-9)
    # the sampled path starts and ends each segment on the labelled points
    assert path.segment_labels() == [tuple(p) for p in res["path"]]
    for index, label in path.labels:
        np.testing.assert_allclose(path.qpoints[index], expected[label], atol=1e-9)
    assert np.all(np.diff(path.distances) >= -1e-12)
    for b in path.breaks:  # a jump between segments adds no distance
        assert path.distances[b] == pytest.approx(path.distances[b - 1])
    return path


def magnitudes(path, structure):
    recip = reciprocal_lattice(structure.lattice.matrix)
    return {k: float(np.linalg.norm(v @ recip)) for k, v in path.special_points.items()}


def test_silicon_fcc(si_primitive, si_conventional):
    a = 5.43
    for s in (si_primitive, rotated(si_primitive), si_conventional, si_primitive * [2, 1, 1]):
        path = check_against_seekpath(s)
        mag = magnitudes(path, s)
        assert mag["GAMMA"] == pytest.approx(0.0, abs=1e-12)
        assert mag["X"] == pytest.approx(2 * np.pi / a)
        assert mag["L"] == pytest.approx(np.sqrt(3) * np.pi / a)
        assert mag["K"] == pytest.approx(1.5 * np.sqrt(2) * np.pi / a)
        assert mag["W"] == pytest.approx(np.sqrt(5) * np.pi / a)
        assert path.segment_labels()[0] == ("GAMMA", "X")
    # in the standard primitive basis the special points are the textbook ones
    own = high_symmetry_path(si_primitive).special_points
    np.testing.assert_allclose(own["X"], [0.5, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(own["L"], [0.5, 0.5, 0.5], atol=1e-12)


def test_hexagonal_wurtzite(wurtzite_zno):
    a, c = 3.25, 5.21
    for s in (wurtzite_zno, rotated(wurtzite_zno)):
        path = check_against_seekpath(s)
        mag = magnitudes(path, s)
        assert mag["M"] == pytest.approx(2 * np.pi / (np.sqrt(3) * a))
        assert mag["K"] == pytest.approx(4 * np.pi / (3 * a))
        assert mag["A"] == pytest.approx(np.pi / c)
        assert {"GAMMA", "M", "K", "A", "L", "H"} <= set(path.special_points)
    own = high_symmetry_path(wurtzite_zno).special_points
    np.testing.assert_allclose(own["A"], [0, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(own["K"], [1 / 3, 1 / 3, 0], atol=1e-12)


def test_monoclinic(monoclinic_zro2):
    path = check_against_seekpath(monoclinic_zro2)
    assert path.bravais_lattice.startswith("mP")
    # fractional q does not depend on a rigid rotation of the crystal
    rot = high_symmetry_path(rotated(monoclinic_zro2))
    np.testing.assert_allclose(rot.qpoints, path.qpoints, atol=1e-9)
    # a supercell S = N·A sees the same wavevectors: q_S = N q_A
    n = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 2]])
    sup = monoclinic_zro2.copy()
    sup.make_supercell(n)
    path_sup = check_against_seekpath(sup)
    for label, q in path.special_points.items():
        np.testing.assert_allclose(path_sup.special_points[label], n @ q, atol=1e-9)


def test_density_controls_sampling(si_primitive):
    coarse = high_symmetry_path(si_primitive, line_density=5)
    fine = high_symmetry_path(si_primitive, line_density=40)
    assert fine.n_qpoints > 4 * coarse.n_qpoints / 2
    assert fine.distances[-1] == pytest.approx(coarse.distances[-1])


@pytest.mark.parametrize("where", ["coordinate", "lattice"])
def test_non_finite_cell_is_refused_before_spglib(where):
    """spglib and seekpath crash the interpreter on NaN; the path and the symmetry analysis
    raise InvalidStructureError naming the crystal instead (run in a child process, so a crash
    fails this test rather than the whole session)."""
    import subprocess
    import sys

    lattice = "[[4, 0, 0], [0, 4, 0], [0, 0, float('nan')]]" if where == "lattice" else "np.eye(3) * 4"
    coords = "[[0, 0, 0], [0.5, 0.5, 0.5]]" if where == "lattice" else "[[0, 0, 0], [np.nan, 0.5, 0.5]]"
    code = f"""
import numpy as np
from pymatgen.core import Lattice, Structure
from vgnn_core.crystal.structures import InvalidStructureError
from vgnn_core.crystal.symmetry import analyse_symmetry
from vgnn_core.phonons.qpath import high_symmetry_path
s = Structure(Lattice({lattice}), ["Na", "Cl"], {coords})
for f in (high_symmetry_path, analyse_symmetry):
    try:
        f(s)
    except InvalidStructureError as e:
        print(e)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.splitlines() == ["NaCl: lattice or coordinates contain NaN or infinity"] * 2
