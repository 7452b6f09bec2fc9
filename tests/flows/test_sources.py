"""Structure sources: the Materials Project through mp-api against a local server that speaks
its API, IZA downloads from a local mirror, Togo's phonondb and the Petretto structures."""

import csv
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from flows.local import build
from flows.sources import demo_structures, petretto_source, togo_source, zeolite_source
from flows.sources.iza import IZAError, download_frameworks
from flows.sources.materials_project import MaterialsProjectClient, MPError, MPQuery, ingest
from storage.catalog import connect
from tests.fakes.mp import API_KEY, DB_VERSION, FakeMP, mp_document

pytest.importorskip("mp_api")


@pytest.fixture
def fake_mp():
    docs = [mp_document(f"mp-{1000 + 7 * k}", s, energy_above_hull=0.02 * (k % 5), deprecated=k == 4)
            for k, (_, s) in enumerate(demo_structures())]
    server = FakeMP(docs)
    url = server.start()
    yield server, url
    server.stop()


def client(url, **kw):
    return MaterialsProjectClient(api_key=API_KEY, endpoint=url, backoff_s=0.0, min_interval_s=0.0, **kw)


def test_mp_ingest_filters_chunks_and_resumes_from_cache(fake_mp, tmp_path):
    server, url = fake_mp
    query = MPQuery(nsites_max=2, energy_above_hull_max=0.05)
    version, items = ingest(query, tmp_path, client(url), chunk_size=4)
    expected = sorted(
        (d["material_id"] for d in server.materials.values()
         if d["nsites"] <= 2 and d["energy_above_hull"] <= 0.05 and not d["deprecated"]),
        key=lambda m: int(m.split("-")[1]))
    assert version == DB_VERSION and [i.material_id for i in items] == expected and len(expected) > 8
    for mid, s in ((i.material_id, i.structure) for i in items):
        assert s.properties["material_id"] == mid and len(s) == server.materials[mid]["nsites"]
    # only the needed fields were asked for, and the structures came in id chunks of 4
    listing, *fetches = server.requests
    assert listing["_fields"] == "material_id" and listing["deprecated"] == "False" and listing["nsites_max"] == "2"
    assert all(len(r["material_ids"].split(",")) <= 4 and "structure" in r["_fields"] for r in fetches)
    assert len(list((tmp_path / DB_VERSION).glob("chunk-*.json.gz"))) == len(fetches)
    # a rerun reads every chunk from the cache: one listing request, no structure request
    server.requests.clear()
    _, again = ingest(query, tmp_path, client(url), chunk_size=4)
    assert [i.material_id for i in again] == expected and len(server.requests) == 1


def test_mp_retries_transient_errors_and_names_auth_failures(fake_mp, tmp_path):
    server, url = fake_mp
    server.fail_next = 2  # two 503s, then the answer
    ids = client(url).material_ids(MPQuery(nsites_max=1))
    assert ids and len(server.requests) == 3
    server.fail_next = 10  # an outage longer than the retries
    with pytest.raises(MPError, match="unreachable after 3 attempts"):
        client(url, retries=2).material_ids(MPQuery())
    assert server.fail_next == 7
    with pytest.raises(MPError, match="refused"):
        MaterialsProjectClient(api_key="wrong" * 7, endpoint=url, backoff_s=0).material_ids(MPQuery())


def test_mp_needs_a_key_and_never_searches_without_filters(fake_mp, monkeypatch):
    _, url = fake_mp
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(MPError, match="MP_API_KEY"):
        MaterialsProjectClient(endpoint=url).material_ids(MPQuery())
    with pytest.raises(MPError, match="whole collection"):
        client(url).search(["material_id"])
    assert MPQuery().criteria()  # the default query still carries filters
    assert MPQuery.from_spec("nsites<=40,elements=Si+O,stable") == MPQuery(
        elements=("Si", "O"), nsites_max=40, energy_above_hull_max=0.0)
    with pytest.raises(ValueError, match="cannot read"):
        MPQuery.from_spec("colour=blue")


def test_build_from_mp_records_the_database_version(fake_mp, tmp_path, monkeypatch):
    _, url = fake_mp
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", url)
    monkeypatch.setenv("VGNN_CACHE_DIR", str(tmp_path / "cache"))
    summary = build("mp:nsites<=1", ["mvn"], tmp_path / "db", release="r", progress=None)
    con = connect(tmp_path / "db")
    assert summary["written"] == con.execute("SELECT count(*) FROM gamma WHERE source = 'mp'").fetchone()[0] > 5
    assert con.execute("SELECT source_version FROM runs").fetchone()[0] == f"materials_project-{DB_VERSION}"


@pytest.fixture
def iza_mirror(tmp_path):
    """A local IZA-SC mirror: serves CIFs of the shared zeolite folder; 503 once for LTA."""
    from vgnn_core.settings import shared_data_dir

    root = shared_data_dir()
    cifs = None if root is None else root / "iza_zeolites" / "cifs"
    if cifs is None or not cifs.is_dir():
        pytest.skip("iza_zeolites not found (set VGNN_DATA_DIR)")
    state = {"lta_failures": 1, "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            name = self.path.rsplit("/", 1)[-1]
            state["requests"].append(name)
            if name == "LTA.cif" and state["lta_failures"]:
                state["lta_failures"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            f = cifs / name
            body = f.read_bytes() if f.is_file() else b"<html>Not found</html>"
            self.send_response(200 if f.is_file() else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/IZA-SC/cif/", state
    server.shutdown()
    server.server_close()


def test_iza_download_by_code_retries_and_names_failures(iza_mirror, tmp_path):
    url, state = iza_mirror
    with pytest.raises(IZAError) as err:
        download_frameworks(["FAU", "LTA", "QQQ", "not-a-code"], tmp_path, base_url=url, backoff_s=0)
    assert "QQQ" in str(err.value) and "not-a-code" in str(err.value) and "FAU:" not in str(err.value)
    assert {p.name for p in tmp_path.glob("*.cif")} == {"FAU.cif", "LTA.cif"}  # the others were kept
    assert state["requests"].count("LTA.cif") == 2  # 503, then the file
    download_frameworks(["FAU"], tmp_path, base_url=url)
    assert state["requests"].count("FAU.cif") == 1  # cached
    cells = {item.material_id: item.read().structure for item in zeolite_source(tmp_path)}
    assert len(cells["iza-FAU"]) == 144 and len(cells["iza-LTA"]) == 72  # primitive: 576/4 and 72


def test_togo_structures_are_phonopy_primitive_cells():
    from vgnn_core.settings import shared_data_dir

    root = shared_data_dir()
    index = None if root is None else root / "togo_phonondb" / "index.csv"
    if index is None or not index.is_file():
        pytest.skip("togo_phonondb not found (set VGNN_DATA_DIR)")
    rows = {r["material_id"]: r for r in csv.DictReader(open(index))}
    items = list(togo_source(limit=30))
    assert len(items) == 30
    for item in items:
        mid, s = item.material_id, item.structure
        row = rows[mid]
        axis = row["PRIMITIVE_AXIS"].split()
        det = abs(np.linalg.det(np.array([float(Fraction(x)) for x in axis]).reshape(3, 3))) if axis else 1.0
        assert len(s) == round(int(row["natoms_unitcell"]) * det), mid
        assert sorted(row["elements"].split()) == sorted({e.symbol for e in s.composition.elements})


def test_petretto_source_yields_dft_cells(petretto_archive):
    item = next(petretto_source(petretto_archive))
    mid, s = item.material_id, item.structure
    assert mid.startswith("mp-") and s.properties["material_id"] == mid and len(s) >= 1


def test_predict_accepts_materials_project_ids(fake_mp, monkeypatch, capsys, tmp_path):
    from flows.cli import main

    server, url = fake_mp
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", url)
    first = next(iter(server.materials))
    code = main(["predict", first, "mp-999999", "--model", "mvn", "--format", "json", "--out", str(tmp_path / "o.json")])
    assert code == 2 and "mp-999999: not found in the Materials Project" in capsys.readouterr().err
    import json

    (record,) = json.loads((tmp_path / "o.json").read_text())
    assert record["name"] == first and len(record["gamma_cm1"]) == 3 * server.materials[first]["nsites"]


def test_a_503_whose_url_holds_403_is_retried_not_taken_for_a_refusal():
    """A server on port 40315 once made a transient 503 look like an auth failure."""
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("REST query returned with error status code 503 on URL http://127.0.0.1:40315/x")
        return "ok"

    c = MaterialsProjectClient(api_key="k" * 32, endpoint="http://127.0.0.1:1", backoff_s=0)
    assert c._call(flaky) == "ok" and len(calls) == 2
    with pytest.raises(MPError, match="refused"):
        c._call(lambda: (_ for _ in ()).throw(RuntimeError("error status code 403 on URL http://h:8080/")))


def test_demo_crystals_are_the_prototypes_and_each_call_gets_its_own_copies():
    """The demo source (built once per process, its space groups built once) gives the atoms per
    primitive cell and the space group each prototype has, and exactly pymatgen's
    ``Structure.from_spacegroup`` primitive cell for one crystal of each of its eight space groups; a
    caller editing its structures changes no one else's."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from flows.sources.demo import _PROTOTYPES

    crystals = dict(demo_structures())
    assert len(crystals) == len(_PROTOTYPES) == 35
    atoms = {"Si-diamond": 2, "Cu-fcc": 1, "W-bcc": 1, "Mg-hcp": 2, "NaCl-rocksalt": 2, "GaAs-zincblende": 2,
             "ZnO-wurtzite": 4, "CsCl-B2": 2, "CaF2-fluorite": 3, "SrTiO3-perovskite": 5, "TiO2-rutile": 6}
    numbers = {"Si-diamond": 227, "Cu-fcc": 225, "W-bcc": 229, "Mg-hcp": 194, "NaCl-rocksalt": 225,
               "GaAs-zincblende": 216, "ZnO-wurtzite": 186, "CsCl-B2": 221, "CaF2-fluorite": 225,
               "SrTiO3-perovskite": 221, "TiO2-rutile": 136}
    for name, n in atoms.items():
        s = crystals[f"demo-{name}"]
        assert len(s) == n and SpacegroupAnalyzer(s).get_space_group_number() == numbers[name], name
        assert s.properties == {"material_id": f"demo-{name}"}
    first_of_each_group = {sg: (name, sg, lattice, species, coords)
                           for name, sg, lattice, species, coords in reversed(_PROTOTYPES)}
    for name, sg, lattice, species, coords in first_of_each_group.values():  # pymatgen's own construction
        reference = Structure.from_spacegroup(sg, lattice, species, coords).get_primitive_structure()
        reference.properties = {"material_id": f"demo-{name}"}
        assert crystals[f"demo-{name}"].as_dict() == reference.as_dict(), name  # sites, order, labels, lattice
    crystals["demo-Si-diamond"].translate_sites([0], [0.1, 0.0, 0.0])
    crystals["demo-Si-diamond"].properties["material_id"] = "edited"
    fresh = dict(demo_structures())["demo-Si-diamond"]
    assert fresh.properties["material_id"] == "demo-Si-diamond"
    assert not np.allclose(fresh.frac_coords, crystals["demo-Si-diamond"].frac_coords)
    assert fresh.lattice is not crystals["demo-Si-diamond"].lattice
