"""The fused product and mix (:mod:`vgnn_core.nn.fused`) is e3nn's ``Linear(TensorProduct(...))``.

Checked in float64 (where round-off is ~1e-15), against the two e3nn modules it is built from:
alone for several irreps, inside the shipped networks (the message passing and the bond
read-out evaluated the e3nn way), and for the gradients that training takes through it.
"""

from unittest import mock

import pytest
import torch
from e3nn import o3

from vgnn_core import VGNN, build_graph, collate
from vgnn_core.nn.convolution import Interaction, gate_for, tensor_product_paths
from vgnn_core.nn.fused import TensorProductLinear, gated, irrep_pieces
from vgnn_core.nn.readouts import BondReadout
from vgnn_core.pretrained import load_pretrained_model


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
    with pytest.raises(ValueError, match="takes"):
        TensorProductLinear(tp, o3.Linear(irreps, irreps))
    shared = o3.TensorProduct(irreps, sh, mid, instructions)
    with pytest.raises(ValueError, match="per-row weights"):
        TensorProductLinear(shared, o3.Linear(mid, irreps))


def _interaction_the_e3nn_way(self, h, edge_src, edge_dst, edge_sh, edge_radial):
    messages = self.tp(self.linear_in(h)[edge_dst], edge_sh, self.radial(edge_radial))
    agg = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype).index_add_(0, edge_src, messages)
    out = self.gate(self.linear_out(agg / self.avg_num_neighbors) + self.self_connection(h))
    return out + h if self.residual else out


def _readout_the_e3nn_way(self, h, batch, sh, length):
    from vgnn_core.nn.radial import polynomial_envelope

    index = torch.arange(len(batch.edge_reverse))
    half = torch.nonzero((batch.edge_reverse > index) & (length < self.r_bond))[:, 0]
    h_i, h_j = h[batch.edge_src[half]], h[batch.edge_dst[half]]
    y = sh[half]
    y_even = torch.cat([y[:, s] for s in self.sh_even], dim=1)
    y_odd = torch.cat([y[:, s] for s in self.sh_odd], dim=1)
    w = self.radial(self.radial_basis(length[half]))
    v = (self.linear_even(self.tp_even(h_i + h_j, y_even, w[:, : self.n_even]))
         + self.linear_odd(self.tp_odd(h_i - h_j, y_odd, w[:, self.n_even:])))
    envelope = (self.fc_scale * polynomial_envelope(length[half], self.r_bond))[:, None]
    out = self.linear_out(self.gate(v)) * envelope
    half_blocks = torch.einsum("ek,kab->eab", out, self.to_cartesian)
    blocks = torch.zeros(len(batch.edge_reverse), 3, 3)
    blocks[half] = half_blocks
    blocks[batch.edge_reverse[half]] = half_blocks
    wa = self.radial_anti(self.radial_basis(length[half]))
    axial = (self.linear_anti_even(self.tp_anti_even(h_i - h_j, y_even, wa[:, : self.n_anti_even]))
             + self.linear_anti_odd(self.tp_anti_odd(h_i + h_j, y_odd, wa[:, self.n_anti_even:])))
    anti = torch.einsum("ek,kab->eab", axial * envelope, self.anti_to_cartesian)
    return blocks.index_add(0, half, anti).index_add(0, batch.edge_reverse[half], -anti)


def _the_e3nn_way():
    return (mock.patch.object(Interaction, "forward", _interaction_the_e3nn_way),
            mock.patch.object(BondReadout, "forward", _readout_the_e3nn_way))


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
        a, b = _the_e3nn_way()
        with a, b:
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
    a, b = _the_e3nn_way()
    with a, b:
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
