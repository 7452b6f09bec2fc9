"""The VGNN models: an e3nn backbone on the real graph and virtual-node read-outs.

* ``kmvn`` — every bond's virtual node yields a 3×3 block Φ_ij(T) (irreps 0e + 2e, plus 1e with
  ``full_blocks``), paired so that Φ_ji(−T) = Φ_ij(T)ᵀ, with the on-site block from the acoustic
  sum rule: D(q) at any q, Hermitian and with exact acoustic modes for any weights.
* ``mvn`` — the same per-bond blocks summed into one block per ordered atom pair (the MVN
  virtual node), giving D(Γ) only. The sum is linear, so a supercell's D(Γ) is exactly the
  primitive cell's D at the commensurate q-points.
* ``vvn`` — :class:`VVN`: 3m virtual nodes on the cell diagonal, one frequency each (the
  paper's weakest variant, kept for comparison; it has no force constants and no exact
  acoustic sum rule).

:class:`VGNN` (k-MVN and MVN) and :class:`~vgnn_core.nn.ensemble.VGNNEnsemble` share what
follows the bond blocks through :class:`ForceConstantModel`; :func:`make_model` builds any kind
from its :class:`VGNNConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from e3nn import o3

from ..crystal.graph import GraphBatch
from ..phonons.dynamical_matrix import band_frequencies, gamma_frequencies
from ..phonons.force_constants import ForceConstants
from .config import VGNNConfig
from .convolution import Interaction
from .orbits import AtomRotations
from .radial import BesselBasis, polynomial_envelope
from .readouts import ASSEMBLIES, BondReadout, VVNReadout


def _config(config: VGNNConfig | None, overrides: dict[str, Any]) -> VGNNConfig:
    cfg = config or VGNNConfig()
    return VGNNConfig.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg


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
        """Atom features from message passing over the edges shorter than ``r_max``; with
        ``batch.orbits``, computed for one atom of each orbit and rotated to the others."""
        near = length < self.radial_basis.r_max
        if batch.orbits is None:
            return self._layers(batch.numbers, batch.masses, batch.edge_src, batch.edge_dst, near, sh, length)
        rotations = AtomRotations.of(batch.orbits, sh.dtype)
        reps = rotations.representatives
        near &= rotations.position[batch.edge_src] >= 0  # the messages the representatives receive
        h = self._layers(batch.numbers[reps], batch.masses[reps], rotations.position[batch.edge_src],
                         batch.edge_dst, near, sh, length, rotations)
        return rotations.expand(h, self.irreps_out)

    def _layers(self, numbers, masses, src, dst, near, sh, length, rotations: AtomRotations | None = None):
        near = torch.nonzero(near)[:, 0]
        src, dst, sh, radial = src[near], dst[near], sh[near], self.radial_basis(length[near])
        h = self.encoder(numbers, masses)
        for layer in self.layers:  # with orbits: the representatives, and every atom as their rotations
            h = layer(h, src, dst, sh, radial, None if rotations is None else rotations.expand(h, layer.irreps_in))
        return h


@dataclass
class AtomFeatures:
    """One network's backbone output for a batch: the atom features and the edge terms
    (spherical harmonics, lengths in Å) they were computed from. Another read-out of the same
    backbone (the Born heads) can take them instead of running the backbone again."""

    h: torch.Tensor  # (N, irreps_out dim)
    sh: torch.Tensor  # (E, irreps_sh dim)
    length: torch.Tensor  # (E,)


class ForceConstantModel(torch.nn.Module):
    """What every force-constant model (one network or an ensemble) does after its bond blocks.

    Subclasses set ``config`` and implement :meth:`bond_blocks`; the kind's assembly
    (:data:`~vgnn_core.nn.readouts.ASSEMBLIES`) turns blocks into force constants.
    """

    config: VGNNConfig
    has_force_constants = True

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def supports_bands(self) -> bool:
        """Force constants with their translations T: D(q) at any q (k-MVN)."""
        return self.kind == "kmvn"

    def bond_blocks(self, batch: GraphBatch, features=None) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, batch: GraphBatch):
        """The backbone's output for ``batch`` (see :meth:`bond_blocks`'s ``features``)."""
        raise NotImplementedError

    def member_bond_blocks(self, batch: GraphBatch, features=None) -> torch.Tensor:
        """Each network's Φ_ij(T) for every bond, (n_networks, E, 3, 3) eV/Å² (one network: 1)."""
        blocks = self.bond_blocks(batch) if features is None else self.bond_blocks(batch, features)
        return blocks[None]

    def force_constants_and_agreement(self, batch: GraphBatch, features=None, member_blocks: torch.Tensor | None = None,
                                      rotations=None) -> tuple[list[ForceConstants], list]:
        """Force constants and, per crystal, how far an ensemble's members agree (``None`` for
        one network). ``member_blocks`` (:meth:`member_bond_blocks` of this batch, from this
        model or another that runs the same networks) skips the networks; ``rotations``: as for
        :meth:`~vgnn_core.nn.ensemble.VGNNEnsemble.force_constants_and_agreement` (unused here)."""
        blocks = self.member_bond_blocks(batch, features) if member_blocks is None else member_blocks
        return self.assemble(batch, blocks.mean(0)), [None] * batch.n_graphs

    def force_constants(self, batch: GraphBatch, features=None) -> list[ForceConstants]:
        """One :class:`ForceConstants` per crystal (float64), with the acoustic sum rule imposed.

        For ``mvn`` the blocks are summed per ordered atom pair (its virtual nodes), with
        T = 0: a Γ-only set of force constants. ``features`` (from :meth:`encode` on the same
        batch) skips the backbone.
        """
        blocks = self.bond_blocks(batch) if features is None else self.bond_blocks(batch, features)
        return self.assemble(batch, blocks)

    def assemble(self, batch: GraphBatch, blocks: torch.Tensor) -> list[ForceConstants]:
        """Per-crystal :class:`ForceConstants` from the bond blocks (E, 3, 3) of a batch."""
        return [each[0] for each in self.assemble_members(batch, blocks[None])]

    def assemble_members(self, batch: GraphBatch, blocks: torch.Tensor) -> list[list[ForceConstants]]:
        """Per crystal, the :class:`ForceConstants` of each of K networks' bond blocks
        (K, E, 3, 3) of a batch; a crystal's K share their bonds (and the antisymmetric parts'
        projection: one Laplacian's pseudo-inverse)."""
        # Sums and the sum rule in float64: in float32 their round-off, under the √, would
        # leave the acoustic modes at ~0.1 cm⁻¹ instead of ~1e-6 (and the MVN pair sums of
        # (i, j) and (j, i) would differ in the last bit, making D(Γ) slightly asymmetric).
        weights = None
        if self.config.full_blocks:  # each bond's smooth cutoff envelope weighs the antisymmetric projection
            r_bond = self.config.r_bond or self.config.r_max
            length = torch.linalg.norm(batch.edge_vec.to(torch.float64), dim=1)
            weights = polynomial_envelope(length, r_bond) * (length < r_bond)
        return ASSEMBLIES[self.kind](batch, blocks.to(torch.float64), weights)

    def gamma_frequencies(self, batch: GraphBatch) -> list[torch.Tensor]:
        """Signed Γ frequencies (cm⁻¹), sorted, one (3m,) tensor per crystal."""
        return gamma_frequencies(self.force_constants(batch))

    def band_frequencies(self, batch: GraphBatch, qpoints: list[torch.Tensor]) -> list[torch.Tensor]:
        """Signed frequencies (cm⁻¹), (n_q, 3m) per crystal at fractional ``qpoints``."""
        if not self.supports_bands:
            raise ValueError(
                f"a {self.kind.upper()} model predicts Γ frequencies only; use a k-MVN model "
                "for band structures"
            )
        return band_frequencies(self.force_constants(batch), qpoints)


class VGNN(ForceConstantModel):
    """Virtual node graph neural network for force constants (kind ``kmvn`` or ``mvn``)."""

    def __init__(self, config: VGNNConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = _config(config, overrides)
        if cfg.kind not in ASSEMBLIES:
            raise ValueError(f"VGNN predicts force constants (kmvn, mvn); for {cfg.kind!r} use make_model()")
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.readout = BondReadout(cfg, self.backbone.irreps_out, self.backbone.irreps_sh)

    def read_as(self, kind: str) -> VGNN:
        """These networks read out as ``kind`` (``kmvn`` or ``mvn``): a model whose backbone and
        read-out are this one's own modules, shared, not copied (the shipped MVN is the k-MVN's
        networks with their blocks summed per atom pair). Training either trains both."""
        if kind not in ASSEMBLIES:
            raise ValueError(f"VGNN predicts force constants (kmvn, mvn), not {kind!r}")
        twin = VGNN.__new__(VGNN)
        torch.nn.Module.__init__(twin)
        twin.config = replace(self.config, kind=kind)
        twin.backbone, twin.readout = self.backbone, self.readout
        return twin

    def encode(self, batch: GraphBatch) -> AtomFeatures:
        """The backbone's atom features of ``batch``."""
        sh, length = self.backbone.edge_features(batch)
        return AtomFeatures(self.backbone(batch, sh, length), sh, length)

    def bond_blocks(self, batch: GraphBatch, features: AtomFeatures | None = None) -> torch.Tensor:
        """Off-site Φ_ij(T) of every bond in the batch (E, 3, 3), eV/Å², pair-symmetrised;
        ``features`` (:meth:`encode` of this batch) skips the backbone."""
        f = self.encode(batch) if features is None else features
        return self.readout(f.h, batch, f.sh, f.length)


class VVN(torch.nn.Module):
    """The VVN variant: Γ frequencies straight from 3m virtual nodes (no force constants)."""

    has_force_constants = False
    supports_bands = False

    def __init__(self, config: VGNNConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = _config(config, {"kind": "vvn", **overrides})
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.readout = VVNReadout(cfg, self.backbone.irreps_out, self.backbone.irreps_sh)

    @property
    def kind(self) -> str:
        return "vvn"

    def gamma_frequencies(self, batch: GraphBatch) -> list[torch.Tensor]:
        """Signed Γ frequencies (cm⁻¹), sorted, one (3m,) tensor per crystal."""
        sh, length = self.backbone.edge_features(batch)
        return self.readout(self.backbone(batch, sh, length), batch)

    def band_frequencies(self, batch: GraphBatch, qpoints: list[torch.Tensor]) -> list[torch.Tensor]:
        raise ValueError("a VVN model predicts Γ frequencies only; use a k-MVN model for band structures")

    def force_constants(self, batch: GraphBatch) -> list[ForceConstants]:
        raise ValueError("VVN predicts frequencies directly; it has no force constants")


#: Any trained model: a force-constant model (one network or an ensemble) or a VVN.
Model = ForceConstantModel | VVN


def make_model(config: VGNNConfig | None = None, **overrides: Any) -> Model:
    """The model of ``config.kind``: :class:`VGNN` for ``kmvn`` / ``mvn``, :class:`VVN` for ``vvn``."""
    cfg = _config(config, overrides)
    return VVN(cfg) if cfg.kind == "vvn" else VGNN(cfg)
