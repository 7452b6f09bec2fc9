"""A tensor product and the linear map after it, evaluated as one map.

Every message in the networks is ``Linear(TensorProduct(x, Y, w))``: an e3nn ``'uvu'`` product
of atom features ``x`` with spherical harmonics ``Y`` under per-edge weights ``w``, then a
channel mix. e3nn evaluates the two modules one after the other, and the product first writes
each of its paths into one wide tensor (592 numbers per edge in the backbone's layers) that the
mix then reads back; on a CPU that tensor's copies and concatenations cost more than the
arithmetic. Both maps are linear in the path outputs, so each path can go straight through its
own block of the mix:

    out_o[z, v, k] = Σ_{paths p → o} β_p α_p Σ_u W_p[u, v] w_p[z, u] Σ_ij C_p[i, j, k] x[z, u, i] Y[z, j]

(``C_p`` the path's Wigner 3j symbol, ``α_p`` and ``β_p`` e3nn's path normalisations of the
product and the mix). :class:`TensorProductLinear` computes that from the same parameters (the
mix's weight is passed in at each call, so checkpoints, training and ``state_dict`` are those of
the two e3nn modules), equal to e3nn's result to float round-off.

Features enter as :func:`irrep_pieces`: one ``(rows, 2l+1, multiplicity)`` tensor per irrep,
the layout in which a path's coupling is one batched matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import nn as enn
from e3nn import o3


def irrep_pieces(x: torch.Tensor, irreps: o3.Irreps) -> list[torch.Tensor]:
    """``x`` (rows, irreps.dim) in e3nn's layout → one contiguous (rows, 2l+1, mul) tensor per irrep."""
    return [x[:, s].reshape(-1, mul, ir.dim).transpose(1, 2).contiguous()
            for s, (mul, ir) in zip(irreps.slices(), irreps)]


@dataclass(frozen=True)
class _Path:
    """One product path as the fused map uses it."""

    i_in1: int  # which irrep of the features
    y_slice: slice  # its spherical harmonics' columns
    w_slice: slice  # its per-edge weights' columns (one per channel)
    mix_slice: slice  # its block of the mix's flat weight, (mul_in, mul_out) row-major
    mul: int
    coupling: int  # index of its (J, K·I) coupling buffer
    scalar_y: bool  # l2 = 0: the coupling is the identity times a constant


class TensorProductLinear(torch.nn.Module):
    """``linear(tp(x, y, w))`` for an e3nn ``TensorProduct`` of ``'uvu'`` paths with per-row
    weights and one ``irreps_in2`` channel per irrep, followed by an ``o3.Linear`` without biases.

    Holds no parameters and only non-persistent buffers (the couplings), so it can sit beside the
    two modules it was built from without changing a checkpoint.
    """

    def __init__(self, tp: o3.TensorProduct, linear: o3.Linear):
        super().__init__()
        if tp.irreps_out != linear.irreps_in:
            raise ValueError(f"the product gives {tp.irreps_out}, the linear map takes {linear.irreps_in}")
        if linear.bias_numel or not linear.internal_weights or tuple(linear.weight.shape) != (linear.weight_numel,):
            raise ValueError("fusing needs a linear map with internal weights, no biases and no f_in / f_out")
        if tp.shared_weights or tp.internal_weights:
            raise ValueError("fusing needs a tensor product with per-row weights given at each call")
        self.irreps_out = linear.irreps_out
        y_slices = tp.irreps_in2.slices()
        w_start = {}  # product instruction → first column of its weights
        offset = 0
        for k, ins in enumerate(tp.instructions):
            if ins.connection_mode != "uvu" or not ins.has_weight or ins.path_shape[1] != 1:
                raise ValueError(f"fusing needs weighted 'uvu' paths with one channel of irreps_in2, got {ins}")
            w_start[k] = offset
            offset += ins.path_shape[0]
        mix_start, offset = {}, 0
        for k, ins in enumerate(linear.instructions):
            mix_start[k] = offset
            offset += ins.path_shape[0] * ins.path_shape[1]
        #: per output irrep of the mix: [(path, the mix's path weight)]
        self._terms: list[list[tuple[_Path, float]]] = [[] for _ in linear.irreps_out]
        for k, ins in enumerate(tp.instructions):
            (mul1, ir1), (_, ir2), (_, ir3) = tp.irreps_in1[ins.i_in1], tp.irreps_in2[ins.i_in2], tp.irreps_out[ins.i_out]
            # C[i, j, k] times the product's path weight, stored as (J, K·I): Y (Z, J) @ it → (Z, K, I)
            c = o3.wigner_3j(ir1.l, ir2.l, ir3.l) * ins.path_weight
            name = f"coupling_{k}"
            self.register_buffer(name, c.permute(1, 2, 0).reshape(ir2.dim, ir3.dim * ir1.dim).contiguous(),
                                 persistent=False)
            for m, lin in enumerate(linear.instructions):
                if lin.i_in != ins.i_out:
                    continue
                path = _Path(
                    i_in1=ins.i_in1, y_slice=y_slices[ins.i_in2], w_slice=slice(w_start[k], w_start[k] + mul1),
                    mix_slice=slice(mix_start[m], mix_start[m] + lin.path_shape[0] * lin.path_shape[1]),
                    mul=mul1, coupling=k, scalar_y=ir2.l == 0,
                )
                self._terms[lin.i_out].append((path, float(lin.path_weight)))

    def forward(self, x: list[torch.Tensor], y: torch.Tensor, w: torch.Tensor,
                mix_weight: torch.Tensor) -> torch.Tensor:
        """``x``: :func:`irrep_pieces` of the product's first input (rows, 2l+1, mul); ``y``: its
        second input (rows, irreps_in2.dim); ``w``: the per-row product weights (rows,
        weight_numel); ``mix_weight``: the linear map's ``weight``. Returns (rows,
        irreps_out.dim) in e3nn's layout."""
        rows = y.shape[0]
        out = y.new_empty(rows, self.irreps_out.dim) if all(self._terms) else y.new_zeros(rows, self.irreps_out.dim)
        for (mul_out, ir_out), s, terms in zip(self.irreps_out, self.irreps_out.slices(), self._terms):
            if not terms:
                continue
            k_dim = ir_out.dim
            mixed = y.new_zeros(rows, k_dim, mul_out)  # the paths' couplings through their blocks of the mix
            for p, alpha in terms:
                block = mix_weight[p.mix_slice].view(p.mul, mul_out) * alpha
                cp = getattr(self, f"coupling_{p.coupling}")
                wp = w[:, p.w_slice]  # (Z, U): the weights commute with the coupling
                if p.scalar_y:  # C[i, 0, k] = c δ_ik: the coupling scales each row
                    xw = x[p.i_in1] * (wp * (y[:, p.y_slice] * cp[0, 0])).unsqueeze(1)  # (Z, K, U)
                    mixed.view(-1, mul_out).addmm_(xw.reshape(-1, p.mul), block)
                    continue
                b = (y[:, p.y_slice] @ cp).reshape(rows, k_dim, x[p.i_in1].shape[1])  # (Z, K, I); Z may be 0
                xw = x[p.i_in1] * wp.unsqueeze(1)  # (Z, I, U)
                if xw.shape[1] == 1:  # a scalar input: mix its channels first, then couple
                    mixed.addcmul_(b, (xw.reshape(rows, p.mul) @ block).unsqueeze(1))
                    continue
                # bmm(b, xw) as 2l₁+1 broadcast products: faster than batched tiny matrices on a CPU
                t = b[:, :, :1] * xw[:, None, 0]  # (Z, K, U)
                for i in range(1, xw.shape[1]):
                    t.addcmul_(b[:, :, i : i + 1], xw[:, None, i])
                mixed.view(-1, mul_out).addmm_(t.reshape(-1, p.mul), block)
            out[:, s].view(rows, mul_out, k_dim).copy_(mixed.transpose(1, 2))
        return out


def gated(gate: enn.Gate, x: torch.Tensor) -> torch.Tensor:
    """``gate(x)`` for an e3nn ``Gate`` whose input is its scalars, gates and gated irreps in that
    order (every gate here): the same activations, without e3nn's cut into three copies, its
    elementwise product module and the concatenation after it. ``x``: (..., irreps_in.dim)."""
    n = len(gate.irreps_scalars) + len(gate.irreps_gates) + len(gate.irreps_gated)
    n_scalars, n_gates = gate.irreps_scalars.dim, gate.irreps_gates.dim
    if not n_gates or (gate.irreps_scalars + gate.irreps_gates + gate.irreps_gated).sort().p != tuple(range(n)):
        return gate(x)  # e3nn sorts the input irreps: another order needs its cut
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    out = x.new_empty(x.shape[0], gate.irreps_out.dim)
    out[:, :n_scalars] = gate.act_scalars(x[:, :n_scalars])
    gates = gate.act_gates(x[:, n_scalars:n_scalars + n_gates])
    start, g = n_scalars + n_gates, 0
    for (mul, ir), part in zip(gate.irreps_gated, gate.irreps_gated.slices()):
        rows = slice(n_scalars + part.start, n_scalars + part.stop)
        piece = x[:, start + part.start:start + part.stop].reshape(-1, mul, ir.dim)
        out[:, rows].view(-1, mul, ir.dim).copy_(piece * gates[:, g:g + mul, None])
        g += mul
    return out.reshape(*lead, gate.irreps_out.dim)
