"""The real symmetric form of D(q) for crystals with an inversion centre: the same eigenvalues
(and per-element mode weights) as the complex Hermitian D(q), on phonopy's force constants of
the centrosymmetric examples, with and without the Gonze–Lee term; the inversion itself (which
atoms it pairs, which cells have none); and the symmetrisation of the force constants (sum
rules kept, round-off only, refused for a cell without the symmetry)."""

import dataclasses

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core import band_frequencies, from_phonopy
from vgnn_core.crystal.crystal import as_crystal
from vgnn_core.io.phonopy import load_force_sets, read_born_file
from vgnn_core.phonons.centrosymmetric import (
    centrosymmetric_matrices,
    inversion_pairs,
    symmetrized_under_inversion,
)
from vgnn_core.phonons.dynamical_matrix import dynamical_matrices
from vgnn_core.phonons.force_constants import ForceConstants, central_spring_force_constants
from vgnn_core.phonons.modes import modes
from vgnn_core.phonons.nac import (
    GammaJumpCorrection,
    NonAnalyticCorrection,
    WangCorrection,
    path_q_directions,
)
from vgnn_core.phonons.qpath import high_symmetry_path
from vgnn_core.phonons.result import element_groups

#: the examples with an inversion centre (ZnO, wurtzite, has none), BORN files where they have one
CENTROSYMMETRIC = ["Al2O3", "CaTiO3", "Cr", "MgB2", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase"]
WITH_BORN = ["Al2O3", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase"]


def example(root, name):
    ph = load_force_sets(root / name)
    ph.symmetrize_force_constants()
    structure = get_pmg_structure(ph.primitive)
    return ph, structure, from_phonopy(ph)


def deviation(ours, ref) -> float:
    """Largest |Δω| (cm⁻¹), modes within 1e-3 cm⁻¹ of zero in both counting as equal (acoustic at
    Γ, where √λ turns round-off of λ into ~1e-5 cm⁻¹)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    diff = np.abs(ours - ref)
    diff[(np.abs(ours) < 1e-3) & (np.abs(ref) < 1e-3)] = 0.0
    return float(diff.max())


def random_q(n=30, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 3)))


@pytest.mark.parametrize("name", CENTROSYMMETRIC)
def test_real_form_has_the_eigenvalues_of_the_complex_matrix(phonopy_examples_dir, name):
    _, structure, fc = example(phonopy_examples_dir, name)
    inversion = as_crystal(structure).inversion
    assert inversion is not None
    pairs = inversion_pairs(fc, inversion)
    assert pairs is not None  # phonopy's symmetrised force constants have the inversion to round-off
    q = torch.cat([random_q(), torch.as_tensor(high_symmetry_path(structure).qpoints)])
    real = centrosymmetric_matrices(fc, pairs, q)
    assert not real.is_complex()
    # against the complex D(q) of the same (symmetrised) force constants …
    reference = torch.linalg.eigvalsh(dynamical_matrices(pairs.force_constants, q))
    lam = torch.linalg.eigvalsh(real)
    scale = float(reference.abs().max())
    assert float((lam - reference).abs().max()) < 1e-12 * scale
    # … and of phonopy's own, which the symmetrisation moved by round-off only
    raw = torch.linalg.eigvalsh(dynamical_matrices(fc, q))
    assert float((lam - raw).abs().max()) < 1e-9 * scale
    # band_frequencies takes that route when given the inversion: frequencies to 1e-9 cm⁻¹
    assert deviation(band_frequencies([fc], [q], inversions=[inversion])[0],
                     band_frequencies([pairs.force_constants], [q])[0]) < 1e-9


@pytest.mark.parametrize("name", WITH_BORN)
def test_real_form_with_the_dipole_dipole_term(phonopy_examples_dir, name):
    """Gonze–Lee on short-range force constants at general q, and the jump at Γ along a path
    through Γ from each segment's direction: the same eigenvalues, solved real."""
    ph, structure, fc = example(phonopy_examples_dir, name)
    charges = read_born_file(phonopy_examples_dir / name / "BORN", structure).neutral()
    inversion = as_crystal(structure).inversion
    supercell = np.rint(np.asarray(ph.supercell.cell) @ np.linalg.inv(ph.primitive.cell))
    full = NonAnalyticCorrection.from_born(structure, charges)
    short = full.short_range(fc, supercell)
    q = random_q(12, seed=1)
    sym_short = symmetrized_under_inversion(short, inversion)
    ours = band_frequencies([short], [q], nacs=[full], inversions=[inversion])[0]
    ref = band_frequencies([sym_short], [q], nacs=[full])[0]
    assert deviation(ours, ref) < 1e-8
    path = high_symmetry_path(structure)
    dirs = path_q_directions(path.qpoints, path.segments, structure.lattice.matrix)
    jump = GammaJumpCorrection.from_born(structure, charges)
    path_q = torch.as_tensor(path.qpoints)
    ours = band_frequencies([fc], [path_q], nacs=[jump], q_directions=[dirs], inversions=[inversion])[0]
    ref = band_frequencies([symmetrized_under_inversion(fc, inversion)], [path_q], nacs=[jump], q_directions=[dirs])[0]
    assert deviation(ours, ref) < 1e-8
    assert float(ours.max() - ours.min()) > 100  # a real spectrum, LO modes included


@pytest.mark.parametrize("name", ["SnO2", "SiO2-HP"])
def test_charges_equal_only_to_round_off_on_partners_keep_the_acoustic_modes_at_zero(phonopy_examples_dir, name):
    """Phonopy's Z* with float32-sized noise (a network's): still accepted for the real form, which
    then uses the partners' mean (Σ Z* kept), so the acoustic modes at the path's Γ points,
    approached along each segment with the jump at Γ, stay at zero as with exact charges, and the
    spectrum is the complex form's with those charges."""
    _, structure, fc = example(phonopy_examples_dir, name)
    exact = read_born_file(phonopy_examples_dir / name / "BORN", structure).neutral()
    noise = 3e-6 * np.random.default_rng(0).standard_normal(exact.born.shape)
    charges = dataclasses.replace(exact, born=exact.born + noise).neutral()
    inversion = as_crystal(structure).inversion
    jump = GammaJumpCorrection.from_born(structure, charges)
    assert inversion_pairs(fc, inversion, jump) is not None  # within the tolerance
    twin = jump.inversion_symmetric(inversion.partner)
    assert np.array_equal(twin.born, twin.born[inversion.partner]) and twin.born is not jump.born
    np.testing.assert_allclose(twin.born.sum(axis=0), 0.0, atol=1e-12)
    assert jump.inversion_symmetric(inversion.partner) is twin and twin.inversion_symmetric(inversion.partner) is twin
    path = high_symmetry_path(structure)
    dirs = path_q_directions(path.qpoints, path.segments, structure.lattice.matrix)
    q = torch.as_tensor(path.qpoints)
    at_gamma = np.flatnonzero(np.abs(path.qpoints).sum(axis=1) == 0)
    real = band_frequencies([fc], [q], nacs=[jump], q_directions=[dirs], inversions=[inversion])[0].numpy()
    assert np.sort(np.abs(real[at_gamma]), axis=1)[:, :3].max() < 1e-4  # 0.2–0.5 cm⁻¹ with the raw charges
    sym = symmetrized_under_inversion(fc, inversion)
    ref = band_frequencies([sym], [q], nacs=[twin], q_directions=[dirs])[0].numpy()
    assert deviation(real, ref) < 1e-8


def test_wangs_correction_with_pairs_prepared_by_the_caller(phonopy_examples_dir):
    """Pairs made without the correction are taken as they are (the caller vouches for them):
    Wang's correction, built on the bonds, then goes into the real form unchanged, with the
    complex form's eigenvalues."""
    _, structure, fc = example(phonopy_examples_dir, "SnO2")
    charges = read_born_file(phonopy_examples_dir / "SnO2" / "BORN", structure).neutral()
    pairs = inversion_pairs(fc, as_crystal(structure).inversion)
    wang = WangCorrection(structure.lattice.matrix, charges.born, charges.epsilon, np.diag([2, 2, 2]))
    q = random_q(8, seed=1)
    real = band_frequencies([fc], [q], nacs=[wang], inversions=[pairs])[0]
    assert deviation(real, band_frequencies([fc], [q], nacs=[wang])[0]) < 1e-8


@pytest.mark.parametrize("name", ["Al2O3", "SnO2", "CaTiO3"])
def test_real_form_table_equals_the_real_form_summed_bond_by_bond(phonopy_examples_dir, name, monkeypatch):
    """The real form from its table (Σ_s of cos and sin tables, one matrix product) equals the one
    assembled from D̃'s blocks summed bond by bond, the jump at Γ included where the path passes
    Γ, and is exactly symmetric."""
    from vgnn_core.phonons import dynamical_matrix as dm

    ph, structure, fc = example(phonopy_examples_dir, name)
    inversion = as_crystal(structure).inversion
    path = high_symmetry_path(structure)
    q = torch.cat([torch.as_tensor(path.qpoints), random_q(15, seed=4)])
    dirs = np.vstack([path_q_directions(path.qpoints, path.segments, structure.lattice.matrix), np.zeros((15, 3))])
    nac = None
    if name in WITH_BORN:
        nac = GammaJumpCorrection.from_born(structure, read_born_file(phonopy_examples_dir / name / "BORN",
                                                                      structure).neutral())
    pairs = inversion_pairs(fc, inversion, nac)
    assert pairs.real_form_table() is not None
    table = centrosymmetric_matrices(fc, pairs, q, nac=nac, q_directions=dirs)
    scale = float(table.abs().max())
    assert torch.allclose(table, table.transpose(-1, -2), rtol=0, atol=1e-15 * scale)
    monkeypatch.setattr(dm, "SHIFT_TABLE_MAX", 0)
    by_bonds = inversion_pairs(fc, inversion, nac)  # a table of its own is now too large
    assert by_bonds.real_form_table() is None
    bond = centrosymmetric_matrices(fc, by_bonds, q, nac=nac, q_directions=dirs)
    assert torch.allclose(table, bond, rtol=0, atol=1e-13 * scale)
    if nac is not None:  # the jump was there to be added
        plain = centrosymmetric_matrices(fc, by_bonds, q)
        assert float((bond - plain).abs().max()) > 1e-3 * scale
    monkeypatch.undo()
    # gradients in the blocks: a table of their own (the kept one has none), equal to the bonds'
    weights = torch.as_tensor(np.random.default_rng(5).standard_normal(tuple(table.shape)))
    grads = []
    for limit in (dm.SHIFT_TABLE_MAX, 0):
        monkeypatch.setattr(dm, "SHIFT_TABLE_MAX", limit)
        blocks = pairs.force_constants.blocks.clone().requires_grad_(True)
        live = ForceConstants(fc.masses, pairs.force_constants.src, pairs.force_constants.dst,
                              pairs.force_constants.shift, blocks)
        live_pairs = dataclasses.replace(pairs, force_constants=live)
        (centrosymmetric_matrices(fc, live_pairs, q) * weights).sum().backward()
        grads.append(blocks.grad)
        assert pairs.real_form_table() is not None and not pairs.real_form_table().stacked.requires_grad
    assert float(grads[0].abs().max()) > 0
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-12 * float(grads[1].abs().max()))


@pytest.mark.parametrize("name", ["Al2O3", "SnO2", "TiO2-anatase", "CaTiO3"])
def test_mesh_modes_and_element_weights_are_unchanged(phonopy_examples_dir, name):
    """The partial DOS's weights from the real eigenvectors equal the complex ones (a pair's two
    columns carry the pair's |e|²), also where modes are degenerate (sums per element are)."""
    _, structure, fc = example(phonopy_examples_dir, name)
    crystal = as_crystal(structure)
    groups, _ = element_groups(structure)
    q = random_q(10, seed=2).numpy()
    sym = symmetrized_under_inversion(fc, crystal.inversion)
    f_real, p_real = modes(fc, q, groups=groups, inversion=crystal.inversion)
    f_ref, p_ref = modes(sym, q, groups=groups)
    assert deviation(f_real, f_ref) < 1e-8
    np.testing.assert_allclose(p_real.sum(-1), 1.0, atol=1e-12)
    # per frequency, not per mode index: degenerate modes may share their weight differently
    for k in range(len(q)):
        for level in np.unique(np.round(f_ref[k], 4)):
            sel = np.abs(f_ref[k] - level) < 1e-3
            np.testing.assert_allclose(p_real[k][sel].sum(0), p_ref[k][sel].sum(0), atol=1e-8)


def diamond(shift=0.0) -> Structure:
    s = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0],
                                                   [0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75],
                                                   [0.75, 0.75, 0.25]])
    if shift:
        s.translate_sites([4], [shift, 0, 0], frac_coords=False)
    return s


def test_inversion_pairs_atoms_and_is_exact_or_absent():
    """Diamond's inversion centre lies between the two sublattices: every atom has a partner on
    the other one (t − x_i = x_p(i) + L_i). A cell displaced by 1e-3 Å has none within the
    exact tolerance (its q-mesh, too, keeps only exact symmetries); wurtzite has none at all."""
    s = diamond()
    inv = as_crystal(s).inversion
    frac = s.frac_coords
    assert inv is not None and np.array_equal(inv.partner[inv.partner], np.arange(8))
    assert set(inv.partner[:4].tolist()) == {4, 5, 6, 7}
    centre_twice = frac[0] + frac[inv.partner[0]] + inv.lattice_shift[0]
    for i in range(8):  # one centre for every atom
        np.testing.assert_allclose(frac[i] + frac[inv.partner[i]] + inv.lattice_shift[i], centre_twice, atol=1e-9)
    assert as_crystal(diamond(shift=1e-3)).inversion is None
    wurtzite = Structure(Lattice.hexagonal(3.25, 5.2), ["Zn", "Zn", "O", "O"],
                         [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]])
    assert as_crystal(wurtzite).inversion is None


def test_symmetrisation_keeps_the_sum_rules_and_refuses_a_broken_symmetry(phonopy_examples_dir):
    _, structure, fc = example(phonopy_examples_dir, "SnO2")
    inversion = as_crystal(structure).inversion
    sym = symmetrized_under_inversion(fc, inversion)
    assert float(sym.acoustic_sum_residual()) < 1e-10
    # Φ_ji(−T) = Φ_ij(T)ᵀ, bond by bond
    torch.testing.assert_close(sym.blocks[sym.reverse_index()], sym.blocks.transpose(-1, -2), atol=1e-12, rtol=0)
    again = symmetrized_under_inversion(sym, inversion)  # idempotent
    torch.testing.assert_close(again.blocks, sym.blocks, atol=1e-14, rtol=0)
    # one block moved by 1e-3 of the largest: not the crystal's symmetry, nothing symmetrised
    broken = fc.blocks.clone()
    broken[7] += 1e-3 * float(fc.blocks.abs().max())
    distorted = ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, broken)
    assert symmetrized_under_inversion(distorted, inversion) is None
    assert inversion_pairs(distorted, inversion) is None
    # band_frequencies then solves the complex matrices, as given
    q = random_q(5)
    np.testing.assert_array_equal(band_frequencies([distorted], [q], inversions=[inversion])[0].numpy(),
                                  band_frequencies([distorted], [q])[0].numpy())


def test_what_breaks_the_inversion_is_solved_complex(phonopy_examples_dir):
    """Partners of different masses (isotopes), Born charges that differ between partners, and
    Wang's correction (built on the bonds, not checked): no real form, the complex path as given."""
    _, structure, fc = example(phonopy_examples_dir, "SnO2")
    crystal = as_crystal(structure)
    inversion = crystal.inversion
    assert inversion_pairs(fc, inversion) is not None
    pair = int(np.flatnonzero(inversion.partner != np.arange(len(structure)))[0])
    masses = fc.masses.clone()
    masses[pair] *= 1.05
    isotope = ForceConstants(masses, fc.src, fc.dst, fc.shift, fc.blocks)
    assert inversion_pairs(isotope, inversion) is None
    q = random_q(6)
    np.testing.assert_array_equal(band_frequencies([isotope], [q], inversions=[inversion])[0].numpy(),
                                  band_frequencies([isotope], [q])[0].numpy())
    charges = read_born_file(phonopy_examples_dir / "SnO2" / "BORN", structure).neutral()
    symmetric = NonAnalyticCorrection.from_born(structure, charges)
    assert inversion_pairs(fc, inversion, symmetric) is not None  # the BORN file's charges keep it
    born = charges.born.copy()
    born[pair] = born[pair] @ np.diag([1.2, 1.0, 1.0])
    lopsided = NonAnalyticCorrection(structure.lattice.matrix, structure.frac_coords, born, charges.epsilon)
    assert inversion_pairs(fc, inversion, lopsided) is None
    np.testing.assert_array_equal(band_frequencies([fc], [q], nacs=[lopsided], inversions=[inversion])[0].numpy(),
                                  band_frequencies([fc], [q], nacs=[lopsided])[0].numpy())
    wang = WangCorrection(structure.lattice.matrix, charges.born, charges.epsilon, np.diag([2, 2, 3]))
    assert inversion_pairs(fc, inversion, wang) is None


def test_mesh_groups_that_split_a_pair_get_complex_eigenvectors(phonopy_examples_dir):
    """Projections onto groups that put an atom and its inversion partner apart need the
    complex eigenvectors: modes() then takes the complex path (bitwise its result)."""
    _, structure, fc = example(phonopy_examples_dir, "TiO2-anatase")
    inversion = as_crystal(structure).inversion
    groups = np.arange(len(structure))  # every atom its own group: partners apart
    q = random_q(4, seed=3).numpy()
    f_a, p_a = modes(fc, q, groups=groups, inversion=inversion)
    f_b, p_b = modes(fc, q, groups=groups)
    np.testing.assert_array_equal(f_a, f_b)
    np.testing.assert_array_equal(p_a, p_b)


def test_large_cells_keep_every_bond():
    """A 512-atom cell (diamond 4×4×4 conventional cells, nearest-neighbour springs, exactly
    inversion-symmetric): the symmetrisation keeps every bond and every block as it is."""
    big = diamond()
    big.make_supercell([4, 4, 4])
    fc = central_spring_force_constants(big, 10.0, r_max=2.5)
    inversion = as_crystal(big).inversion
    assert inversion is not None and fc.n_atoms == 512
    sym = symmetrized_under_inversion(fc, inversion)
    assert sym is not None and sym.n_bonds == fc.coalesced().n_bonds
    torch.testing.assert_close(sym.blocks, fc.coalesced().blocks, atol=1e-12, rtol=0)


def test_bond_merging_compares_rows_where_a_key_would_overflow():
    """Distinct bonds stay distinct and equal ones merge on both routes: one int64 key per bond,
    and rows compared where m²(2·max|T| + 1)³ would overflow it."""
    from vgnn_core.phonons.centrosymmetric import _unique_bonds

    rng = np.random.default_rng(4)
    for m, bound in ((7, 2), (3000, 5000)):  # the second forces the row comparison
        src, dst = rng.integers(0, m, 400), rng.integers(0, m, 400)
        cells = rng.integers(-bound, bound + 1, (400, 3))
        src, dst, cells = np.tile(src, 2), np.tile(dst, 2), np.tile(cells, (2, 1))  # every bond twice
        first, inverse = _unique_bonds(src, dst, cells, m)
        rows = np.column_stack([src, dst, cells])
        assert len(first) == len(np.unique(rows, axis=0))
        np.testing.assert_array_equal(rows[first][inverse], rows)


def test_phonon_properties_equal_the_complex_route(phonopy_examples_dir):
    """End to end (bands, DOS, thermal properties): a crystal with its inversion against the same
    crystal declared without one, on phonopy's force constants of SnO2."""
    from vgnn_core.crystal.crystal import Crystal
    from vgnn_core.phonons.result import phonon_properties

    _, structure, fc = example(phonopy_examples_dir, "SnO2")
    real = phonon_properties(fc, as_crystal(structure))
    plain = phonon_properties(fc, Crystal("SnO2", structure, _inversion=None))
    assert deviation(real.bands, plain.bands) < 1e-8
    # the DOS to 1e-6 of its peak: its frequency grid starts at the lowest mode, a Γ acoustic one
    # at ~1e-5 cm⁻¹ of round-off (√λ of λ ≈ 0) that differs between the routes, which shifts the
    # grid; the mesh frequencies themselves agree to 1e-11 cm⁻¹
    peak = plain.dos.total.max()
    np.testing.assert_allclose(real.dos.total, plain.dos.total, rtol=0, atol=1e-6 * peak)
    for name in real.dos.partial:
        np.testing.assert_allclose(real.dos.partial[name], plain.dos.partial[name], rtol=0, atol=1e-6 * peak)
    # C_v(T) to 1e-8 of its high-temperature value (at 1 K it is ~1e-9 J/K/mol: √λ of the acoustic
    # modes near Γ carries the symmetrisation's round-off there)
    cv = plain.thermal.heat_capacity
    np.testing.assert_allclose(real.thermal.heat_capacity, cv, rtol=0, atol=1e-8 * cv.max())
