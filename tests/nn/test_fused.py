"""The fused product and mix (:mod:`vgnn_core.nn.fused`) is e3nn's ``Linear(TensorProduct(...))``.

Checked in float64 (where round-off is ~1e-15), against the two e3nn modules it is built from:
alone for several irreps, inside the shipped networks (the message passing and the bond
read-out evaluated the e3nn way: ``benchmarks/bench_fused.py``'s ``unfused``), and for the
gradients that training takes through it; and on rows with nothing to sum (a batch without a
bond shorter than the message-passing cutoff).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from e3nn import o3

from vgnn_core import VGNN, build_graph, collate
from vgnn_core.nn.convolution import gate_for, tensor_product_paths
from vgnn_core.nn.fused import TensorProductLinear, gated, irrep_pieces
from vgnn_core.predict import load_pretrained
from vgnn_core.pretrained import load_pretrained_model

# the reference: the networks evaluated the e3nn way (benchmarks/bench_fused.py, which times both)
_spec = importlib.util.spec_from_file_location(
    "bench_fused", Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fused.py")
bench_fused = importlib.util.module_from_spec(_spec)
sys.modules["bench_fused"] = bench_fused
_spec.loader.exec_module(bench_fused)
unfused = bench_fused.unfused


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("irreps_in, irreps_sh, target", [
    ("32x0e", "1x0e + 1x1o + 1x2e", "32x0e + 16x1o + 8x2e + 24x0e"),  # the first layer: scalars in
    ("32x0e + 16x1o + 8x2e", "1x0e + 1x1o + 1x2e", "56x0e + 16x1o + 8x2e"),  # the other layers
    ("32x0e + 16x1o + 8x2e", "1x0e + 1x2e", "32x0e + 8x1o + 8x2e"),  # the read-out's even half
    ("4x0o + 3x1e + 2x2o + 2x3e", "1x1o + 1x3o", "5x1o + 2x2e + 3x0e + 2x6e"),  # odd parities, l = 3; 6e unreached
])
def test_equals_the_two_e3nn_modules(irreps_in, irreps_sh, target):
    torch.manual_seed(0)
    irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
    mid, instructions = tensor_product_paths(irreps_in, irreps_sh, target)
    tp = o3.TensorProduct(irreps_in, irreps_sh, mid, instructions, shared_weights=False, internal_weights=False)
    linear = o3.Linear(mid, target)
    fused = TensorProductLinear(tp, linear)
    x, y, w = torch.randn(200, irreps_in.dim), torch.randn(200, irreps_sh.dim), torch.randn(200, tp.weight_numel)
    with torch.no_grad():
        reference = linear(tp(x, y, w))
        got = fused(irrep_pieces(x, irreps_in), y, w, linear.weight)
    assert reference.abs().max() > 1.0
    assert torch.allclose(got, reference, rtol=0, atol=1e-12 * float(reference.abs().max()))
    for (_, ir), part in zip(linear.irreps_out, linear.irreps_out.slices()):
        if ir not in [i for _, i in mid]:  # an output no path reaches is zero, as in e3nn
            assert not got[:, part].any()


def test_refuses_what_it_does_not_compute():
    irreps = o3.Irreps("4x0e + 2x1o")
    sh = o3.Irreps("1x0e + 1x1o")
    mid, instructions = tensor_product_paths(irreps, sh, irreps)
    tp = o3.TensorProduct(irreps, sh, mid, instructions, shared_weights=False, internal_weights=False)
    with pytest.raises(ValueError, match="no biases"):
        TensorProductLinear(tp, o3.Linear(mid, irreps, biases=True))
    with pytest.raises(ValueError, match="f_in"):
        TensorProductLinear(tp, o3.Linear(mid, irreps, f_in=2, f_out=2))
    with pytest.raises(ValueError, match="takes"):
        TensorProductLinear(tp, o3.Linear(irreps, irreps))
    shared = o3.TensorProduct(irreps, sh, mid, instructions)
    with pytest.raises(ValueError, match="per-row weights"):
        TensorProductLinear(shared, o3.Linear(mid, irreps))


def test_shipped_networks_give_the_e3nn_blocks(monoclinic_zro2, perovskite_srtio3, wurtzite_zno):
    shipped = load_pretrained_model("kmvn").members[0]
    assert shipped.config.full_blocks
    # built in float64 with the shipped weights: a checkpoint also stores e3nn's Wigner 3j symbols,
    # in float32, which would leave a 1e-8 difference that is the checkpoint's, not the fusing's
    model = VGNN(shipped.config).eval()
    with torch.no_grad():
        for p, q in zip(model.parameters(), shipped.parameters(), strict=True):
            p.copy_(q)
    batch = collate([build_graph(s, model.config.graph_cutoff) for s in (monoclinic_zro2, perovskite_srtio3, wurtzite_zno)],
                    dtype=torch.float64)
    with torch.no_grad():
        got = model.bond_blocks(batch)
        with unfused():
            reference = model.bond_blocks(batch)
    assert reference.abs().max() > 1.0
    assert torch.allclose(got, reference, rtol=0, atol=1e-12 * float(reference.abs().max()))


def test_training_gradients_are_the_e3nn_ones(monoclinic_zro2):
    torch.manual_seed(3)
    model = VGNN(kind="kmvn", r_bond=5.0, full_blocks=True)
    batch = collate([build_graph(monoclinic_zro2, model.config.graph_cutoff)], dtype=torch.float64)

    def gradients():
        model.zero_grad()
        (model.bond_blocks(batch) ** 2).sum().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    got = gradients()
    with unfused():
        reference = gradients()
    assert got.keys() == reference.keys() and len(got) > 20
    for name, g in reference.items():
        assert torch.allclose(got[name], g, rtol=1e-9, atol=1e-12 * float(g.abs().max())), name


def test_checkpoints_hold_only_the_e3nn_modules():
    model = VGNN(kind="kmvn", full_blocks=True)
    assert not [k for k in model.state_dict() if "coupling" in k]  # the couplings are derived, not saved
    assert any(name.endswith("message") for name, _ in model.named_modules())


@pytest.mark.parametrize("irreps", ["32x0e + 16x1o + 8x2e", "16x0e + 8x1o + 8x2e", "4x0e + 2x2e + 3x1o", "5x0o"])
def test_gate_equals_e3nns(irreps):
    gate = gate_for(irreps)  # the third is stored unsorted: e3nn's own cut is kept for it
    x = torch.randn(300, gate.irreps_in.dim)
    assert torch.allclose(gated(gate, x), gate(x), rtol=0, atol=1e-14)
    x = x.reshape(3, 100, -1)  # any leading dimensions, as e3nn's
    assert torch.allclose(gated(gate, x), gate(x), rtol=0, atol=1e-14)


def test_no_rows_gives_no_rows():
    irreps, sh = o3.Irreps("32x0e + 16x1o + 8x2e"), o3.Irreps.spherical_harmonics(2)
    mid, instructions = tensor_product_paths(irreps, sh, "56x0e + 16x1o + 8x2e")
    tp = o3.TensorProduct(irreps, sh, mid, instructions, shared_weights=False, internal_weights=False)
    linear = o3.Linear(mid, "56x0e + 16x1o + 8x2e")
    out = TensorProductLinear(tp, linear)(irrep_pieces(torch.zeros(0, irreps.dim), irreps), torch.zeros(0, sh.dim),
                                          torch.zeros(0, tp.weight_numel), linear.weight)
    assert out.shape == (0, linear.irreps_out.dim)


def test_crystal_without_message_passing_bonds():
    """bcc K: nearest neighbours at 4.5 Å, beyond the 4 Å of message passing but within the 6 Å bonds."""
    from pymatgen.core import Lattice, Structure

    torch.set_default_dtype(torch.float32)
    potassium = Structure(Lattice.cubic(5.23), ["K", "K"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    predictor = load_pretrained("kmvn")
    (result,) = predictor.predict_phonons([potassium], thermal=False)
    with unfused():
        (reference,) = predictor.predict_phonons([potassium], thermal=False)
    assert np.abs(result.bands).max() > 10.0  # the bonds within 6 Å still carry force constants
    np.testing.assert_allclose(result.bands, reference.bands, atol=1e-3)
