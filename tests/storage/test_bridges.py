"""Bridges: a release's rows become pymatgen / emmet objects in the receiving library's units.

The release is a real one in miniature: the shipped k-MVN model predicts two demo crystals
(stable Si, and cubic SrTiO3, unstable in DFT: imaginary modes are checked against the rows) and a
rock-salt LiO cell (half of pymatgen's formula Li2O2) through the build's own shard code.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher

from storage import bridges
from storage.catalog import connect
from storage.release import Release, finalize_release, release_dir
from storage.rows import chemical_formula_anonymous, chemical_formula_reduced
from storage.schema import DIMENSIONLESS, SCHEMA_VERSION, TABLES
from storage.writer import write_shard
from vgnn_core.io.exports import pretty_label
from vgnn_core.phonons.units import THZ_TO_CM1

SI, STO = "demo-Si-diamond", "demo-SrTiO3-perovskite"
LIO = "rocksalt-LiO"  # pymatgen's formula is Li2O2: the cell holds half of one


@pytest.fixture(scope="module")
def inputs():
    from pymatgen.core import Lattice, Structure

    from flows.sources import demo_structures
    from vgnn_core.crystal.crystal import as_crystal

    demo = dict(demo_structures())
    crystals = {mid: as_crystal(demo[mid], name=mid) for mid in (SI, STO)}
    lio = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.2), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    crystals[LIO] = as_crystal(lio.get_primitive_structure(), name=LIO)
    return crystals


@pytest.fixture(scope="module")
def release(inputs, tmp_path_factory):
    from flows.models import BuildModels, load_model
    from flows.shard import predict_shard

    kmvn = load_model("kmvn")
    rows = predict_shard(list(inputs.values()), BuildModels(None, kmvn), run_id="t")
    assert not rows["failures"]
    root = tmp_path_factory.mktemp("db")
    write_shard(release_dir(root, "r1"), "demo", "s0", rows)
    finalize_release(root, "r1", models=[kmvn.identity()])
    return root


@pytest.fixture(scope="module")
def con(release):
    return connect(release)


def _bands_row(con, mid):
    cur = con.execute("SELECT * FROM bands WHERE material_id = ?", [mid])
    return dict(zip([d[0] for d in cur.description], cur.fetchone()))


def test_lo_to_rows_reach_pymatgen_and_emmet(con, release):
    """The build adds the LO–TO jump by default: SrTiO3's Γ points along the path carry it, and
    pymatgen lists them per direction (``nac_frequencies``) above the TO spectrum of the row."""
    row = _bands_row(con, STO)
    assert row["has_nac"] is True and row["lo_to_splitting_cm1"] > 30
    bs = bridges.band_structure(con, STO, model="kmvn")
    stored = np.array(row["frequencies_cm1"], dtype=float)
    at_gamma = [stored[k] for k, q in enumerate(row["qpoints"]) if not np.any(q)]
    assert bs.has_nac and len(bs.nac_frequencies) >= len(at_gamma) >= 2
    for _, thz in bs.nac_frequencies:  # each is the row's spectrum at one of its Γ points
        assert min(np.abs(np.asarray(thz) * 33.35641 - g).max() for g in at_gamma) < 1e-3
    assert bridges.emmet_document(release, STO)["phonon_bandstructure"]["has_nac"] is True


@pytest.mark.parametrize("mid", [SI, STO])
def test_band_structure_is_the_row_in_pymatgen_units(con, mid):
    row = _bands_row(con, mid)
    bs = bridges.band_structure(con, mid, model="kmvn")
    stored = np.array(row["frequencies_cm1"], dtype=float)  # [q][band], cm⁻¹
    # THz and [band][q]
    assert bs.bands.shape == stored.T.shape
    np.testing.assert_allclose(bs.bands, stored.T / 33.35641, rtol=1e-6)
    # the stored path: fractional q-points, labels at their indices
    np.testing.assert_allclose([q.frac_coords for q in bs.qpoints], np.array(row["qpoints"]), atol=1e-12)
    for i, name in zip(row["label_indices"], row["labels"]):
        assert bs.qpoints[i].label == pretty_label(name)
    assert sum(q.label is not None for q in bs.qpoints) == len(row["labels"])
    # pymatgen's distances include 2π, as the stored ones do (band.yaml's do not)
    distances = np.array(row["distances_per_angstrom"], dtype=float)
    np.testing.assert_allclose(bs.distance, distances, rtol=1e-5, atol=1e-5)
    assert distances[-1] > 2 * np.pi * 0.5  # really the 2π convention: a path spans ≳ 1 Å⁻¹ · 2π
    # imaginary modes: pymatgen and the stored minimum agree
    lowest_thz = stored.min() / THZ_TO_CM1
    assert bs.has_imaginary_freq() == (lowest_thz < -0.01)
    if mid == SI:
        assert not bs.has_imaginary_freq()  # silicon is stable


def test_a_material_goes_to_a_pymatgen_plot_in_one_call(release):
    ax = bridges.plot_band_structure(release, STO)
    n_bands = 15  # 5 atoms
    assert len(ax.get_lines()) >= n_bands
    low, _ = ax.get_ylim()
    assert low < 0  # the imaginary branches are drawn below zero (THz)
    ticks = {t.get_text() for t in ax.get_xticklabels()}
    assert any("Γ" in t for t in ticks) and "X" in " ".join(ticks)


@pytest.mark.parametrize("mid,natoms", [(SI, 2), (STO, 5)])
def test_dos_integrates_to_3n_in_thz(con, mid, natoms):
    d = bridges.dos(con, mid)
    assert np.trapezoid(d.densities, d.frequencies) == pytest.approx(3 * natoms, rel=2e-3)
    step_cm1 = con.execute("SELECT frequency_step_cm1 FROM dos WHERE material_id = ?", [mid]).fetchone()[0]
    assert d.frequencies[1] - d.frequencies[0] == pytest.approx(step_cm1 / THZ_TO_CM1, rel=1e-6)
    parts = bridges.element_dos(con, mid)
    assert sum(np.trapezoid(p.densities, p.frequencies) for p in parts.values()) == pytest.approx(3 * natoms, rel=2e-3)


@pytest.mark.parametrize("mid", [SI, STO])
def test_structure_is_the_stored_crystal(con, inputs, mid):
    s = bridges.structure(con, mid)
    original = inputs[mid].structure
    np.testing.assert_array_equal(s.lattice.matrix, original.lattice.matrix)
    np.testing.assert_allclose(s.cart_coords, original.cart_coords, atol=1e-12)
    assert [e.symbol for e in s.species] == [e.symbol for e in original.species]
    assert StructureMatcher().fit(s, original)


def test_thermo_per_cell_in_joules_agrees_with_pymatgens_dos_thermodynamics(con):
    th = bridges.thermo(con, SI)
    z, f_kj = con.execute("SELECT formula_units, free_energy_kJ_mol FROM thermo WHERE material_id = ?", [SI]).fetchone()
    assert z == 2 and th.formula_units == 2  # Si₂ cell, formula Si
    np.testing.assert_allclose(th.free_energy, np.array(f_kj) * 2 * 1000, rtol=1e-6)
    # pymatgen integrates the bridged DOS per mole of cells, in J: the same numbers within the
    # DOS's Gaussian smearing
    d = bridges.dos(con, SI)
    k = int(np.argmin(np.abs(th.temperatures - 300.0)))
    assert th.temperatures[k] == 300.0
    assert th.heat_capacity[k] == pytest.approx(d.cv(300.0), rel=0.01)
    assert th.entropy[k] == pytest.approx(d.entropy(300.0), rel=0.02)
    assert th.free_energy[k] == pytest.approx(d.helmholtz_free_energy(300.0), rel=0.02)
    assert th.zero_point_energy == pytest.approx(d.zero_point_energy(), rel=0.01)
    # Dulong-Petit per mole of atoms at high temperature: 3R
    assert th.per_atom().heat_capacity[-1] == pytest.approx(3 * 8.314462618, rel=0.03)


def test_optimade_fields_are_stored(con):
    rows = dict((r[0], r[1:]) for r in con.execute(
        "SELECT material_id, chemical_formula_reduced, chemical_formula_anonymous, nelements, elements, "
        "elements_ratios, dimension_types, nperiodic_dimensions, species, formula FROM structures").fetchall())
    reduced, anonymous, nelements, elements, ratios, dims, nper, species, formula = rows[STO]
    assert (reduced, anonymous, nelements, elements) == ("O3SrTi", "A3BC", 3, ["O", "Sr", "Ti"])
    assert formula == "SrTiO3"  # pymatgen's order stays in `formula`
    np.testing.assert_allclose(ratios, [0.6, 0.2, 0.2])
    assert dims == [1, 1, 1] and nper == 3
    assert [s["name"] for s in species] == elements
    assert species[1] == {"name": "Sr", "chemical_symbols": ["Sr"], "concentration": [1.0], "mass": [pytest.approx(87.62)]}
    assert rows[SI][:4] == ("Si", "A", 1, ["Si"])


def test_optimade_formulas():
    assert chemical_formula_reduced(["Te", "Pb"]) == "PbTe"  # pymatgen writes TePb
    assert chemical_formula_reduced(["Zn", "Zn", "O", "O"]) == "OZn"
    assert chemical_formula_anonymous(["Al", "Al", "O", "O", "O"]) == "A3B2"
    many = [f"X{k}" for k in range(60)]
    anonymous = chemical_formula_anonymous(many)
    assert anonymous.startswith("ABC") and "ZAaBa" in anonymous and anonymous.endswith("Ab" + "Bb" + "Cb" + "Db" + "Eb" + "Fb" + "Gb" + "Hb")


def test_predicted_rows_say_how_they_were_obtained(con, release):
    for table in ("bands", "thermo", "dos"):
        methods = con.execute(f"SELECT DISTINCT phonon_method, model FROM {table}").fetchall()
        assert methods == [("vgnn-kmvn", "kmvn")]
    sha = con.execute("SELECT DISTINCT model_sha256 FROM bands").fetchone()[0]
    from vgnn_core.pretrained.registry import shipped_checkpoints

    assert sha == shipped_checkpoints()["kmvn"]["sha256"]
    assert Release.open(release).manifest["schema_version"] == SCHEMA_VERSION == "1.6"


def test_every_column_documents_its_unit():
    for table, sch in TABLES.items():
        for f in sch:
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            assert "unit" in meta and meta.get("description"), f"{table}.{f.name}"
            leaf = f.type
            while pa.types.is_list(leaf) or pa.types.is_fixed_size_list(leaf):
                leaf = leaf.value_type
            if pa.types.is_integer(leaf) or pa.types.is_floating(leaf):
                assert meta["unit"], f"{table}.{f.name} is a number without a unit"
    bands = TABLES["bands"]
    assert bands.field("distances_per_angstrom").metadata[b"unit"] == b"angstrom^-1"
    assert bands.field("qpoints").metadata[b"unit"].decode() == DIMENSIONLESS


def test_emmet_document_has_emmets_fields_and_units(con):
    doc = bridges.emmet_document(con, STO)
    row = _bands_row(con, STO)
    assert doc["phonon_method"] == "vgnn-kmvn"
    bs = doc["phonon_bandstructure"]
    np.testing.assert_allclose(bs["frequencies"], np.array(row["frequencies_cm1"]).T / THZ_TO_CM1, rtol=1e-6)
    np.testing.assert_allclose(bs["qpoints"], row["qpoints"])
    assert set(bs["labels_dict"]) == {pretty_label(x) for x in row["labels"]}
    assert doc["formula_units"] == 1 and doc["nsites"] == 5 and doc["formula_pretty"] == "SrTiO3"
    assert np.trapezoid(doc["phonon_dos"]["densities"], doc["phonon_dos"]["frequencies"]) == pytest.approx(15, rel=2e-3)
    emmet_phonon = pytest.importorskip("emmet.core.phonon")
    assert set(doc) <= set(emmet_phonon.PhononBSDOSDoc.model_fields)
    model = bridges.emmet_model(con, STO)
    assert isinstance(model, emmet_phonon.PhononBSDOSDoc)
    assert model.phonon_bandstructure.to_pmg.nb_bands == 15
    assert model.has_imaginary_modes == bool(np.min(row["frequencies_cm1"]) / THZ_TO_CM1 < -0.01)
    th = bridges.thermo(con, STO)
    k = int(np.argmin(np.abs(th.temperatures - 300.0)))
    assert model.heat_capacity(300.0, normalization=None) == pytest.approx(th.heat_capacity[k], rel=0.02)
    assert "vgnn-kmvn" in model.code and model.phonon_method is None
    assert set(model.phonon_bandstructure.labels_dict) == set(bs["labels_dict"])  # our labels, kept


def test_a_release_written_before_schema_1_4_still_bridges(release, tmp_path):
    """Drop every column schema 1.4 added: the release opens, the new scalars read NULL, and the
    bridges work (the phonon method follows from the shipped model's name)."""
    import shutil

    added = {"phonon_method", "chemical_formula_reduced", "chemical_formula_anonymous", "nelements",
             "nperiodic_dimensions", "elements_ratios", "dimension_types", "species"}
    old_root = tmp_path / "db"
    shutil.copytree(release, old_root)
    for f in old_root.rglob("*.parquet"):
        table = pq.read_table(f)
        pq.write_table(table.select([n for n in table.column_names if n not in added]), f)
    finalize_release(old_root, Release.open(old_root).manifest["name"])
    con = connect(old_root)
    assert con.execute("SELECT DISTINCT phonon_method FROM bands").fetchall() == [(None,)]
    assert con.execute("SELECT DISTINCT chemical_formula_reduced FROM structures").fetchall() == [(None,)]
    bs = bridges.band_structure(con, STO)
    assert bs.nb_bands == 15 and bs.has_imaginary_freq() == (bs.min_freq()[1] < -0.01)
    assert bridges.emmet_document(old_root, SI)["phonon_method"] == "vgnn-kmvn"


def test_missing_material_is_one_clear_error(con):
    with pytest.raises(bridges.MaterialNotFoundError, match="demo-nothing: no structures row"):
        bridges.band_structure(con, "demo-nothing")
    with pytest.raises(bridges.MaterialNotFoundError, match=r"models there: \['kmvn'\]"):
        bridges.dos(con, SI, model="mvn")


def test_emmet_counts_formula_units_as_emmet_does(con):
    """A LiO cell is half of pymatgen's Li2O2 (the build's thermo rows are per that formula) but
    one formula unit to emmet, whose thermodynamics divide by its integer count: the document
    uses emmet's count, and emmet's default normalisation then gives the cell's own C_v."""
    doc = bridges.emmet_document(con, LIO)
    assert doc["formula_units"] == 1 and doc["formula_pretty"] == "Li2O2"
    assert doc["volume_per_formula_unit"] == pytest.approx(doc["volume"])
    th = bridges.thermo(con, LIO)
    assert th.formula_units == pytest.approx(0.5)  # pymatgen's count, which the rows keep
    emmet_phonon = pytest.importorskip("emmet.core.phonon")
    from emmet.core.utils import get_num_formula_units
    from pymatgen.core import Composition

    for formula in ("LiO", "Li2O2", "H", "N8", "Si2", "NaCl", "SrTiO3", "Ca2Ti2O6"):
        composition = Composition(formula)
        assert bridges.emmet_formula_units(composition) == get_num_formula_units(composition.as_dict())
    model = bridges.emmet_model(con, LIO)
    assert isinstance(model, emmet_phonon.PhononBSDOSDoc)
    k = int(np.argmin(np.abs(th.temperatures - 300.0)))
    assert model.heat_capacity(300.0) == pytest.approx(th.heat_capacity[k], rel=0.02)  # per cell
