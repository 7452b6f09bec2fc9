"""The VGNN model: an e3nn backbone on the real graph and virtual-node read-outs.

* ``kmvn`` — every bond's virtual node yields a symmetric 3×3 block Φ_ij(T) (irreps 0e + 2e
  → Cartesian), paired so that Φ_ji(−T) = Φ_ij(T)ᵀ, with the on-site block from the acoustic
  sum rule: D(q) at any q, Hermitian and with exact acoustic modes for any weights.
* ``mvn`` — the same per-bond blocks summed into one block per ordered atom pair (the MVN
  virtual node), giving D(Γ) only. The sum is linear, so a supercell's D(Γ) is exactly the
  primitive cell's D at the commensurate q-points.
* ``vvn`` — 3m virtual nodes on the cell diagonal, one frequency each (the paper's weakest
  variant, kept for comparison; it has no exact acoustic sum rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from e3nn import nn as enn
from e3nn import o3
from e3nn.io import CartesianTensor
from e3nn.math import soft_one_hot_linspace

from .convolution import Interaction, gate_for, tensor_product_paths
from .dynamical_matrix import band_frequencies, gamma_frequencies
from .force_constants import ForceConstants, divergence_free_antisymmetric, with_onsite
from .graph import GraphBatch
from .radial import BesselBasis, polynomial_envelope
from .virtual_nodes import vvn_edges, vvn_positions

MODEL_KINDS = ("kmvn", "mvn", "vvn")
#: 0e + 2e: the irreps of a symmetric 3×3 tensor.
SYMMETRIC_TENSOR = o3.Irreps("1x0e + 1x2e")
#: 1e: the irreps of an antisymmetric 3×3 tensor (an axial vector).
ANTISYMMETRIC_TENSOR = o3.Irreps("1x1e")


@dataclass
class VGNNConfig:
    """Architecture hyper-parameters (stored in every checkpoint)."""

    kind: str = "kmvn"
    #: message-passing cutoff of the real graph (Å)
    r_max: float = 4.0
    #: cutoff (Å) of the bonds that carry force constants — the k-MVN / MVN virtual nodes;
    #: ``None`` = ``r_max``. A bond node beyond r_max still hears only its two atoms.
    r_bond: float | None = None
    n_radial: int = 8
    radial_hidden: int = 32
    hidden_irreps: str = "32x0e + 16x1o + 8x2e"
    n_layers: int = 3
    embed_dim: int = 32
    readout_irreps: str = "16x0e + 8x1o + 8x2e"
    sh_lmax: int = 2
    avg_num_neighbors: float = 30.0
    #: scale (eV/Å²) of the predicted force-constant blocks
    fc_scale: float = 10.0
    #: predict the whole 3×3 block Φ_ij(T) (0e + 1e + 2e) instead of its symmetric part
    #: (0e + 2e); the antisymmetric part is made divergence-free so the sum rule stays exact
    full_blocks: bool = False
    #: scale (cm⁻¹) of VVN outputs, and the distance range (Å) of its radial basis
    vvn_freq_scale: float = 500.0
    vvn_range: float = 12.0

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {MODEL_KINDS}")

    @property
    def graph_cutoff(self) -> float:
        """The neighbour-list cutoff a crystal graph needs for this model."""
        return max(self.r_max, self.r_bond or self.r_max)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VGNNConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class AtomEncoder(torch.nn.Module):
    """Atomic-number embedding (node attribute) and atomic mass (input feature) → scalars."""

    def __init__(self, embed_dim: int, n_species: int = 119):
        super().__init__()
        self.embedding = torch.nn.Embedding(n_species, embed_dim)
        self.mix = torch.nn.Linear(embed_dim + 1, embed_dim)

    def forward(self, numbers: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
        mass_feature = (masses / 100.0)[:, None].to(self.mix.weight.dtype)
        return torch.nn.functional.silu(self.mix(torch.cat([self.embedding(numbers), mass_feature], 1)))


class Backbone(torch.nn.Module):
    """Embedding and ``n_layers`` equivariant interactions on the real graph."""

    def __init__(self, cfg: VGNNConfig):
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.sh_lmax)
        self.encoder = AtomEncoder(cfg.embed_dim)
        self.radial_basis = BesselBasis(cfg.r_max, cfg.n_radial)
        irreps = o3.Irreps(f"{cfg.embed_dim}x0e")
        layers = []
        for _ in range(cfg.n_layers):
            layer = Interaction(
                irreps, cfg.hidden_irreps, self.irreps_sh, cfg.n_radial, cfg.radial_hidden,
                cfg.avg_num_neighbors,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        self.irreps_out = irreps

    def edge_features(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Spherical harmonics and lengths of every edge."""
        length = torch.linalg.norm(batch.edge_vec, dim=1)
        sh = o3.spherical_harmonics(self.irreps_sh, batch.edge_vec, normalize=True, normalization="component")
        return sh, length

    def forward(self, batch: GraphBatch, sh: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Atom features from message passing over the edges shorter than ``r_max``."""
        near = torch.nonzero(length < self.radial_basis.r_max)[:, 0]
        src, dst, sh, radial = batch.edge_src[near], batch.edge_dst[near], sh[near], self.radial_basis(length[near])
        h = self.encoder(batch.numbers, batch.masses)
        for layer in self.layers:
            h = layer(h, src, dst, sh, radial)
        return h


class BondReadout(torch.nn.Module):
    """The k-MVN / MVN virtual node of a bond: messages from both of its atoms → Φ_ij(T).

    The node's input is symmetric under swapping the bond's ends (i, j, r) → (j, i, −r):

        v = TP(h_i + h_j, Y_even(r̂)) + TP(h_i − h_j, Y_odd(r̂))

    (``Y_odd`` flips sign with r, ``Y_even`` does not), so a bond and its reverse get the same
    symmetric block — Φ_ji(−T) = Φ_ij(T)ᵀ holds exactly — and the read-out runs on one bond
    of each pair only.
    """

    def __init__(self, cfg: VGNNConfig, irreps_in: o3.Irreps, irreps_sh: o3.Irreps):
        super().__init__()
        self.gate = gate_for(cfg.readout_irreps)
        sh = o3.Irreps(irreps_sh)
        even_idx = [k for k, (_, ir) in enumerate(sh) if ir.l % 2 == 0]
        odd_idx = [k for k, (_, ir) in enumerate(sh) if ir.l % 2 == 1]
        self.sh_even = [sh.slices()[k] for k in even_idx]
        self.sh_odd = [sh.slices()[k] for k in odd_idx]
        irreps_even = o3.Irreps([sh[k] for k in even_idx])
        irreps_odd = o3.Irreps([sh[k] for k in odd_idx])
        mid_e, ins_e = tensor_product_paths(irreps_in, irreps_even, self.gate.irreps_in)
        mid_o, ins_o = tensor_product_paths(irreps_in, irreps_odd, self.gate.irreps_in)
        kw = dict(shared_weights=False, internal_weights=False)
        self.tp_even = o3.TensorProduct(irreps_in, irreps_even, mid_e, ins_e, **kw)
        self.tp_odd = o3.TensorProduct(irreps_in, irreps_odd, mid_o, ins_o, **kw)
        self.n_even = self.tp_even.weight_numel
        self.radial = enn.FullyConnectedNet(
            [cfg.n_radial, cfg.radial_hidden, cfg.radial_hidden, self.n_even + self.tp_odd.weight_numel],
            torch.nn.functional.silu,
        )
        self.linear_even = o3.Linear(mid_e, self.gate.irreps_in)
        self.linear_odd = o3.Linear(mid_o, self.gate.irreps_in)
        self.linear_out = o3.Linear(self.gate.irreps_out, SYMMETRIC_TENSOR)
        self.register_buffer("to_cartesian", CartesianTensor("ij=ji").to_cartesian(torch.eye(6)))
        self.full_blocks = cfg.full_blocks
        if self.full_blocks:
            # The antisymmetric part must change sign when the bond is reversed, so it is read
            # from the odd combinations TP(h_i − h_j, Y_even) + TP(h_i + h_j, Y_odd), linearly
            # (their radial weights depend on |r| only): reversal flips it exactly.
            amid_e, ains_e = tensor_product_paths(irreps_in, irreps_even, ANTISYMMETRIC_TENSOR)
            amid_o, ains_o = tensor_product_paths(irreps_in, irreps_odd, ANTISYMMETRIC_TENSOR)
            self.tp_anti_even = o3.TensorProduct(irreps_in, irreps_even, amid_e, ains_e, **kw)
            self.tp_anti_odd = o3.TensorProduct(irreps_in, irreps_odd, amid_o, ains_o, **kw)
            self.n_anti_even = self.tp_anti_even.weight_numel
            self.radial_anti = enn.FullyConnectedNet(
                [cfg.n_radial, cfg.radial_hidden, self.n_anti_even + self.tp_anti_odd.weight_numel],
                torch.nn.functional.silu,
            )
            self.linear_anti_even = o3.Linear(amid_e, ANTISYMMETRIC_TENSOR)
            self.linear_anti_odd = o3.Linear(amid_o, ANTISYMMETRIC_TENSOR)
            self.register_buffer("anti_to_cartesian", CartesianTensor("ij=-ji").to_cartesian(torch.eye(3)))
        self.fc_scale = cfg.fc_scale
        self.r_bond = cfg.r_bond or cfg.r_max
        self.radial_basis = BesselBasis(self.r_bond, cfg.n_radial)

    def forward(
        self, h: torch.Tensor, batch: GraphBatch, sh: torch.Tensor, length: torch.Tensor
    ) -> torch.Tensor:
        # one bond of each (bond, reverse) pair, within the bond cutoff
        index = torch.arange(len(batch.edge_reverse), device=h.device)
        half = torch.nonzero((batch.edge_reverse > index) & (length < self.r_bond))[:, 0]
        h_i, h_j = h[batch.edge_src[half]], h[batch.edge_dst[half]]
        y = sh[half]
        y_even = torch.cat([y[:, s] for s in self.sh_even], dim=1)
        y_odd = torch.cat([y[:, s] for s in self.sh_odd], dim=1)
        w = self.radial(self.radial_basis(length[half]))
        v = self.linear_even(self.tp_even(h_i + h_j, y_even, w[:, : self.n_even])) + self.linear_odd(
            self.tp_odd(h_i - h_j, y_odd, w[:, self.n_even :])
        )
        out = self.linear_out(self.gate(v))
        envelope = (self.fc_scale * polynomial_envelope(length[half], self.r_bond))[:, None]
        out = out * envelope
        half_blocks = torch.einsum("ek,kab->eab", out, self.to_cartesian.to(out.dtype))
        blocks = torch.zeros(len(batch.edge_reverse), 3, 3, dtype=out.dtype, device=out.device)
        blocks[half] = half_blocks
        blocks[batch.edge_reverse[half]] = half_blocks
        if self.full_blocks:
            wa = self.radial_anti(self.radial_basis(length[half]))
            axial = self.linear_anti_even(self.tp_anti_even(h_i - h_j, y_even, wa[:, : self.n_anti_even]))
            axial = axial + self.linear_anti_odd(self.tp_anti_odd(h_i + h_j, y_odd, wa[:, self.n_anti_even :]))
            anti = torch.einsum("ek,kab->eab", axial * envelope, self.anti_to_cartesian.to(out.dtype))
            blocks = blocks.index_add(0, half, anti).index_add(0, batch.edge_reverse[half], -anti)
        return blocks


class VVNReadout(torch.nn.Module):
    """3m virtual nodes on the cell diagonal, receiving from all atoms, then from each other."""

    def __init__(self, cfg: VGNNConfig, irreps_in: o3.Irreps, irreps_sh: o3.Irreps):
        super().__init__()
        self.irreps_sh = irreps_sh
        self.n_basis = 16
        self.range = cfg.vvn_range
        self.init_state = torch.nn.Parameter(torch.randn(cfg.embed_dim))
        irreps_vn = o3.Irreps(f"{cfg.embed_dim}x0e")
        self.gate1 = gate_for(cfg.readout_irreps)
        mid1, ins1 = tensor_product_paths(irreps_in, irreps_sh, self.gate1.irreps_in)
        self.tp_atoms = o3.TensorProduct(irreps_in, irreps_sh, mid1, ins1, shared_weights=False, internal_weights=False)
        self.radial1 = enn.FullyConnectedNet([self.n_basis, cfg.radial_hidden, self.tp_atoms.weight_numel], torch.nn.functional.silu)
        self.mix1 = o3.Linear(mid1, self.gate1.irreps_in)
        self.self1 = o3.Linear(irreps_vn, self.gate1.irreps_in)
        irreps_mid = self.gate1.irreps_out
        self.gate2 = gate_for(f"{cfg.embed_dim}x0e")
        mid2, ins2 = tensor_product_paths(irreps_mid, irreps_sh, self.gate2.irreps_in)
        self.tp_vn = o3.TensorProduct(irreps_mid, irreps_sh, mid2, ins2, shared_weights=False, internal_weights=False)
        self.radial2 = enn.FullyConnectedNet([self.n_basis, cfg.radial_hidden, self.tp_vn.weight_numel], torch.nn.functional.silu)
        self.mix2 = o3.Linear(mid2, self.gate2.irreps_in)
        self.self2 = o3.Linear(irreps_mid, self.gate2.irreps_in)
        self.out = o3.Linear(self.gate2.irreps_out, "1x0e")
        self.freq_scale = cfg.vvn_freq_scale

    def _basis(self, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = torch.linalg.norm(vec, dim=-1)
        basis = soft_one_hot_linspace(length, 0.0, self.range, self.n_basis, basis="gaussian", cutoff=False)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        return basis, sh

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> list[torch.Tensor]:
        out = []
        for g in range(batch.n_graphs):
            start, m = int(batch.atom_offset[g]), int(batch.n_atoms[g])
            pos, lattice = batch.positions[start : start + m], batch.lattices[g]
            vn_pos = vvn_positions(lattice, m)
            atom_src, atom_vn, atom_vec, vn_vec = vvn_edges(pos, lattice, vn_pos)
            n_vn = vn_pos.shape[0]
            basis, sh = self._basis(atom_vec)
            msg = self.tp_atoms(h[start + atom_src], sh, self.radial1(basis))
            agg = torch.zeros(n_vn, msg.shape[1], dtype=h.dtype, device=h.device).index_add_(0, atom_vn, msg) / m
            state = self.init_state.to(h.dtype).expand(n_vn, -1)
            x = self.gate1(self.mix1(agg) + self.self1(state))
            # virtual → virtual (not to real atoms), all ordered pairs k ≠ l
            k_idx, l_idx = torch.meshgrid(torch.arange(n_vn), torch.arange(n_vn), indexing="ij")
            keep = (k_idx != l_idx).reshape(-1)
            k_idx, l_idx = k_idx.reshape(-1)[keep].to(h.device), l_idx.reshape(-1)[keep].to(h.device)
            basis, sh = self._basis(vn_vec[k_idx, l_idx])
            msg = self.tp_vn(x[l_idx], sh, self.radial2(basis))
            agg = torch.zeros(n_vn, msg.shape[1], dtype=h.dtype, device=h.device).index_add_(0, k_idx, msg)
            agg = agg / max(1, n_vn - 1)
            x = self.gate2(self.mix2(agg) + self.self2(x))
            freqs = self.out(x)[:, 0] * self.freq_scale
            out.append(torch.sort(freqs).values)
        return out


class VGNN(torch.nn.Module):
    """Virtual node graph neural network for phonons (kind ``kmvn``, ``mvn`` or ``vvn``)."""

    def __init__(self, config: VGNNConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = config or VGNNConfig()
        if overrides:
            cfg = VGNNConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        self.backbone = Backbone(cfg)
        if cfg.kind == "vvn":
            self.readout = VVNReadout(cfg, self.backbone.irreps_out, self.backbone.irreps_sh)
        else:
            self.readout = BondReadout(cfg, self.backbone.irreps_out, self.backbone.irreps_sh)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def supports_bands(self) -> bool:
        return self.kind == "kmvn"

    def bond_blocks(self, batch: GraphBatch) -> torch.Tensor:
        """Off-site Φ_ij(T) of every bond in the batch (E, 3, 3), eV/Å², pair-symmetrised."""
        if self.kind == "vvn":
            raise ValueError("VVN predicts frequencies directly; it has no force constants")
        sh, length = self.backbone.edge_features(batch)
        h = self.backbone(batch, sh, length)
        return self.readout(h, batch, sh, length)

    def force_constants(self, batch: GraphBatch) -> list[ForceConstants]:
        """One :class:`ForceConstants` per crystal (float64), with the acoustic sum rule imposed.

        For ``mvn`` the blocks are summed per ordered atom pair (its virtual nodes), with
        T = 0: a Γ-only set of force constants.
        """
        return self.assemble(batch, self.bond_blocks(batch))

    def assemble(self, batch: GraphBatch, blocks: torch.Tensor) -> list[ForceConstants]:
        """Per-crystal :class:`ForceConstants` from the bond blocks of a batch (see above)."""
        # Sums and the sum rule in float64: in float32 their round-off, under the √, would
        # leave the acoustic modes at ~0.1 cm⁻¹ instead of ~1e-6 (and the MVN pair sums of
        # (i, j) and (j, i) would differ in the last bit, making D(Γ) slightly asymmetric).
        blocks = blocks.to(torch.float64)
        if self.kind == "mvn":
            # MVN virtual nodes: one per ordered atom pair, the linear sum of its bonds.
            pair_blocks = torch.zeros(batch.pairs.shape[0], 3, 3, dtype=blocks.dtype, device=blocks.device)
            blocks = pair_blocks.index_add_(0, batch.edge_pair, blocks)
            src, dst = batch.pairs[:, 0], batch.pairs[:, 1]
            shift = batch.pairs.new_zeros(batch.pairs.shape[0], 3)
            counts = batch.n_pairs
        else:
            src, dst, shift, counts = batch.edge_src, batch.edge_dst, batch.edge_shift, batch.n_edges
        masses = batch.masses.to(torch.float64)
        out = []
        start = 0
        for g in range(batch.n_graphs):
            a0, m, n = int(batch.atom_offset[g]), int(batch.n_atoms[g]), int(counts[g])
            sl = slice(start, start + n)
            start += n
            offsite = blocks[sl]
            if self.config.full_blocks:
                offsite = divergence_free_antisymmetric(offsite, src[sl] - a0, dst[sl] - a0, m)
            out.append(with_onsite(masses[a0 : a0 + m], src[sl] - a0, dst[sl] - a0, shift[sl], offsite))
        return out

    def gamma_frequencies(self, batch: GraphBatch) -> list[torch.Tensor]:
        """Signed Γ frequencies (cm⁻¹), sorted, one (3m,) tensor per crystal."""
        if self.kind == "vvn":
            sh, length = self.backbone.edge_features(batch)
            return self.readout(self.backbone(batch, sh, length), batch)
        return gamma_frequencies(self.force_constants(batch))

    def band_frequencies(
        self, batch: GraphBatch, qpoints: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Signed frequencies (cm⁻¹), (n_q, 3m) per crystal at fractional ``qpoints``."""
        if not self.supports_bands:
            raise ValueError(
                f"a {self.kind.upper()} model predicts Γ frequencies only; use a k-MVN model "
                "for band structures"
            )
        return band_frequencies(self.force_constants(batch), qpoints)
