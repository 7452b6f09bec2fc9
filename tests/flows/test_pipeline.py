"""The build pipeline (in-process executor): shard plan, rows equal direct predictions,
resume skips finished shards, bad files become failures while every good one is written."""

import numpy as np
import pytest

import vgnn_core
from flows.local import build
from flows.plan import BuildSettings, plan_build, plan_shards
from flows.sources import demo_structures
from storage.catalog import connect
from tests.conftest import TINY_ARCH as TINY


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    paths = {}
    for kind in ("mvn", "kmvn"):
        paths[kind] = d / f"{kind}.pt"
        vgnn_core.save_checkpoint(vgnn_core.VGNN(kind=kind, **TINY), paths[kind])
    return paths


def test_shard_plan_is_deterministic_and_balanced():
    sizes = {f"mp-{k}": (k % 7) + 1 for k in range(500)} | {"mp-big": 900}
    a, b = plan_shards(sizes, 200), plan_shards(dict(reversed(list(sizes.items()))), 200)
    assert a == b
    assert sorted(m for s in a for m in s.material_ids) == sorted(sizes)
    assert [s.material_ids for s in a if "mp-big" in s.material_ids] == [("mp-big",)]
    assert max(s.n_atoms for s in a if s.material_ids != ("mp-big",)) <= 200


def test_shards_are_ordered_costliest_first(si_conventional, tmp_path):
    """The order the flow submits shards in, costliest first (the end of a build then waits on a
    short shard): the same shards, a large cell's shard before shards of many small ones, costs non-increasing."""
    from flows.plan import estimated_cost

    src = tmp_path / "in"
    src.mkdir()
    for k, rep in enumerate((1, 1, 1, 1, 3)):  # four 8-atom cells and one of 216 atoms
        si_conventional.make_supercell([rep] * 3, in_place=False).to(filename=str(src / f"si{k}.cif"))
    plan = plan_build(f"dir:{src}", "r", BuildSettings(atoms_per_shard=16, large_cell_atoms=100))
    order = plan.shards_costliest_first()
    assert sorted(s.shard_id for s in order) == sorted(s.shard_id for s in plan.shards) and len(order) >= 3
    assert order[0].material_ids == ("si4",) and order[0].n_atoms == 216
    costs = [sum(estimated_cost(x) for x in plan.items(s)) for s in order]
    assert costs == sorted(costs, reverse=True)
    assert estimated_cost(plan.inputs["si4"]) > 27 ** 2.5 * (estimated_cost(plan.inputs["si0"]) - 4)  # atoms^2.5


def test_demo_build_equals_direct_prediction_and_resumes(tmp_path, checkpoints):
    specs = [str(checkpoints["mvn"]), str(checkpoints["kmvn"])]
    first = build("demo", specs, tmp_path, release="r", settings=BuildSettings(atoms_per_shard=30), progress=None)
    assert first["written"] == len(demo_structures()) and first["failed"] == 0 and first["shards"] > 1
    con = connect(tmp_path)
    got = dict(con.execute("SELECT material_id, frequencies_cm1 FROM gamma").fetchall())
    mvn = vgnn_core.Predictor(vgnn_core.load_checkpoint(checkpoints["mvn"]))
    ids, structures = zip(*demo_structures())
    for mid, w in zip(ids, mvn.predict_gamma(list(structures))):
        np.testing.assert_allclose(got[mid], w.astype(np.float32), rtol=1e-5, atol=0.05)  # float32 batch round-off, amplified by √ near ω = 0
    bands = con.execute("SELECT material_id, qpoints, frequencies_cm1 FROM bands WHERE material_id = 'demo-ZnO-wurtzite'").fetchone()
    kmvn = vgnn_core.Predictor(vgnn_core.load_checkpoint(checkpoints["kmvn"]))
    direct = kmvn.predict_bands([dict(demo_structures())["demo-ZnO-wurtzite"]], [np.array(bands[1])])[0]
    np.testing.assert_allclose(np.array(bands[2]), direct.astype(np.float32), rtol=1e-5, atol=0.05)
    # k-MVN also fills the thermo and dos tables, equal to a direct mesh calculation
    n = len(demo_structures())
    assert con.execute("SELECT count(*) FROM thermo").fetchone()[0] == n
    assert con.execute("SELECT count(*) FROM dos").fetchone()[0] == n
    row = con.execute("SELECT heat_capacity_300K_J_K_mol, zero_point_energy_kJ_mol, formula_units, total, "
                      "frequency_step_cm1, partial, elements FROM thermo JOIN dos USING (material_id, source) "
                      "WHERE material_id = 'demo-ZnO-wurtzite'").fetchone()
    (result,) = kmvn.predict_phonons([dict(demo_structures())["demo-ZnO-wurtzite"]], density=30.0)
    per_fu = result.thermal.per_formula_unit()
    assert row[2] == 2 and row[0] == pytest.approx(per_fu.at(300.0)["heat_capacity"], rel=1e-4)
    assert row[1] == pytest.approx(per_fu.zero_point_energy, rel=1e-4)
    assert np.sum(row[3]) * row[4] == pytest.approx(12, rel=1e-2)  # 3m states
    assert row[6] == ["Zn", "O"] and np.allclose(np.sum(row[5], axis=0), row[3], rtol=1e-4, atol=1e-7)
    # every prediction row says whether the crystal is probably unstable, as the direct result does
    flag = con.execute("SELECT likely_unstable FROM bands WHERE material_id = 'demo-ZnO-wurtzite'").fetchone()[0]
    assert flag is result.likely_unstable
    assert con.execute("SELECT count(likely_unstable) FROM gamma").fetchone()[0] == n
    assert con.execute("SELECT count(likely_unstable) FROM material_summary").fetchone()[0] == n
    # the summary says where the shards' time went; a build that reuses every shard computed nothing
    assert set(first["stage_seconds"]) == {"graph", "network", "solves", "bands", "dos_thermo", "rows", "write"}
    assert min(first["stage_seconds"].values()) > 0 and sum(first["stage_seconds"].values()) <= first["shard_seconds"]
    again = build("demo", specs, tmp_path, release="r", settings=BuildSettings(atoms_per_shard=30), progress=None)
    assert again["skipped_shards"] == again["shards"] and again["stage_seconds"] == {} and again["shard_seconds"] == 0
    assert connect(tmp_path).execute("SELECT count(*) FROM structures").fetchone()[0] == len(demo_structures())


def test_bad_files_become_failures(tmp_path, checkpoints, si_conventional, monkeypatch):
    """A folder with a dozen kinds of broken input: every good structure is written, every bad
    one is in ``failures`` with a reason that names it."""
    from pymatgen.core import Lattice, Structure

    src = tmp_path / "in"
    src.mkdir()
    si_conventional.to(filename=str(src / "good_Si.cif"))
    Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(src / "good_MgO.vasp"))
    (src / "empty.cif").write_text("")
    (src / "binary.cif").write_bytes(bytes(range(256)))
    (src / "garbage.cif").write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nX\n")
    Structure(Lattice.cubic(4), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).to(filename=str(src / "partial.cif"))
    Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]).to(filename=str(src / "overlap.cif"))
    (src / "no_atoms.vasp").write_text("empty\n1.0\n4 0 0\n0 4 0\n0 0 4\n\n\nDirect\n")
    (src / "truncated.vasp").write_text("Si\n1.0\n5.4 0 0\n0 5.4 0\n0 0 5.4\nSi\n2\nDirect\n0 0 0\n")
    (src / "flat_cell.vasp").write_text("flat\n1.0\n4 0 0\n0 4 0\n8 8 0\nSi\n1\nDirect\n0 0 0\n")
    (src / "nan.vasp").write_text("nan\n1.0\n4 0 0\n0 4 0\n0 0 4\nSi\n1\nDirect\nnan 0 0\n")
    (src / "molecule.xyz").write_text("2\nwater fragment\nO 0 0 0\nH 0 0 0.96\n")
    (src / "unknown_element.vasp").write_text("x\n1.0\n4 0 0\n0 4 0\n0 0 4\nXq\n1\nDirect\n0 0 0\n")
    (si_conventional * (2, 1, 1)).to(filename=str(src / "huge.cif"))  # 16 atoms: fine
    (si_conventional * (2, 2, 2)).to(filename=str(src / "too_big.cif"))  # 64 atoms > MAX_ATOMS
    summary = build(f"dir:{src}", [str(checkpoints["mvn"])], tmp_path / "db", release="r", progress=None,
                    settings=BuildSettings(max_atoms=40))  # a "huge" cell without a huge test
    bad = {"empty", "binary", "garbage", "partial", "overlap", "no_atoms", "truncated", "flat_cell", "nan",
           "molecule", "unknown_element", "too_big"}
    assert summary["written"] == 3 and summary["failed"] == len(bad) == 12
    con = connect(tmp_path / "db")
    fails = dict(con.execute("SELECT material_id, message FROM failures").fetchall())
    assert set(fails) == bad
    for mid, message in fails.items():
        assert mid in message or mid.split("_")[0] in message, (mid, message)  # the cause names the input
    assert "file is empty" in fails["empty"] and "partial occupancy" in fails["partial"]
    assert "overlap" in fails["overlap"] and "above the database limit" in fails["too_big"]
    assert sorted(con.execute("SELECT material_id FROM gamma").fetchall()) == [("good_MgO",), ("good_Si",), ("huge",)]


def test_cells_above_the_band_limit_keep_their_gamma_spectrum(tmp_path, checkpoints, si_conventional, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    si_conventional.to(filename=str(src / "Si8.cif"))
    summary = build(f"dir:{src}", [str(checkpoints["mvn"]), str(checkpoints["kmvn"])], tmp_path / "db",
                    release="r", progress=None, settings=BuildSettings(bands_max_atoms=4))
    assert summary["written"] == 1 and summary["failed"] == 0
    con = connect(tmp_path / "db")
    assert con.execute("SELECT count(*) FROM gamma").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM bands").fetchone()[0] == 0
    stage, message = con.execute("SELECT stage, message FROM failures").fetchone()
    assert stage == "limit" and "8 atoms > 4" in message


def test_half_formula_unit_cells_get_thermo_rows(tmp_path, checkpoints):
    """A one-atom H cell is ½ H₂ and a LiO cell ½ Li₂O₂ in pymatgen's reduced formula; such
    cells once crashed a whole Togo shard (ZeroDivisionError from rounding ½ down to 0)."""
    from pymatgen.core import Lattice, Structure

    src = tmp_path / "in"
    src.mkdir()
    Structure(Lattice.hexagonal(3.3, 5.4), ["H"], [[0, 0, 0]]).to(filename=str(src / "H1.vasp"))
    Structure(Lattice.cubic(3.0), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(src / "LiO.vasp"))
    Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(src / "MgO.vasp"))
    summary = build(f"dir:{src}", [str(checkpoints["mvn"]), str(checkpoints["kmvn"])], tmp_path / "db",
                    release="r", progress=None)
    assert summary["written"] == 3 and summary["failed"] == 0
    con = connect(tmp_path / "db")
    rows = {m: (z, cv) for m, z, cv in con.execute(
        "SELECT material_id, formula_units, heat_capacity_300K_J_K_mol FROM thermo").fetchall()}
    assert rows["H1"][0] == 0.5 and rows["LiO"][0] == 0.5 and rows["MgO"][0] == 1.0
    formulas = dict(con.execute("SELECT material_id, formula FROM structures").fetchall())
    assert formulas["H1"] == "H2" and formulas["LiO"] == "Li2O2"  # per those formula units
    kmvn = vgnn_core.Predictor(vgnn_core.load_checkpoint(checkpoints["kmvn"]))
    # the untrained model leaves the H cell almost all imaginary, so its C_v rests on a few modes:
    # predict it in the same batch as the build did (float32 batch round-off would flip them)
    h, _, _ = kmvn.predict_phonons([Structure.from_file(src / f"{n}.vasp") for n in ("H1", "LiO", "MgO")],
                                   density=30.0)
    assert rows["H1"][1] == pytest.approx(2 * h.thermal.at(300.0)["heat_capacity"], rel=1e-4)


def test_a_material_whose_rows_fail_is_lost_alone(tmp_path, checkpoints, monkeypatch):
    """An error while building one material's rows becomes its failure; the shard's other
    materials are written."""
    import flows.shard as shard

    real = shard.thermo_row

    def thermo_row(material_id, *args):
        if material_id == "demo-ZnO-wurtzite":
            raise ZeroDivisionError("float division by zero")
        return real(material_id, *args)

    monkeypatch.setattr(shard, "thermo_row", thermo_row)
    summary = build("demo", [str(checkpoints["mvn"]), str(checkpoints["kmvn"])], tmp_path, release="r",
                    settings=BuildSettings(atoms_per_shard=10_000), progress=None)
    assert summary["failed"] == 1 and summary["written"] == len(demo_structures()) - 1
    plan = plan_build("demo", "r", BuildSettings(atoms_per_shard=10_000))
    mates = set(next(s for s in plan.shards if "demo-ZnO-wurtzite" in s.material_ids).material_ids)
    assert len(mates) > 10  # the failing material shared its shard with many others
    con = connect(tmp_path)
    written = {m for (m,) in con.execute("SELECT material_id FROM thermo").fetchall()}
    assert mates - {"demo-ZnO-wurtzite"} <= written
    mid, stage, error, message = con.execute("SELECT material_id, stage, error_class, message FROM failures").fetchone()
    assert (mid, stage, error) == ("demo-ZnO-wurtzite", "predict", "ZeroDivisionError")
    assert "raised at test_pipeline.py" in message
    for table in ("structures", "gamma", "bands", "thermo", "dos"):  # nothing half-written
        assert con.execute(f"SELECT count(*) FROM {table} WHERE material_id = 'demo-ZnO-wurtzite'").fetchone()[0] == 0


def test_build_validates_and_analyses_each_crystal_once(tmp_path, checkpoints, monkeypatch, si_conventional):
    """Reading, the structures row, the Γ and band predictions, the q-mesh and the hash all use
    one validation and one symmetry analysis per crystal."""
    import vgnn_core.crystal.crystal as crystal_module
    import vgnn_core.crystal.structures as structures_module

    calls = {"validate": [], "symmetry": []}
    real_validate, real_analyse = structures_module._validate, crystal_module.analyse_symmetry

    def validate(structure, name, *args, **kwargs):
        calls["validate"].append(name)
        return real_validate(structure, name, *args, **kwargs)

    def analyse(structure, *args, **kwargs):
        calls["symmetry"].append(structure.properties.get("material_id"))
        return real_analyse(structure, *args, **kwargs)

    monkeypatch.setattr(structures_module, "_validate", validate)
    monkeypatch.setattr(crystal_module, "analyse_symmetry", analyse)
    src = tmp_path / "in"
    src.mkdir()
    si_conventional.to(filename=str(src / "Si8.cif"))
    summary = build(f"dir:{src}", [str(checkpoints["mvn"]), str(checkpoints["kmvn"])], tmp_path / "db",
                    release="r", progress=None)
    demo = build("demo", [str(checkpoints["mvn"]), str(checkpoints["kmvn"])], tmp_path / "db2",
                 release="r", progress=None)
    n = summary["written"] + demo["written"]
    assert n == 1 + len(demo_structures())
    expected = ["Si8"] + [mid for mid, _ in demo_structures()]
    assert sorted(c.removesuffix(".cif") for c in calls["validate"]) == sorted(expected)  # the file is named
    assert sorted(calls["symmetry"]) == sorted(expected)


def test_a_members_instability_reaches_the_database_rows(rocksalt_nacl):
    """An ensemble whose averaged force constants are stable but one member's are not: the
    bands and gamma rows built from its prediction both say ``likely_unstable``."""
    from flows.models import LoadedModel
    from flows.shard import _result_rows
    from storage.schema import validate_rows
    from tests.nn.test_uncertainty import SpringMember
    from vgnn_core.crystal.crystal import as_crystal

    crystal = as_crystal(rocksalt_nacl, name="NaCl-springs")
    for ks, unstable in (((2.0, -0.5), True), ((2.0, 1.0), False)):
        predictor = vgnn_core.Predictor(vgnn_core.VGNNEnsemble([SpringMember(k).double() for k in ks]))
        (res,) = predictor.predict_phonons([crystal], density=20.0)
        model = LoadedModel("kmvn-springs", "0" * 64, predictor)
        rows = {**_result_rows(crystal, model, res, "bands"), **_result_rows(crystal, model, res, "gamma")}
        assert np.min(rows["bands"]["frequencies_cm1"]) > -1e-3  # the mean itself is stable
        assert rows["bands"]["likely_unstable"] is unstable and rows["gamma"]["likely_unstable"] is unstable
        for table in ("bands", "gamma"):
            validate_rows(table, [rows[table]])


@pytest.fixture(scope="module")
def twin_checkpoints(tmp_path_factory):
    """A k-MVN and the MVN of the same network (the shipped pair is built this way)."""
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("twins")
    torch.manual_seed(3)
    kmvn = vgnn_core.VGNN(kind="kmvn", full_blocks=True, r_bond=5.0, **TINY)  # then the MVN's Γ is its own
    mvn = vgnn_core.VGNN(kmvn.config, kind="mvn")
    mvn.load_state_dict(kmvn.state_dict())
    vgnn_core.save_checkpoint(kmvn, d / "kmvn.pt")
    vgnn_core.save_checkpoint(mvn, d / "mvn.pt")
    return [str(d / "mvn.pt"), str(d / "kmvn.pt")]


def test_a_shards_crystals_are_split_between_the_prediction_calls():
    """Every crystal gets each table its models give exactly once: with shared networks the cells
    within the band limit go through one call for both tables and the rest through a Γ-only call."""
    from types import SimpleNamespace

    from flows.shard import split_work

    crystals = [SimpleNamespace(name=f"c{k}", n_atoms=n) for k, n in enumerate((2, 5, 3, 8))]
    settings = BuildSettings(bands_max_atoms=4)
    names = lambda cs: [c.name for c in cs]  # noqa: E731
    gamma, bands = object(), object()
    cases = {  # (Γ model, band model, shared networks) -> calls
        (True, True, True): [("both", ["c0", "c2"]), ("gamma", ["c1", "c3"])],
        (True, True, False): [("gamma", ["c0", "c1", "c2", "c3"]), ("bands", ["c0", "c2"])],
        (True, False, False): [("gamma", ["c0", "c1", "c2", "c3"])],
        (False, True, False): [("bands", ["c0", "c2"])],
    }
    for (has_gamma, has_bands, shared), expected in cases.items():
        models = SimpleNamespace(gamma=gamma if has_gamma else None, bands=bands if has_bands else None,
                                 share_networks=shared)
        work = split_work(crystals, models, settings)
        assert [(call, names(todo)) for call, todo in work.calls()] == expected
        assert names(work.too_large_for_bands) == (["c1", "c3"] if has_bands else [])  # no band model: no limit


def test_the_build_timeline_accounts_for_every_second_outside_the_shards():
    """Two workers: one runs shards 10-20 and 21-30, the other 12-25; the build spans 0-33."""
    from types import SimpleNamespace

    from flows.plan import build_timeline

    r = lambda w, a, b: SimpleNamespace(worker=w, started=a, finished=b)  # noqa: E731
    reports = [r("h:1", 10.0, 20.0), r("h:1", 21.0, 30.0), r("h:2", 12.0, 25.0), r("", 0.0, 0.0)]  # last: skipped
    t = build_timeline(reports, begun=0.0, ended=33.0)
    assert t["workers"] == 2
    assert t["to_first_shard_s"] == pytest.approx((10 + 12) / 2)
    assert t["shards_s"] == pytest.approx((19 + 13) / 2)
    assert t["between_shards_s"] == pytest.approx((1 + 0) / 2)
    assert t["tail_s"] == pytest.approx((0 + 5) / 2)
    assert t["after_last_shard_s"] == pytest.approx(3.0)
    parts = ("to_first_shard_s", "shards_s", "between_shards_s", "tail_s", "after_last_shard_s")
    assert sum(t[k] for k in parts) == pytest.approx(33.0)  # per worker, the whole span
    assert build_timeline([], 0.0, 1.0) == {}
    # two shards at once in one process are two task slots (threads), each busy for its own shard
    overlap = build_timeline([r("h:1:7", 1.0, 10.0), r("h:1:8", 1.0, 10.0)], begun=0.0, ended=10.0)
    assert overlap["workers"] == 2 and overlap["shards_s"] == pytest.approx(9.0) and overlap["between_shards_s"] == 0


def test_models_sharing_their_network_are_run_once_with_the_same_rows(tmp_path, twin_checkpoints, monkeypatch):
    """Γ (MVN) and bands (k-MVN) of the same network come from one forward pass per batch; the
    rows equal those of two separate passes, a crystal that fails is lost alone, and cells too
    large for bands still get their Γ row."""
    import vgnn_core.predict as predict
    from flows.models import BuildModels

    settings = BuildSettings(atoms_per_shard=10_000, bands_max_atoms=3)
    real = predict.phonon_properties

    def phonon_properties(fc, crystal, **kw):
        if crystal.name == "demo-NaCl-rocksalt":
            raise FloatingPointError("no eigenvalues")
        return real(fc, crystal, **kw)

    monkeypatch.setattr(predict, "phonon_properties", phonon_properties)
    passes = []
    network = predict.Predictor._force_constants_and_agreement

    def counted(self, graphs, born=None, companion=None, rotations=None, primitive_sites=None):
        passes.append((len(graphs), companion is not None))
        return network(self, graphs, born, companion, rotations, primitive_sites)

    monkeypatch.setattr(predict.Predictor, "_force_constants_and_agreement", counted)
    shared = build("demo", twin_checkpoints, tmp_path / "shared", release="r", settings=settings, progress=None)
    n = len(demo_structures())
    small = sum(len(s) <= 3 for _, s in demo_structures())
    assert 0 < small < n
    # per shard: one shared pass of its small cells, and a Γ-only pass of the cells too large for
    # bands; in the shard of the failure the shared pass is then repeated one crystal at a time
    assert sum(k for k, together in passes if not together) == n - small
    batches = [k for k, together in passes if together and k > 1]
    one_at_a_time = [k for k, together in passes if together and k == 1]
    assert sum(batches) == small and len(one_at_a_time) in batches
    monkeypatch.setattr(BuildModels, "share_networks", property(lambda self: False))
    passes.clear()
    apart = build("demo", twin_checkpoints, tmp_path / "apart", release="r", settings=settings, progress=None)
    assert not any(shared for _, shared in passes)
    assert shared["written"] == apart["written"] == n - 1 and shared["failed"] == apart["failed"] == 1
    a, b = connect(tmp_path / "shared"), connect(tmp_path / "apart")
    for table, column, flags in (("gamma", "frequencies_cm1", "uncertainty_cm1, likely_unstable"),
                                 ("bands", "frequencies_cm1", "uncertainty_cm1, likely_unstable"),
                                 ("thermo", "heat_capacity_300K_J_K_mol", "formula_units"), ("dos", "total", "elements")):
        query = f"SELECT material_id, {column}, {flags} FROM {table} ORDER BY material_id"
        ra, rb = a.execute(query).fetchall(), b.execute(query).fetchall()
        assert [(x[0], *x[2:]) for x in ra] == [(y[0], *y[2:]) for y in rb]
        for x, y in zip(ra, rb):  # the Γ batches differ (large cells apart): float32 round-off only
            np.testing.assert_allclose(np.array(x[1], float), np.array(y[1], float), rtol=0, atol=1e-3)
    # the Γ table holds the MVN's own spectra, as a direct MVN prediction gives them
    mvn = vgnn_core.Predictor(vgnn_core.load_checkpoint(twin_checkpoints[0]))
    written = dict(a.execute("SELECT material_id, frequencies_cm1 FROM gamma").fetchall())
    structures = dict(demo_structures())
    ids = sorted(written)
    direct = mvn.predict_gamma([structures[m] for m in ids])
    assert max(np.abs(np.array(written[m]) - w).max() for m, w in zip(ids, direct)) < 1e-3
    assert a.execute("SELECT count(*) FROM gamma").fetchone()[0] == n - 1
    assert a.execute("SELECT count(*) FROM bands").fetchone()[0] == small - 1
    failure = a.execute("SELECT material_id, stage, error_class FROM failures WHERE stage = 'predict'").fetchall()
    assert failure == [("demo-NaCl-rocksalt", "predict", "FloatingPointError")]
