"""The LO–TO columns of the gamma and bands tables (schema 1.5): rows from a real polar result
carry neutral Born charges and a symmetric positive-definite ε∞ and survive a Parquet round
trip; rows without the correction say has_nac false with NULL charges; inconsistent rows are refused."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymatgen.io.phonopy import get_pmg_structure

from storage.rows import bands_row, gamma_row, nac_columns
from storage.schema import NULL_LISTS, SCHEMA_VERSION, SchemaError, schema, to_table
from vgnn_core import from_phonopy
from vgnn_core.io.phonopy import load_force_sets, read_born_file
from vgnn_core.phonons.result import phonon_properties


@pytest.fixture(scope="module")
def nacl_results(phonopy_examples_dir):
    """NaCl from phonopy's example force sets, with its BORN charges and without them."""
    ph = load_force_sets(phonopy_examples_dir / "NaCl")
    ph.symmetrize_force_constants()
    structure = get_pmg_structure(ph.primitive)
    born = read_born_file(phonopy_examples_dir / "NaCl" / "BORN", structure).neutral()
    supercell = np.rint(np.asarray(ph.supercell.cell) @ np.linalg.inv(ph.primitive.cell))
    full = from_phonopy(ph)
    with_nac = phonon_properties(full, structure, name="NaCl", born=born, supercell_matrix=supercell, thermal=False)
    plain = phonon_properties(full, structure, name="NaCl", thermal=False)
    return with_nac, plain


def test_nac_rows_round_trip(nacl_results, tmp_path):
    with_nac, plain = nacl_results
    rows = {
        "gamma": [gamma_row("mp-22862", "kmvn", "0" * 64, r.gamma, nac=nac_columns(r)) for r in (with_nac, plain)],
        "bands": [bands_row("mp-22862", "kmvn", "0" * 64, r.qpath, r.bands, nac=nac_columns(r)) for r in (with_nac, plain)],
    }
    for table, pair in rows.items():
        path = tmp_path / f"{table}.parquet"
        pq.write_table(to_table(table, pair), path)
        back = pq.read_table(path)
        assert back.schema.metadata[b"schema_version"].decode() == SCHEMA_VERSION == "1.6"
        on, off = back.to_pylist()
        assert on["has_nac"] is True and off["has_nac"] is False
        assert off["born_charges"] is None and off["epsilon_inf"] is None and off["lo_to_splitting_cm1"] is None
        z = np.asarray(on["born_charges"]).reshape(-1, 3, 3)
        assert z.shape == (2, 3, 3)
        np.testing.assert_allclose(z.sum(axis=0), 0, atol=1e-6)  # neutral
        np.testing.assert_allclose(z[0], with_nac.born_charges[0], rtol=1e-6)  # float32 of the result's
        np.testing.assert_allclose(np.diag(z[0]), np.full(3, z[0, 0, 0]), rtol=1e-6)  # cubic: isotropic
        eps = np.asarray(on["epsilon_inf"]).reshape(3, 3)
        np.testing.assert_allclose(eps, eps.T, atol=1e-6)
        assert np.linalg.eigvalsh(eps).min() > 1.0
        # NaCl's LO–TO splitting with phonopy's BORN: LO ~ 255 cm⁻¹ over TO ~ 160 cm⁻¹
        assert 60 < on["lo_to_splitting_cm1"] < 130
        assert on["lo_to_splitting_cm1"] == pytest.approx(with_nac.lo_to_splitting([1.0, 1.0, -1.0]).max(), abs=1e-3)
        # the splitting is a physical column: its unit and meaning travel with the file
        meta = back.schema.field("lo_to_splitting_cm1").metadata
        assert meta[b"unit"] == b"cm^-1" and b"LO-TO" in meta[b"description"]
        assert back.schema.field("born_charges").metadata[b"unit"] == b"e"


def test_columns_are_nullable_and_documented():
    for table in ("gamma", "bands"):
        sch = schema(table)
        for name in ("has_nac", "born_charges", "epsilon_inf", "lo_to_splitting_cm1"):
            field = sch.field(name)
            assert field.nullable and field.metadata[b"description"]
    assert set(NULL_LISTS) == {"born_charges", "epsilon_inf"}
    # a row written without the NAC keys at all (an older writer) is still valid: NULL everywhere
    row = gamma_row("x", "kmvn", "0" * 64, np.array([0.0, 0.0, 0.0, 100.0, 100.0, 100.0]))
    for key in ("has_nac", "born_charges", "epsilon_inf", "lo_to_splitting_cm1"):
        row.pop(key)
    assert to_table("gamma", [row]).column("born_charges").null_count == 1


def test_inconsistent_nac_rows_are_refused(nacl_results):
    with_nac, _ = nacl_results
    good = nac_columns(with_nac)
    base = lambda nac: gamma_row("mp-22862", "kmvn", "0" * 64, with_nac.gamma, nac=nac)  # noqa: E731
    with pytest.raises(SchemaError, match="has_nac without born_charges"):
        to_table("gamma", [base({**good, "born_charges": None})])
    with pytest.raises(SchemaError, match="n_sites x 9"):
        to_table("gamma", [base({**good, "born_charges": good["born_charges"][:-1]})])
    with pytest.raises(SchemaError, match="without has_nac"):
        to_table("gamma", [base({**good, "has_nac": False})])
    with pytest.raises(SchemaError, match="not finite"):
        to_table("gamma", [base({**good, "lo_to_splitting_cm1": float("nan")})])


def test_a_shard_built_with_nac_writes_the_columns(rocksalt_nacl):
    """BuildSettings.nac reaches the rows: the k-MVN's bands rows carry predicted charges, the MVN's
    Γ rows (no force constants to correct) say has_nac false; nac=False writes no charges."""
    from flows.models import pick_models
    from flows.plan import BuildSettings
    from flows.shard import predict_shard
    from vgnn_core.crystal.crystal import as_crystal

    assert BuildSettings().nac is True  # on by default (benchmarks/bench_nac.py: 1.09× the build without NAC)
    models = pick_models(["mvn", "kmvn"])
    crystal = as_crystal(rocksalt_nacl, name="nacl")
    settings = BuildSettings(nac=True, mesh_density=8.0)
    rows = predict_shard([crystal], models, "run", settings)
    (bands,), (gamma,) = rows["bands"], rows["gamma"]
    assert bands["has_nac"] is True and gamma["has_nac"] is False and gamma["born_charges"] is None
    np.testing.assert_allclose(np.asarray(bands["born_charges"]).reshape(2, 3, 3).sum(axis=0), 0, atol=1e-5)
    assert bands["lo_to_splitting_cm1"] > 30
    to_table("bands", rows["bands"]), to_table("gamma", rows["gamma"])
    (off,) = predict_shard([crystal], models, "run", BuildSettings(nac=False, mesh_density=8.0))["bands"]
    assert off["has_nac"] is False and off["born_charges"] is None
