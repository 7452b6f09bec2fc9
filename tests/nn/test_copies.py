"""clone_module: a network's copy with its own weights that shares the generated code."""

import pytest
import torch
from torch.fx import GraphModule

from tests.conftest import TINY_ARCH as TINY
from vgnn_core import VGNN
from vgnn_core.crystal.graph import build_graph, collate
from vgnn_core.nn.copies import clone_module


@pytest.fixture
def network():
    torch.manual_seed(3)
    net = VGNN(kind="kmvn", **TINY).double()
    with torch.no_grad():  # well away from the initial values, so no block vanishes by accident
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


def test_a_clone_predicts_the_same_blocks_with_tensors_of_its_own(network, wurtzite_zno):
    batch = collate([build_graph(wurtzite_zno, network.config.graph_cutoff)], dtype=torch.float64)
    twin = clone_module(network)
    assert type(twin) is VGNN and twin.config == network.config
    torch.testing.assert_close(twin.bond_blocks(batch), network.bond_blocks(batch), rtol=0, atol=0)
    # every parameter and buffer is a copy: same names, values and requires_grad, other storage
    mine, theirs = dict(twin.named_parameters()), dict(network.named_parameters())
    assert mine.keys() == theirs.keys()
    assert all(mine[k].requires_grad == theirs[k].requires_grad for k in mine)
    ours = {t.data_ptr() for t in [*network.parameters(), *network.buffers()] if t.numel()}
    assert not ours & {t.data_ptr() for t in [*twin.parameters(), *twin.buffers()] if t.numel()}
    assert twin.state_dict().keys() == network.state_dict().keys()
    # the generated code is shared: e3nn's traced modules keep their classes (one per module built)
    traced = [type(m) for m in network.modules() if isinstance(m, GraphModule)]
    assert traced and traced == [type(m) for m in twin.modules() if isinstance(m, GraphModule)]
    # and the modules are not: changing or training the copy leaves the original as it was
    before = network.bond_blocks(batch).detach().clone()
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(1.5)
    assert not torch.allclose(twin.bond_blocks(batch), before)
    torch.testing.assert_close(network.bond_blocks(batch), before, rtol=0, atol=0)
    twin.bond_blocks(batch).square().sum().backward()
    assert all(p.grad is None for p in network.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in twin.parameters())


def test_a_clone_loads_other_weights_like_a_new_network(network, wurtzite_zno):
    """What the checkpoint loader does with it: a copy of member 0 filled with member 1's weights
    predicts what member 1 built on its own does."""
    batch = collate([build_graph(wurtzite_zno, network.config.graph_cutoff)], dtype=torch.float64)
    torch.manual_seed(4)
    other = VGNN(kind="kmvn", **TINY).double()
    twin = clone_module(network)
    twin.load_state_dict(other.state_dict())
    torch.testing.assert_close(twin.bond_blocks(batch), other.bond_blocks(batch), rtol=0, atol=0)
    assert not torch.allclose(network.bond_blocks(batch), other.bond_blocks(batch))


def test_hooks_and_repeated_submodules_are_the_copys_own():
    inner = torch.nn.Linear(3, 3)
    outer = torch.nn.Sequential(inner, torch.nn.ReLU(), inner)  # one module used twice
    twin = clone_module(outer)
    assert twin[0] is twin[2] and twin[0] is not inner
    calls = []
    twin[0].register_forward_hook(lambda *args: calls.append("twin"))
    twin.register_buffer("extra", torch.zeros(1))
    outer(torch.ones(1, 3))
    assert calls == [] and "extra" not in dict(outer.named_buffers())
    twin(torch.ones(1, 3))
    assert calls == ["twin", "twin"]
