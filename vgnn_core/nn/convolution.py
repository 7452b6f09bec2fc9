"""Equivariant message passing on the real crystal graph (e3nn tensor products).

One :class:`Interaction` updates every atom's features from its neighbours:
``m_ij = TP(h_j, Y(r̂_ij); w(|r_ij|))``, summed over neighbours and divided by a fixed
``avg_num_neighbors`` (a constant, so an atom's features depend only on its environment and
a supercell sees exactly what its primitive cell sees), then a linear mix, a self-connection
and a gated nonlinearity.
"""

from __future__ import annotations

import torch
from e3nn import nn as enn
from e3nn import o3

from .fused import TensorProductLinear, gated, irrep_pieces


def tensor_product_paths(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
) -> tuple[o3.Irreps, list[tuple]]:
    """'uvu' paths of ``irreps_in ⊗ irreps_sh`` that land in an irrep of ``irreps_target``."""
    wanted = {ir for _, ir in o3.Irreps(irreps_target)}
    out: list[tuple[int, o3.Irrep]] = []
    instructions = []
    for i1, (mul, ir1) in enumerate(o3.Irreps(irreps_in)):
        for i2, (_, ir2) in enumerate(o3.Irreps(irreps_sh)):
            for ir in ir1 * ir2:
                if ir in wanted:
                    instructions.append((i1, i2, len(out), "uvu", True))
                    out.append((mul, ir))
    return o3.Irreps(out), instructions


def gate_for(irreps_target: o3.Irreps) -> enn.Gate:
    """A gate whose output is ``irreps_target``: scalars through SiLU / tanh, others gated."""
    irreps_target = o3.Irreps(irreps_target)
    scalars = o3.Irreps([(m, ir) for m, ir in irreps_target if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in irreps_target if ir.l > 0])
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return enn.Gate(scalars, acts, gates, [torch.sigmoid] * len(gates), gated)


class Interaction(torch.nn.Module):
    """One equivariant convolution + gate over the real graph."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        n_radial: int,
        radial_hidden: int,
        avg_num_neighbors: float,
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = gate_for(irreps_out)
        self.irreps_out = self.gate.irreps_out
        mid, instructions = tensor_product_paths(self.irreps_in, irreps_sh, self.gate.irreps_in)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(
            self.irreps_in, irreps_sh, mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial = enn.FullyConnectedNet(
            [n_radial, radial_hidden, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
        )
        self.linear_out = o3.Linear(mid, self.gate.irreps_in)
        self.message = TensorProductLinear(self.tp, self.linear_out)  # linear_out(tp(...)) per edge
        self.self_connection = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.residual = self.irreps_in == self.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        neighbours: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """New features of the atoms ``h`` holds (the centres ``edge_src`` indexes) from their
        neighbours' (``edge_dst`` indexes ``neighbours``, all the graph's atoms; default: ``h``
        itself, when it holds every atom)."""
        neighbours = h if neighbours is None else neighbours
        x = [piece[edge_dst] for piece in irrep_pieces(self.linear_in(neighbours), self.irreps_in)]
        # linear_out is linear, so it mixes each edge's message before the sum over neighbours
        messages = self.message(x, edge_sh, self.radial(edge_radial), self.linear_out.weight)
        agg = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device)
        agg.index_add_(0, edge_src, messages)
        out = gated(self.gate, agg / self.avg_num_neighbors + self.self_connection(h))
        return out + h if self.residual else out
