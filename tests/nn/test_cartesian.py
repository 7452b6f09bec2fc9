"""Rank-2 Cartesian tensors as irreps: e3nn's change of basis, rotation-equivariant, and without
``e3nn.io``'s import cost."""

import subprocess
import sys

import pytest
import torch
from e3nn import o3

from vgnn_core.nn.cartesian import (
    ANTISYMMETRIC_RANK2,
    GENERAL_RANK2,
    SYMMETRIC_RANK2,
    cartesian_basis,
)

FORMULAS = {GENERAL_RANK2: (9, "1x0e+1x1e+1x2e"), SYMMETRIC_RANK2: (6, "1x0e+1x2e"), ANTISYMMETRIC_RANK2: (3, "1x1e")}


@pytest.mark.parametrize("formula", sorted(FORMULAS))
def test_the_basis_is_e3nns_orthonormal_and_rotates_with_the_tensor(formula):
    from e3nn.io import CartesianTensor

    basis = cartesian_basis(formula)
    dim, irreps = FORMULAS[formula]
    assert basis.irreps == o3.Irreps(irreps) == CartesianTensor(formula)
    assert basis.to_cartesian.shape == (dim, 3, 3)
    # the same numbers as e3nn.io.CartesianTensor (what the shipped checkpoints were trained with)
    torch.testing.assert_close(basis.to_cartesian, CartesianTensor(formula).to_cartesian(torch.eye(dim)),
                               rtol=0, atol=0)
    q = basis.to_cartesian.double().reshape(dim, 9)
    torch.testing.assert_close(q @ q.T, torch.eye(dim, dtype=torch.float64), atol=1e-6, rtol=0)
    sign = {GENERAL_RANK2: None, SYMMETRIC_RANK2: 1, ANTISYMMETRIC_RANK2: -1}[formula]
    if sign is not None:
        torch.testing.assert_close(basis.to_cartesian.transpose(1, 2), sign * basis.to_cartesian)
    # coefficients rotated by the irreps' Wigner matrices are the Cartesian tensor rotated: R T Rᵀ
    torch.manual_seed(0)
    rotation = o3.rand_matrix().double()
    coefficients = torch.randn(5, dim, dtype=torch.float64)
    tensors = torch.einsum("nk,kab->nab", coefficients, basis.to_cartesian.double())
    rotated = torch.einsum("nk,kab->nab", coefficients @ basis.irreps.D_from_matrix(rotation).T,
                           basis.to_cartesian.double())
    torch.testing.assert_close(rotated, rotation @ tensors @ rotation.T, atol=1e-6, rtol=0)


def test_a_basis_is_rank_two_only_computed_once_per_dtype():
    assert cartesian_basis("ij=ji") is cartesian_basis("ij=ji")
    before = torch.get_default_dtype()
    try:  # a network built in float64 first leaves float32 networks built later their own dtype
        torch.set_default_dtype(torch.float64)
        assert cartesian_basis("ij=-ji").to_cartesian.dtype == torch.float64
    finally:
        torch.set_default_dtype(before)
    assert cartesian_basis("ij=-ji").to_cartesian.dtype == before
    from tests.conftest import TINY_ARCH
    from vgnn_core import VGNN

    assert VGNN(kind="kmvn", full_blocks=True, **TINY_ARCH).readout.anti_to_cartesian.dtype == before
    with pytest.raises(ValueError, match="rank-2"):
        cartesian_basis("ijk=jik")


def test_networks_build_without_importing_e3nn_io():
    """e3nn.io imports scipy.signal (0.6 s of every worker's start); the networks need neither."""
    code = ("import sys; from vgnn_core.nn.model import VGNN; from vgnn_core.nn.born import BornHeads; "
            "VGNN(kind='kmvn', full_blocks=True, n_layers=1); BornHeads('8x0e + 4x1o + 2x2e'); "
            "print(sorted(m for m in ('e3nn.io', 'scipy.signal') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
