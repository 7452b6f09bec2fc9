"""Rank-2 Cartesian tensors as irreps: the change of basis between a 3×3 tensor of a given index
symmetry and its irreps coefficients.

The numbers are those of ``e3nn.io.CartesianTensor`` (both come from
:class:`e3nn.o3.ReducedTensorProducts` on vectors ``1o``), without importing ``e3nn.io``, whose
spherical-signal half imports ``scipy.signal``: 0.6 s of every process that builds a network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from e3nn import o3

#: Index symmetries used here: any 3×3 tensor (Born charges), symmetric (force-constant blocks'
#: symmetric part, ε∞), antisymmetric (the blocks' antisymmetric part).
GENERAL_RANK2 = "ij"
SYMMETRIC_RANK2 = "ij=ji"
ANTISYMMETRIC_RANK2 = "ij=-ji"


@dataclass(frozen=True)
class CartesianBasis:
    """The irreps of a Cartesian tensor of one index symmetry and the change of basis to it."""

    formula: str
    irreps: o3.Irreps
    #: (irreps dim, 3, 3): coefficient k's Cartesian tensor; orthonormal rows (Σ_ab Q_kab Q_lab = δ_kl)
    to_cartesian: torch.Tensor


def cartesian_basis(formula: str) -> CartesianBasis:
    """The basis of 3×3 tensors with index symmetry ``formula`` (e3nn's notation: ``"ij"``,
    ``"ij=ji"``, ``"ij=-ji"``) in torch's default dtype at the call, as e3nn computes it (once per
    process and dtype); copy ``to_cartesian`` before changing it."""
    indices = formula.split("=")[0].replace("-", "")
    if len(indices) != 2:
        raise ValueError(f"{formula!r} is not a rank-2 index symmetry (e.g. 'ij', 'ij=ji', 'ij=-ji')")
    return _basis(formula, indices, torch.get_default_dtype())


@functools.cache
def _basis(formula: str, indices: str, dtype: torch.dtype) -> CartesianBasis:
    # keyed by the dtype: a float32 network built after a float64 one must not get float64 buffers
    products = o3.ReducedTensorProducts(formula, **{i: "1o" for i in indices})
    return CartesianBasis(formula, products.irreps_out, products.change_of_basis.detach().to(dtype))
