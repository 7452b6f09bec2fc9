"""``vgnn download-data --dataset phonondb``: the public origin's archives, checked and converted."""

import io
import tarfile

import numpy as np
import pytest

from tests.fakes.github import FakeGitHub
from vgnn_core.io.http import http_session
from vgnn_core.io.phonondb_origin import COMMIT, REPOSITORY, download_phonondb
from vgnn_core.training import force_sets as fsets


def origin_archive(fs: fsets.ForceSet) -> bytes:
    """A phonondb-style ``.tar.lzma`` (POSCAR-unitcell, phonopy.conf, FORCE_SETS) of a force set."""
    from phonopy.file_IO import get_FORCE_SETS_lines
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Poscar

    unit = Structure(fs.lattice, fs.numbers, fs.frac_coords)
    dim = " ".join(str(int(x)) for x in fs.supercell_matrix.ravel())
    axis = " ".join(f"{x:.10f}" for x in fs.primitive_matrix.ravel())
    dataset = {"natom": fs.forces.shape[1], "first_atoms": [
        {"number": int(a), "displacement": d, "forces": f}
        for a, d, f in zip(fs.displaced_atoms, fs.displacements, fs.forces)]}
    files = {"POSCAR-unitcell": Poscar(unit).get_str(), "phonopy.conf": f"DIM = {dim}\nPRIMITIVE_AXIS = {axis}\n",
             "FORCE_SETS": "\n".join(get_FORCE_SETS_lines(dataset)) + "\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{fs.material_id}-20180417/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def origin(phonondb_force_sets):
    sets = {fs.material_id: fs for fs in fsets.iter_force_sets(phonondb_force_sets, ids=["mp-1000", "mp-10009"])}
    files = {f"phonon_db_tarred/materials-id-{mid[3:]}-x-y-1.tar.lzma": origin_archive(fs) for mid, fs in sets.items()}
    server = FakeGitHub(REPOSITORY, COMMIT, files)
    url = server.start()
    yield server, url, sets
    server.stop()


def test_download_checks_converts_and_resumes(origin, tmp_path):
    server, url, sets = origin
    server.fail_first.add("phonon_db_tarred/materials-id-1000-x-y-1.tar.lzma")  # a 503, retried
    session = http_session(retries=3, backoff=0.01)
    paths, failures = download_phonondb(tmp_path, ["mp-1000", "mp-10009", "mp-424242"], session=session,
                                        api=f"{url}/api", raw=f"{url}/raw")
    assert failures == {"mp-424242": f"not in {REPOSITORY}@{COMMIT[:10]}/phonon_db_tarred"}
    assert sorted(p.name for p in paths) == ["mp-1000.npz", "mp-10009.npz"]
    got = {fs.material_id: fs for fs in fsets.iter_force_sets(tmp_path)}
    for mid, ref in sets.items():  # the converted set is the pack's, forces to their 1e-6 eV/Å rounding
        fs = got[mid]
        np.testing.assert_allclose(fs.lattice, ref.lattice, atol=1e-6)
        np.testing.assert_array_equal(fs.numbers, ref.numbers)
        np.testing.assert_array_equal(fs.supercell_matrix, ref.supercell_matrix)
        np.testing.assert_allclose(fs.primitive_matrix, ref.primitive_matrix, atol=1e-9)
        np.testing.assert_array_equal(fs.displaced_atoms, ref.displaced_atoms)
        np.testing.assert_allclose(fs.forces, ref.forces, atol=2e-6)
    # the same Γ as from the pack: phonopy on the downloaded force set
    t = fsets.force_set_targets(got["mp-1000"], 6.0, 6.0, with_path=False)
    np.testing.assert_allclose(np.sort(t.comm_bands[0])[3:], 70.9, atol=0.1)
    before = len(server.requests)
    download_phonondb(tmp_path, ["mp-1000"], session=session, api=f"{url}/api", raw=f"{url}/raw")
    assert not any("/raw/" in r for r in server.requests[before:])  # already there: nothing fetched


def test_a_corrupted_archive_is_refused(origin, tmp_path):
    server, url, _ = origin
    server.corrupt.add("phonon_db_tarred/materials-id-10009-x-y-1.tar.lzma")
    paths, failures = download_phonondb(tmp_path, ["mp-10009"], session=http_session(retries=1, backoff=0.01),
                                        api=f"{url}/api", raw=f"{url}/raw")
    assert paths == [] and "does not match its git object" in failures["mp-10009"]
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*.lzma"))
