"""Networks run once per symmetry orbit give every atom and bond what running on all of them gives."""

import dataclasses

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core import VGNN, Predictor
from vgnn_core.crystal.crystal import as_crystal
from vgnn_core.crystal.graph import collate, crystal_graph
from vgnn_core.io.phonopy import load_force_sets
from vgnn_core.nn.born import BornHeads, BornModel, backbone_irreps
from vgnn_core.nn.orbits import wigner_matrix
from vgnn_core.pretrained.registry import load_pretrained_model


def float64_built(build):
    """A network built in float64 throughout (its change-of-basis buffers too, which a float32
    network cast with ``.double()`` keeps at float32 precision, equivariant only to ~1e-8)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return build()
    finally:
        torch.set_default_dtype(default)


def test_wigner_matrices_are_e3nns_and_rotate_spherical_harmonics():
    torch.manual_seed(3)
    u, _, vt = torch.linalg.svd(o3.rand_matrix(20).double())
    rotations = u @ vt  # orthogonal in float64
    rotations[::2] *= -1  # improper ones too: D_l is that of the proper part
    points = torch.randn(7, 3, dtype=torch.float64)
    proper = rotations * torch.linalg.det(rotations).sign()[:, None, None]
    for degree in range(11):
        d = wigner_matrix(rotations, degree)
        e3nn_d = float64_built(lambda k=degree: o3.Irrep(k, 1).D_from_matrix(proper))  # its constants in float64
        torch.testing.assert_close(d, e3nn_d, atol=1e-12, rtol=0)
        y = o3.spherical_harmonics(degree, points, normalize=True, normalization="component")
        y_rot = o3.spherical_harmonics(degree, points @ proper.transpose(1, 2), normalize=True, normalization="component")
        torch.testing.assert_close(y_rot, y @ d.transpose(1, 2), atol=1e-12, rtol=0)


@pytest.fixture
def cells(si_primitive, rocksalt_nacl, wurtzite_zno, monoclinic_zro2):
    """Cells with inversion, without it, with improper operations, a supercell (pure translations),
    and one without symmetry, in one batch."""
    triclinic = Structure(Lattice.from_parameters(4.1, 4.7, 5.3, 81, 97, 103), ["Si", "O", "O"],
                          [[0.05, 0.11, 0.02], [0.37, 0.21, 0.58], [0.71, 0.64, 0.19]])
    return [si_primitive, si_primitive * (2, 1, 1), rocksalt_nacl, wurtzite_zno, monoclinic_zro2, triclinic]


def batches(structures, r_max, dtype=torch.float64):
    crystals = [as_crystal(s) for s in structures]
    with_orbits = collate([crystal_graph(c, r_max) for c in crystals], dtype=dtype)
    assert with_orbits.orbits is not None
    return with_orbits, dataclasses.replace(with_orbits, orbits=None)


def test_a_network_run_once_per_orbit_gives_every_atom_and_bond_its_own_output(cells):
    torch.manual_seed(0)
    model = float64_built(lambda: VGNN(kind="kmvn", r_bond=5.0, full_blocks=True))
    reduced, full = batches(cells, model.config.graph_cutoff)
    orbits = reduced.orbits
    assert len(orbits.representatives) < len(orbits.atom_representative) and (orbits.edge_representative != torch.arange(len(orbits.edge_representative))).any()
    with torch.no_grad():
        h, h_ref = model.encode(reduced).h, model.encode(full).h
        blocks, blocks_ref = model.bond_blocks(reduced), model.bond_blocks(full)
    assert h_ref.abs().max() > 0.1 and blocks_ref.abs().max() > 1e-3
    # to 1e-8 of the largest: pymatgen rounds the fixtures' generated positions to ~1e-10 Å
    torch.testing.assert_close(h, h_ref, atol=1e-8 * float(h_ref.abs().max()), rtol=0)
    torch.testing.assert_close(blocks, blocks_ref, atol=1e-8 * float(blocks_ref.abs().max()), rtol=0)
    # each (bond, reverse) pair: exact transposes, so D(q) stays exactly Hermitian
    torch.testing.assert_close(blocks[reduced.edge_reverse], blocks.transpose(1, 2), atol=0, rtol=0)


@pytest.mark.parametrize("variant", [dict(), dict(interactions=1, crystal_context=True, neutrality="weighted")])
def test_born_heads_run_once_per_orbit_give_every_atom_its_charges(cells, variant):
    torch.manual_seed(1)
    network = float64_built(lambda: VGNN(kind="kmvn", r_bond=5.0))
    heads = float64_built(lambda: BornHeads(backbone_irreps(network), **variant))
    model = BornModel(network, heads)
    reduced, full = batches(cells, network.config.graph_cutoff)
    with torch.no_grad():
        out, ref = model(reduced), model(full)
    assert ref.born.abs().max() > 1e-3
    torch.testing.assert_close(out.born, ref.born, atol=1e-8 * float(ref.born.abs().max()), rtol=0)
    torch.testing.assert_close(out.epsilon, ref.epsilon, atol=1e-8, rtol=1e-8)


EXAMPLES = ["Al2O3", "CaTiO3", "MgB2", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase", "ZnO"]


@pytest.fixture(scope="module")
def shipped_results(phonopy_examples_dir):
    """The shipped k-MVN on the phonopy examples' cells, with and without orbits, with and without NAC."""
    structures = [get_pmg_structure(load_force_sets(phonopy_examples_dir / n).unitcell) for n in EXAMPLES]
    model = load_pretrained_model("kmvn")
    out = {}
    for symmetry in (True, False):
        p = Predictor(model, use_symmetry=symmetry)
        for nac in (False, True):
            out[symmetry, nac] = p.predict_phonons([as_crystal(s) for s in structures], nac=nac, thermal=True)
    return out


def test_the_shipped_models_give_the_same_phonons_once_per_orbit(shipped_results):
    """Float32 networks: the same numbers to their round-off (the √ magnifies it on soft modes)."""
    for a, b in zip(shipped_results[True, False], shipped_results[False, False]):
        assert np.abs(a.gamma - b.gamma).max() < 1e-3
        assert np.abs(a.bands - b.bands).max() < 2e-3
        assert a.uncertainty_cm1 == pytest.approx(b.uncertainty_cm1, rel=1e-4)
        assert a.likely_unstable == b.likely_unstable
        # at 10 K C_v goes as ω⁻³ of the softest mesh modes: anatase's round-off gives 1.5e-5 there
        np.testing.assert_allclose(a.thermal.heat_capacity, b.thermal.heat_capacity, rtol=1e-4, atol=1e-6)
    for a, b in zip(shipped_results[True, True], shipped_results[False, True]):
        np.testing.assert_allclose(a.born_charges, b.born_charges, atol=2e-5)
        np.testing.assert_allclose(a.epsilon_inf, b.epsilon_inf, atol=2e-5 * np.abs(b.epsilon_inf).max())


def test_the_acoustic_modes_at_gamma_stay_at_zero_with_the_lo_to_splitting(shipped_results):
    """Z* neutral, and made equal to the last bit on inversion partners for the real form of D(q)
    (SnO2 and SiO2-HP had 0.04–0.09 cm⁻¹ without: charges equal to the network's round-off only,
    on every atom or from whichever operation an orbit's atom was reached by): the acoustic modes
    at the band path's Γ points, approached along the path with the non-analytic term, stay at zero."""
    for r in shipped_results[True, True] + shipped_results[False, True]:
        assert r.has_nac
        at_gamma = np.flatnonzero(np.abs(r.qpath.qpoints).sum(axis=1) == 0)
        assert len(at_gamma)
        assert np.abs(np.sort(np.abs(r.bands[at_gamma]), axis=1)[:, :3]).max() < 1e-4


def test_the_plain_api_uses_orbits_where_they_pay(si_primitive, phonopy_examples_dir):
    """``predict_gamma`` and friends analyse no symmetry otherwise: small cells go without orbits."""
    from vgnn_core.predict import ORBITS_MIN_EDGES

    big = get_pmg_structure(load_force_sets(phonopy_examples_dir / "Al2O3").unitcell)  # 30 atoms
    p = Predictor(VGNN(kind="mvn", r_bond=6.0))
    small_graph, big_graph = p.graphs([si_primitive, big])
    assert small_graph.n_edges < ORBITS_MIN_EDGES <= big_graph.n_edges
    assert small_graph.orbits is None and big_graph.orbits is not None
    assert Predictor(VGNN(kind="mvn", r_bond=6.0), use_symmetry=False).graphs([big])[0].orbits is None
