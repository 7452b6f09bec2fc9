"""Togo's phonondb force sets as training data: phonopy on the real force sets is the reference."""

import json

import numpy as np
import pytest
import torch

from vgnn_core.io.phonopy import phonopy_frequencies_cm1
from vgnn_core.phonons.dynamical_matrix import band_frequencies
from vgnn_core.phonons.force_constants import from_phonopy
from vgnn_core.training import force_sets as fsets
from vgnn_core.training import phonondb

# The first materials of the archive (it is sorted by id): BaTe (2 atoms, 32 commensurate q-points),
# GaTe and a 56-atom silver phosphate.
FIRST = ["mp-1000", "mp-10009", "mp-10070"]


@pytest.fixture(scope="module")
def force_sets(phonondb_force_sets):
    return {fs.material_id: fs for fs in fsets.iter_force_sets(phonondb_force_sets, ids=FIRST)}


def test_reads_the_archive_like_phonopy(force_sets):
    assert sorted(force_sets) == FIRST
    fs = force_sets["mp-1000"]
    assert fs.forces.shape == (len(fs.displaced_atoms), 64, 3)
    phonon = fsets.phonopy_from_force_set(fs)
    gamma = np.sort(phonopy_frequencies_cm1(phonon, np.zeros((1, 3)))[0])
    # FORCE_SETS_README: BaTe, TO ≈ 70.9 cm⁻¹ at Γ; three exact acoustic zeros after symmetrisation
    np.testing.assert_allclose(gamma[3:], 70.9, atol=0.1)
    assert np.abs(gamma[:3]).max() < 1e-4


@pytest.mark.parametrize("material_id", FIRST)
def test_targets_are_exact_where_the_supercell_defines_them(force_sets, material_id):
    fs = force_sets[material_id]
    t = fsets.force_set_targets(fs, r_max=6.0, r_bond=6.0, with_path=True)
    phonon = fsets.phonopy_from_force_set(fs)
    n_super = len(phonon.supercell)
    assert len(t.comm_qpoints) == round(n_super / t.graph.n_atoms)  # one q per primitive cell in it
    assert np.abs(t.comm_qpoints).max(axis=1).min() == 0.0  # Γ is among them
    # our D(q) from phonopy's force constants reproduces phonopy's frequencies everywhere
    fc = from_phonopy(phonon)
    for q, ref in ((t.comm_qpoints, t.comm_bands), (t.path_qpoints, t.path_bands)):
        ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-3)
    # blocks: unique shortest images inside the cutoff, a real subset of the bonds, and paired
    g = t.graph
    assert 0 < len(t.block_edges) <= g.n_edges
    length = np.linalg.norm(g.edge_vec[t.block_edges], axis=1)
    assert length.max() < 6.0
    index = {int(e): k for k, e in enumerate(t.block_edges)}
    paired = [(k, index[int(g.edge_reverse[e])]) for k, e in enumerate(t.block_edges) if int(g.edge_reverse[e]) in index]
    assert paired
    for a, b in paired:
        np.testing.assert_allclose(t.block_values[b], t.block_values[a].T, atol=1e-8)


def test_cache_round_trip_without_pickle(force_sets, tmp_path):
    t = fsets.force_set_targets(force_sets["mp-1000"], r_max=6.0, r_bond=6.0, with_path=False)
    path = tmp_path / "mp-1000.npz"
    phonondb.save_targets(t, path)
    back = phonondb.load_targets("mp-1000", path)
    assert back.path_qpoints is None
    np.testing.assert_array_equal(back.comm_bands, t.comm_bands)
    np.testing.assert_array_equal(back.graph.edge_reverse, t.graph.edge_reverse)
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)


@pytest.fixture(scope="module")
def prepared(phonondb_force_sets, tmp_path_factory):
    """A targets cache with BaTe as a training material and GaTe as an evaluation one."""
    root = tmp_path_factory.mktemp("phonondb_targets")
    failures = phonondb.prepare_targets(["mp-10009"], 6.0, 6.0, archive=phonondb_force_sets,
                                        cache_root=root, ids=FIRST[:2])
    assert failures == {}
    return root


def test_prepare_and_load_samples(phonondb_force_sets, force_sets, prepared):
    train = phonondb.load_samples(FIRST[:1], 6.0, 6.0, archive=phonondb_force_sets, cache_root=prepared)
    (val,) = phonondb.load_samples(["mp-10009"], 6.0, 6.0, evaluation=True, archive=phonondb_force_sets,
                                   cache_root=prepared)
    assert train[0].block_edges is not None and train[0].gamma is not None and train[0].source == "phonondb"
    assert val.block_edges is None and val.qpoints.shape[0] > 20  # the high-symmetry path
    # both know how many primitive cells the DFT supercell held: BaTe's 64-atom supercell, 32 cells
    assert train[0].supercell_cells == 32
    supercell = fsets.phonopy_from_force_set(force_sets["mp-10009"]).supercell
    assert val.supercell_cells * val.n_atoms == len(supercell)
    with pytest.raises(ValueError, match="without path bands"):
        phonondb.load_samples(FIRST[:1], 6.0, 6.0, evaluation=True, archive=phonondb_force_sets, cache_root=prepared)
    with pytest.raises(FileNotFoundError, match="mp-10070: phonondb targets not prepared"):
        phonondb.load_samples(["mp-10070"], 6.0, 6.0, archive=phonondb_force_sets, cache_root=prepared)


def test_evaluation_scores_each_size_of_dft_supercell(phonondb_force_sets, prepared):
    """An evaluation carries the supercell's size into its rows and scores each size apart: an ensemble with
    ``likely_unstable`` (its members' own lowest mode), a single network with the bands' minimum alone."""
    from vgnn_core.pretrained.registry import load_pretrained_model
    from vgnn_core.training.evaluation import evaluate

    (val,) = phonondb.load_samples(["mp-10009"], 6.0, 6.0, evaluation=True, archive=phonondb_force_sets,
                                   cache_root=prepared)
    ensemble = load_pretrained_model("kmvn")
    for model in (ensemble, ensemble.members[0]):
        result = evaluate(model, [val])
        (row,) = result["materials"]
        assert row["supercell_cells"] == val.supercell_cells
        (only,) = result["summary"]["bands"]["by_supercell_cells"]
        assert only["n"] == 1 and only["bands_mae"] == row["bands_mae"]
        assert only["instability"] == pytest.approx(result["summary"]["bands"]["instability"], nan_ok=True)
        assert ("likely_unstable" in only) is (model is ensemble)


def test_a_broken_force_set_is_one_failure(tmp_path, force_sets):
    folder = tmp_path / "sets"
    folder.mkdir()
    fs = force_sets["mp-1000"]
    np.savez(folder / "mp-1000.npz", lattice=fs.lattice, numbers=fs.numbers, frac_coords=fs.frac_coords,
             supercell_matrix=fs.supercell_matrix, primitive_matrix=fs.primitive_matrix,
             displaced_atoms=fs.displaced_atoms, displacements=fs.displacements,
             forces=np.zeros((1, 3, 3), dtype=np.int32), forces_unit=np.float64(1e-6))
    failures = phonondb.prepare_targets([], 6.0, 6.0, archive=folder, cache_root=tmp_path)
    assert list(failures) == ["mp-1000"] and "supercell has 64" in failures["mp-1000"]


def test_committed_split():
    split = phonondb.load_split()
    doc = json.loads(phonondb.SPLIT_FILE.read_text())
    ids = split["train"] + split["val"] + split["test"]
    assert len(ids) == len(set(ids)) == doc["n_materials"] == 9534
    assert (len(split["val"]), len(split["test"])) == (477, 477)
    # rebuilt from the ids alone: the split is a pure function of them and the seed
    from vgnn_core.training.petretto import load_split as petretto_split

    try:
        petretto = petretto_split()
    except FileNotFoundError:
        pytest.skip("Petretto split.json not found (set VGNN_DATA_DIR)")
    assert phonondb.make_split(ids, always_train=petretto["train"]) == split
    # no Petretto material of any split is in phonondb val / test
    held_out = set(split["val"]) | set(split["test"])
    assert not held_out & (set(petretto["train"]) | set(petretto["val"]) | set(petretto["test"]))


def _spring_force_constants(phonon, r_cut: float) -> np.ndarray:
    """Supercell force constants of central springs k(d) = exp(−d) between all atoms closer than
    ``r_cut`` (every periodic image summed, as a supercell calculation sums them); exact ASR."""
    lattice, x = np.asarray(phonon.supercell.cell), np.asarray(phonon.supercell.positions)
    n = len(x)
    steps = np.arange(-2, 3)
    shifts = np.array(np.meshgrid(steps, steps, steps, indexing="ij")).reshape(3, -1).T @ lattice
    fc = np.zeros((n, n, 3, 3))
    for a in range(n):
        r = x[:, None, :] + shifts[None] - x[a]
        d = np.linalg.norm(r, axis=2)
        w = np.where((d > 1e-8) & (d < r_cut), -np.exp(-d) / np.maximum(d, 1e-12) ** 2, 0.0)
        fc[a] = np.einsum("bs,bsi,bsj->bij", w, r, r)
        fc[a, a] -= fc[a].sum(axis=0)
    return fc


def test_block_targets_are_single_bonds_never_folded_sums(force_sets):
    """A 56-atom cell in a 2×1×1 supercell: several bonds within the cutoff fold onto one supercell
    pair. With springs of known strength, every block target must be exactly its own bond's block;
    a rule that kept folded pairs returns their sums."""
    from vgnn_core.crystal.graph import build_graph

    phonon = fsets.phonopy_from_force_set(force_sets["mp-10070"])
    phonon.force_constants = _spring_force_constants(phonon, 6.0)
    graph = build_graph(fsets.primitive_structure(phonon, "mp-10070"), r_max=6.0)
    edges, blocks = fsets.block_targets(phonon, graph, 6.0)
    r = graph.edge_vec[edges]
    d = np.linalg.norm(r, axis=1)
    exact = -np.exp(-d)[:, None, None] * np.einsum("ki,kj->kij", r, r) / d[:, None, None] ** 2
    assert len(edges) > 0.9 * graph.n_edges
    np.testing.assert_allclose(blocks, exact, atol=1e-12)
    # the edges left out are exactly those sharing a supercell pair with another bond in range
    folded = fsets._folded_edges(graph, fsets.supercell_in_primitive(phonon), 6.0)
    assert folded.any() and not folded[edges].any()


def test_instabilities_by_the_dft_supercell_partition_the_cards_rows():
    """The k-MVN card's scores per size of the DFT supercell are those of its own per-material rows (the
    bins were added to the card by evaluating the same model again: equal to float32 round-off), and
    together they are the whole split's."""
    from vgnn_core.pretrained.registry import CHECKPOINT_DIR
    from vgnn_core.training.evaluation import by_supercell_cells
    from vgnn_core.training.metrics import instability_scores

    card = json.loads((CHECKPOINT_DIR / "kmvn.card.json").read_text())
    rows = card["per_material"]["phonondb_test"]
    bins = card["metrics"]["phonondb_test"]["bands"]["by_supercell_cells"]
    again = by_supercell_cells(rows)
    assert [(b["cells"], b["n"]) for b in again] == [(b["cells"], b["n"]) for b in bins]
    for a, b in zip(again, bins):
        assert a["bands_mae"] == pytest.approx(b["bands_mae"], rel=1e-5)
        assert a["instability"] == b["instability"] and a["likely_unstable"] == b["likely_unstable"]
    assert [b["cells"] for b in bins] == ["1", "2–4", "5–8", "≥9"]
    whole = card["metrics"]["phonondb_test"]["bands"]["instability"]
    assert sum(b["n"] for b in bins) == len(rows) == 477
    assert sum(b["instability"]["n_unstable"] for b in bins) == whole["n_unstable"]
    assert sum(b["instability"]["n_predicted_unstable"] for b in bins) == whole["n_predicted_unstable"]
    # the card's table: a single network's bins (no likely_unstable) render with a dash there
    from vgnn_core.pretrained.cards import render_markdown
    from vgnn_core.training.metrics import every_material_f1

    row = f"| phonondb_test | 1 | {bins[0]['n']} | {bins[0]['instability']['n_unstable']} |"
    assert row in render_markdown(card)
    single = json.loads(json.dumps(card))
    for m in single["metrics"].values():
        for b in (m.get("bands") or {}).get("by_supercell_cells", []):
            del b["likely_unstable"]
    (line,) = [x for x in render_markdown(single).splitlines() if x.startswith(row)]
    every = every_material_f1(bins[0]["instability"]["n_unstable"], bins[0]["n"])
    assert line.endswith(f"| – | {every:.2f} |") and 0 < every < 1
    one = [r for r in rows if r["supercell_cells"] == 1]  # the first bin, scored again by hand
    assert bins[0]["n"] == len(one) and bins[0]["bands_mae"] == pytest.approx(np.mean([r["bands_mae"] for r in one]), rel=1e-5)
    assert bins[0]["instability"] == instability_scores([r["bands_min_predicted"] for r in one],
                                                        [r["bands_min_reference"] for r in one])
