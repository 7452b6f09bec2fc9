"""Dielectric heads on the VGNN backbone: Born effective charges Z* and the dielectric tensor ε∞.

Both are read out of the backbone's equivariant atom features (irreps ``0e``, ``1o``, ``2e``):

* **Z\\*** — a general 3×3 tensor per atom, a polar ⊗ polar rank-2 tensor, i.e. the irreps
  ``0e + 1e + 2e`` (trace, antisymmetric part, symmetric traceless part). ``1e`` cannot come
  from a linear map of ``0e + 1o + 2e`` features, so the heads first form the features' tensor
  square (``1o ⊗ 1o`` and ``2e ⊗ 2e`` contain ``1e``). The mean over each crystal's atoms is
  then subtracted, so **Σ_i Z*_i = 0 exactly** for any weights (the acoustic sum rule of the
  charges: a rigid translation carries no polarisation). A one-atom cell has Z* = 0.
* **ε∞** — per crystal ``ε∞ = 1 + exp(S)`` with S a symmetric ``0e + 2e`` tensor pooled (mean)
  over the crystal's atoms: symmetric with every eigenvalue above 1 for any weights (an
  electronic dielectric constant is ≥ 1), and equivariant since exp(R S Rᵀ) = R exp(S) Rᵀ.

Both heads give each irrep output a mix of several candidate channels whose weights an MLP of
the atom's invariant (``0e``) features sets: non-linear in the invariants, exactly equivariant.
A bond term adds, for every neighbour j of atom i within ``r_max``, ``a_ij 1 + b_ij (r̂r̂ᵀ − 1/3)``
to Z*_i (and c, d likewise to S) with a, b, c, d from an MLP of both atoms' invariants and the
bond length (a bond-polarisability picture; smooth at the cutoff).

Units: Z* in elementary charges e (``born[i, α, β] = ∂P_α/∂u_iβ``, phonopy's order), ε∞
dimensionless. The heads read a backbone's atom features (:func:`backbone_features`: every member
of an ensemble, concatenated): a k-MVN's own, frozen, or copies of the heads' own fine-tuned with
them (:class:`BornBackbones`); :class:`BornModel` wraps backbone + heads for prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from e3nn import o3

from ..crystal.graph import GraphBatch
from .cartesian import GENERAL_RANK2, SYMMETRIC_RANK2, cartesian_basis
from .convolution import Interaction
from .orbits import AtomRotations
from .radial import BesselBasis, polynomial_envelope


@dataclass
class BornOutput:
    """What the heads predict for a batch of crystals (torch tensors, float of the heads)."""

    born: torch.Tensor  # (N, 3, 3) e, neutral per crystal
    log_epsilon: torch.Tensor  # (B, 3, 3) S, with ε∞ = 1 + exp(S)
    epsilon: torch.Tensor  # (B, 3, 3) ε∞


def atom_crystal_index(n_atoms: torch.Tensor) -> torch.Tensor:
    """Crystal index of every atom (N,) from the atom counts (B,)."""
    return torch.repeat_interleave(torch.arange(len(n_atoms), device=n_atoms.device), n_atoms)


def crystal_sum(x: torch.Tensor, index: torch.Tensor, n_crystals: int) -> torch.Tensor:
    """Sum over each crystal's atoms of per-atom ``x`` (N, ...) → (B, ...)."""
    flat = x.reshape(x.shape[0], -1)
    total = torch.zeros(n_crystals, flat.shape[1], dtype=x.dtype, device=x.device).index_add_(0, index, flat)
    return total.reshape(n_crystals, *x.shape[1:])


def crystal_mean(x: torch.Tensor, index: torch.Tensor, n_crystals: int) -> torch.Tensor:
    """Mean over each crystal's atoms of per-atom ``x`` (N, ...) → (B, ...)."""
    count = crystal_sum(torch.ones_like(index, dtype=x.dtype), index, n_crystals)
    return crystal_sum(x, index, n_crystals) / count.clamp(min=1).reshape(-1, *([1] * (x.dim() - 1)))


def _symmetric_apply(a: torch.Tensor, fn) -> torch.Tensor:
    """f(A) of symmetric matrices (..., 3, 3): ``fn`` on their eigenvalues; exactly symmetric
    (V f(Λ) Vᵀ is only to round-off, e.g. for the degenerate eigenvalues of a cubic crystal's ε∞).
    A matrix with a non-finite entry (exp(S) overflowing float32 far outside the training range) gives
    NaN, not a failed batch: :func:`~vgnn_core.predict.nac_skip_reason` then leaves NAC out for it."""
    finite = torch.isfinite(a).flatten(-2).all(-1)[..., None, None]
    lam, vec = torch.linalg.eigh(torch.where(finite, a, torch.zeros_like(a)))
    out = (vec * fn(lam)[..., None, :]) @ vec.transpose(-1, -2)
    return torch.where(finite, 0.5 * (out + out.transpose(-1, -2)), torch.full_like(out, float("nan")))


def symmetric_expm(s: torch.Tensor) -> torch.Tensor:
    """exp(S) of symmetric matrices (..., 3, 3) through their eigen-decomposition."""
    return _symmetric_apply(s, torch.exp)


def symmetric_logm(a: np.ndarray) -> np.ndarray:
    """log(A) of symmetric positive-definite matrices (..., 3, 3) (numpy)."""
    a = 0.5 * (a + np.swapaxes(a, -1, -2))
    lam, vec = np.linalg.eigh(a)
    if np.any(lam <= 0):
        raise ValueError("matrix logarithm of a matrix that is not positive definite")
    return (vec * np.log(lam)[..., None, :]) @ np.swapaxes(vec, -1, -2)


class _MixedReadout(torch.nn.Module):
    """``n_mix`` candidate channels per output irrep, mixed with weights from an MLP of the
    invariant features: out_l = Σ_c w_lc(scalars) · x_lc (equivariant, non-linear)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, n_scalars: int, n_mix: int, hidden: int):
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        self.n_mix = n_mix
        candidates = o3.Irreps([(n_mix, ir) for _, ir in self.irreps_out])
        self.linear = o3.Linear(irreps_in, candidates)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(n_scalars, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, n_mix * len(self.irreps_out)))

    def forward(self, features: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        cand = self.linear(features)  # (N, Σ n_mix (2l+1))
        weights = self.mlp(scalars).reshape(-1, len(self.irreps_out), self.n_mix) / self.n_mix
        out, start = [], 0
        for k, (_, ir) in enumerate(self.irreps_out):
            block = cand[:, start : start + self.n_mix * ir.dim].reshape(-1, self.n_mix, ir.dim)
            out.append(torch.einsum("nc,ncd->nd", weights[:, k], block))
            start += self.n_mix * ir.dim
        return torch.cat(out, dim=1)


class BornHeads(torch.nn.Module):
    """Z* (per atom) and ε∞ (per crystal) from equivariant atom features ``irreps_in``.

    ``mid_irreps``: a linear compression of the features before their tensor square;
    ``square_irreps``: the channels kept from the square; ``n_mix`` / ``hidden``: the candidate
    channels per output irrep and the width of the invariant MLP that mixes them; ``r_max`` (Å),
    ``n_radial``, ``bond_hidden``: cutoff, Bessel basis and MLP width of the bond term
    (``bond_hidden=0``: no bond term, atom features only); ``interactions``: equivariant
    message-passing layers of the heads' own on the compressed features, over the bonds within
    ``r_max`` (0: none; ``interaction_hidden`` the width of their radial MLPs, messages summed
    and divided by ``avg_num_neighbors``), so a charge can depend on its neighbours' features
    beyond what the frozen backbone passed on. ``crystal_context``: the MLPs that mix the
    readouts' channels also read the crystal's mean invariants (a charge can depend on the whole
    crystal, e.g. its gap, beyond the atom's neighbourhood). ``neutrality``: how the crystal's
    net charge Σ_i z_i is taken out — ``"uniform"`` subtracts the mean from every atom,
    ``"weighted"`` gives atom i the share w_i / Σ_j w_j with w_i > 0 from an MLP of its
    invariants (charge equilibration: atoms whose charge is less certain absorb more); both
    make Σ_i Z*_i = 0 exact. ``hyper`` holds these for checkpoints.
    """

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        mid_irreps: str = "32x0e + 16x1o + 8x2e",
        square_irreps: str = "32x0e + 8x1e + 16x2e",
        n_mix: int = 8,
        hidden: int = 64,
        r_max: float = 4.0,
        n_radial: int = 8,
        bond_hidden: int = 64,
        interactions: int = 0,
        interaction_hidden: int = 64,
        avg_num_neighbors: float = 10.0,
        crystal_context: bool = False,
        neutrality: str = "uniform",
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.hyper = {"irreps_in": str(self.irreps_in), "mid_irreps": mid_irreps, "square_irreps": square_irreps,
                      "n_mix": n_mix, "hidden": hidden, "r_max": r_max, "n_radial": n_radial,
                      "bond_hidden": bond_hidden}
        if interactions:  # only then: heads saved without layers stay readable by older code
            self.hyper.update(interactions=interactions, interaction_hidden=interaction_hidden,
                              avg_num_neighbors=avg_num_neighbors)
        if neutrality not in ("uniform", "weighted"):
            raise ValueError(f"neutrality must be 'uniform' or 'weighted', not {neutrality!r}")
        for key, value, default in (("crystal_context", crystal_context, False), ("neutrality", neutrality, "uniform")):
            if value != default:  # likewise: only then, so older heads keep their hyper-parameters
                self.hyper[key] = value
        self.crystal_context = bool(crystal_context)
        mid = o3.Irreps(mid_irreps)
        self.pre = o3.Linear(self.irreps_in, mid)
        self.r_max = float(r_max)
        self.radial = BesselBasis(r_max, n_radial)
        self.irreps_sh = o3.Irreps.spherical_harmonics(2)
        self.convolutions = torch.nn.ModuleList(
            Interaction(mid, mid, self.irreps_sh, n_radial, interaction_hidden, avg_num_neighbors)
            for _ in range(interactions))
        for layer in self.convolutions:
            if layer.irreps_out != mid:
                raise ValueError(f"with interactions, mid_irreps must list scalars first, then by l, each once "
                                 f"(got {mid}; the layers give {layer.irreps_out})")
        self.square = o3.TensorSquare(mid, o3.Irreps(square_irreps))
        joined = mid + o3.Irreps(square_irreps)
        n_scalars = sum(mul for mul, ir in joined if ir.l == 0 and ir.p == 1)
        self._scalar_slices = [sl for (mul, ir), sl in zip(joined, joined.slices()) if ir.l == 0 and ir.p == 1]
        self.born_tensor = cartesian_basis(GENERAL_RANK2).irreps
        self.eps_tensor = cartesian_basis(SYMMETRIC_RANK2).irreps
        n_mixing = 2 * n_scalars if crystal_context else n_scalars
        self.born_readout = _MixedReadout(joined, self.born_tensor, n_mixing, n_mix, hidden)
        self.eps_readout = _MixedReadout(joined, self.eps_tensor, n_mixing, n_mix, hidden)
        self.share_mlp = (torch.nn.Sequential(torch.nn.Linear(n_scalars, hidden), torch.nn.SiLU(),
                                              torch.nn.Linear(hidden, 1))
                          if neutrality == "weighted" else None)
        if bond_hidden > 0:
            self.bond_mlp = torch.nn.Sequential(
                torch.nn.Linear(2 * n_scalars + n_radial, bond_hidden), torch.nn.SiLU(),
                torch.nn.Linear(bond_hidden, bond_hidden), torch.nn.SiLU(), torch.nn.Linear(bond_hidden, 4))
        else:
            self.bond_mlp = None
        # ε∞ − 1 ≈ e^{offset} for a crystal whose pooled S vanishes: start near a typical value
        self.log_eps_offset = torch.nn.Parameter(torch.tensor(1.2))
        self.register_buffer("born_basis", cartesian_basis(GENERAL_RANK2).to_cartesian.clone(), persistent=False)
        self.register_buffer("eps_basis", cartesian_basis(SYMMETRIC_RANK2).to_cartesian.clone(), persistent=False)

    def forward(self, features: torch.Tensor, n_atoms: torch.Tensor,
                bonds: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                rotations: AtomRotations | None = None) -> BornOutput:
        """Heads on atom ``features`` (N, irreps_in.dim) of crystals with ``n_atoms`` (B,).

        ``bonds`` = (src, dst, vec): global atom indices (E,) and bond vectors (E, 3) in Å of
        the crystal graph (:class:`~vgnn_core.crystal.graph.GraphBatch` ``edge_*``); bonds
        from ``r_max`` on are ignored. Required when the heads have a bond term. With
        ``rotations`` (the batch's orbits) the heads run on one atom of each orbit, and the other
        atoms' Z* and S are those rotated, R Z* Rᵀ.
        """
        x = self.pre(features if rotations is None else features[rotations.representatives])
        near = None if bonds is None else self._near_bonds(*bonds, dtype=x.dtype, rotations=rotations)
        if len(self.convolutions):
            if near is None:
                raise ValueError("these Born heads pass messages over bonds: pass the crystal graph's bonds")
            src, dst, vec = near
            centre = src if rotations is None else rotations.position[src]
            sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
            radial = self.radial(torch.linalg.norm(vec, dim=1))
            for layer in self.convolutions:
                x = layer(x, centre, dst, sh, radial, None if rotations is None else rotations.expand(x, layer.irreps_in))
        joined = torch.cat([x, self.square(x)], dim=1)
        scalars = torch.cat([joined[:, sl] for sl in self._scalar_slices], dim=1)  # invariant: the same on an orbit
        index = atom_crystal_index(n_atoms)
        n_crystals = len(n_atoms)
        mixing = scalars
        if rotations is not None:
            scalars = scalars[rotations.source]  # every atom's, from here on
        if self.crystal_context:
            context = crystal_mean(scalars, index, n_crystals)[index]
            mixing = torch.cat([mixing, context if rotations is None else context[rotations.representatives]], dim=1)
        z = torch.einsum("nk,kij->nij", self.born_readout(joined, mixing), self.born_basis.to(x.dtype))
        s_atoms = torch.einsum("nk,kij->nij", self.eps_readout(joined, mixing), self.eps_basis.to(x.dtype))
        if self.bond_mlp is not None:
            if near is None:
                raise ValueError("these Born heads have a bond term: pass the crystal graph's bonds")
            dz, ds = self._bond_terms(scalars, *near)
            if rotations is not None:
                dz, ds = dz[rotations.representatives], ds[rotations.representatives]
            z, s_atoms = z + dz, s_atoms + ds
        if rotations is not None:
            z, s_atoms = rotations.expand_tensors(z), rotations.expand_tensors(s_atoms)
        if self.share_mlp is None:
            born = z - crystal_mean(z, index, n_crystals)[index]
        else:  # atom i takes w_i / Σ_j w_j of the net charge: Σ_i Z*_i = 0 still exactly
            w = torch.nn.functional.softplus(self.share_mlp(scalars))[:, 0] + 1e-3
            share = w / crystal_sum(w, index, n_crystals)[index]
            born = z - share[:, None, None] * crystal_sum(z, index, n_crystals)[index]
        s = crystal_mean(s_atoms, index, n_crystals)
        s = 0.5 * (s + s.transpose(-1, -2)) + self.log_eps_offset * torch.eye(3, dtype=s.dtype, device=s.device)
        eye = torch.eye(3, dtype=s.dtype, device=s.device)
        return BornOutput(born=born, log_epsilon=s, epsilon=eye + symmetric_expm(s))

    def _near_bonds(self, src: torch.Tensor, dst: torch.Tensor, vec: torch.Tensor, dtype: torch.dtype,
                    rotations: AtomRotations | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The bonds shorter than ``r_max`` (src, dst, vec in ``dtype``); with ``rotations``, those
        of the orbits' representative atoms only."""
        vec = vec.to(dtype)
        near = torch.linalg.norm(vec, dim=1) < self.r_max
        if rotations is not None:
            near &= rotations.position[src] >= 0
        return src[near], dst[near], vec[near]

    def _bond_terms(self, scalars: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                    vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom sums over the bonds within ``r_max`` (:meth:`_near_bonds`) of a·1 + b·(r̂r̂ᵀ − 1/3)
        (Z*) and c·1 + d·(r̂r̂ᵀ − 1/3) (S)."""
        length = torch.linalg.norm(vec, dim=1)
        coef = self.bond_mlp(torch.cat([scalars[src], scalars[dst], self.radial(length)], dim=1))
        coef = coef * polynomial_envelope(length, self.r_max)[:, None]  # continuous as a bond crosses r_max
        unit = vec / length.clamp(min=1e-9)[:, None]
        eye = torch.eye(3, dtype=vec.dtype, device=vec.device)
        aniso = unit[:, :, None] * unit[:, None, :] - eye / 3.0
        per_bond_z = coef[:, 0, None, None] * eye + coef[:, 1, None, None] * aniso
        per_bond_s = coef[:, 2, None, None] * eye + coef[:, 3, None, None] * aniso
        n = scalars.shape[0]
        dz = torch.zeros(n, 9, dtype=vec.dtype, device=vec.device).index_add_(0, src, per_bond_z.reshape(-1, 9))
        ds = torch.zeros(n, 9, dtype=vec.dtype, device=vec.device).index_add_(0, src, per_bond_s.reshape(-1, 9))
        scale = 1.0 / 10.0  # ~ neighbours within r_max: keeps the sums O(1) at initialisation
        return scale * dz.reshape(n, 3, 3), scale * ds.reshape(n, 3, 3)


class BornHeadsEnsemble(torch.nn.Module):
    """Several :class:`BornHeads` on the same features (e.g. trained with different seeds), averaged:
    Z* is the mean of the members' (still neutral per crystal) and ε∞ the mean of theirs (still
    symmetric with every eigenvalue above 1: a convex combination of such matrices)."""

    def __init__(self, members: Sequence[BornHeads | BornHeadsEnsemble]) -> None:
        super().__init__()
        # an average of averages weighs every set of heads once
        members = [leaf for m in members for leaf in (m.members if isinstance(m, BornHeadsEnsemble) else [m])]
        if not members:
            raise ValueError("BornHeadsEnsemble needs at least one set of heads")
        if len({str(m.irreps_in) for m in members}) != 1:
            raise ValueError("the averaged heads must read the same features")
        self.members = torch.nn.ModuleList(members)

    @property
    def irreps_in(self) -> o3.Irreps:
        return self.members[0].irreps_in

    @property
    def hyper(self) -> dict:
        return {"members": [m.hyper for m in self.members]}

    def forward(self, features: torch.Tensor, n_atoms: torch.Tensor,
                bonds: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                rotations: AtomRotations | None = None) -> BornOutput:
        outs = [m(features, n_atoms, bonds, rotations) for m in self.members]
        born = torch.stack([o.born for o in outs]).mean(0)
        # ε∞ − 1 averaged as the members' exp(S), not as ε∞ − 1 (no cancellation when exp(S) is small)
        excess = torch.stack([symmetric_expm(o.log_epsilon) for o in outs]).mean(0)
        log_epsilon = _symmetric_apply(excess, lambda lam: torch.log(lam.clamp_min(torch.finfo(lam.dtype).tiny)))
        eye = torch.eye(3, dtype=excess.dtype, device=excess.device)
        return BornOutput(born=born, log_epsilon=log_epsilon, epsilon=eye + excess)


def networks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The networks of ``model``: an ensemble's members, or the one network itself."""
    return list(model.members) if hasattr(model, "members") else [model]


def backbone_features(model: torch.nn.Module, batch: GraphBatch) -> torch.Tensor:
    """Atom features (N, Σ dims) of a VGNN's backbone, or every ensemble member's concatenated."""
    out = []
    for member in networks(model):
        sh, length = member.backbone.edge_features(batch)
        out.append(member.backbone(batch, sh, length))
    return torch.cat(out, dim=1)


def backbone_irreps(model: torch.nn.Module) -> o3.Irreps:
    """The irreps of :func:`backbone_features` of ``model``."""
    return sum((m.backbone.irreps_out for m in networks(model)), o3.Irreps(""))


def member_digest(network: torch.nn.Module) -> str:
    """sha256 of one network's backbone weights (names, shapes and float32 values)."""
    import hashlib

    h = hashlib.sha256()
    for name, value in sorted(network.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def select_members(model: torch.nn.Module, digests: list[str]) -> torch.nn.Module:
    """The members of ``model`` (an ensemble) whose backbones have ``digests``, in that order, as an
    ensemble; heads trained on some members' features stay valid when members are added."""
    from .ensemble import VGNNEnsemble

    by_digest = {member_digest(m): m for m in networks(model)}
    missing = [d[:12] for d in digests if d not in by_digest]
    if missing:
        raise ValueError(f"the model lacks the backbone member(s) {missing} the Born heads were trained on")
    chosen = [by_digest[d] for d in digests]
    return chosen[0] if len(chosen) == 1 else VGNNEnsemble(chosen)


def _batch_in(batch: GraphBatch, dtype: torch.dtype) -> GraphBatch:
    """``batch`` with its float tensors in ``dtype`` (the heads' own backbones may differ in
    precision from the force-constant model the batch was collated for)."""
    if batch.edge_vec.dtype == dtype:
        return batch
    return dataclasses.replace(batch, masses=batch.masses.to(dtype), positions=batch.positions.to(dtype),
                               lattices=batch.lattices.to(dtype), edge_vec=batch.edge_vec.to(dtype))


class OwnBackbone(torch.nn.Module):
    """One VGNN :class:`~vgnn_core.nn.model.Backbone` standing alone, with the ``config`` it is
    built from: the Born model's own copy of a k-MVN member's backbone, fine-tuned for Z* and ε∞."""

    def __init__(self, config) -> None:
        from .model import Backbone

        super().__init__()
        self.config = config
        self.backbone = Backbone(config)


class BornBackbones(torch.nn.Module):
    """The Born model's own backbones, read like an ensemble's members (:func:`backbone_features`).

    Built as copies of a k-MVN's members (:meth:`copy_of`) and fine-tuned together with the
    heads, they no longer give the force constants' features: the Born model then runs its own
    backbone pass, and the heads stay valid when the k-MVN is retrained."""

    def __init__(self, configs: Sequence) -> None:
        super().__init__()
        if not configs:
            raise ValueError("BornBackbones needs at least one backbone")
        self.members = torch.nn.ModuleList(OwnBackbone(c) for c in configs)

    @classmethod
    def copy_of(cls, model: torch.nn.Module) -> BornBackbones:
        """Trainable copies of the backbones of ``model`` (one network or an ensemble)."""
        nets = networks(model)
        first = next(model.parameters())
        out = cls([net.config for net in nets]).to(dtype=first.dtype, device=first.device)
        for mine, theirs in zip(out.members, nets):
            mine.backbone.load_state_dict(theirs.backbone.state_dict())
        return out

    def to_dict(self) -> dict:
        """Configs and float32 weights (``torch.load(weights_only=True)``-safe)."""
        return {"configs": [m.config.to_dict() for m in self.members],
                "state_dict": {k: v.detach().to("cpu", torch.float32) for k, v in self.state_dict().items()}}

    @classmethod
    def from_dict(cls, data: dict) -> BornBackbones:
        """The inverse of :meth:`to_dict`."""
        from .config import VGNNConfig

        out = cls([VGNNConfig.from_dict(c) for c in data["configs"]])
        out.load_state_dict(data["state_dict"])
        return out


class BornModel(torch.nn.Module):
    """A frozen VGNN backbone (``model``: one network, an ensemble, or :class:`BornBackbones` of
    the heads' own) with :class:`BornHeads`.

    ``members_sha256`` (from the heads' metadata) picks the ensemble members whose features the
    heads were trained on (:func:`select_members`); not used with own backbones."""

    def __init__(self, model: torch.nn.Module, heads: BornHeads, members_sha256: list[str] | None = None) -> None:
        super().__init__()
        if members_sha256:
            model = select_members(model, members_sha256)
        if heads.irreps_in != backbone_irreps(model):
            raise ValueError(f"heads expect features {heads.irreps_in}, the backbone gives {backbone_irreps(model)}")
        self.model = model
        self.heads = heads
        for p in self.model.parameters():
            p.requires_grad_(False)

    def member_positions(self, model: torch.nn.Module) -> list[int] | None:
        """Where this backbone's networks sit among ``model``'s members (the same objects, as when
        this was built from ``model``), or ``None``: then ``model``'s features do not fit."""
        theirs = networks(model)
        positions = []
        for mine in networks(self.model):
            k = next((i for i, net in enumerate(theirs) if net is mine), None)
            if k is None:
                return None
            positions.append(k)
        return positions

    def forward(self, batch: GraphBatch, features: Sequence[torch.Tensor] | None = None) -> BornOutput:
        """The heads on ``batch``; ``features`` (each backbone network's atom features of this
        batch, in this model's member order) skips the backbone."""
        with torch.no_grad():
            if features is None:
                h = backbone_features(self.model, _batch_in(batch, next(self.model.parameters()).dtype))
            else:
                h = torch.cat(list(features), dim=1)
        dtype = next(self.heads.parameters()).dtype
        rotations = None if batch.orbits is None else AtomRotations.of(batch.orbits, dtype)
        return self.heads(h.to(dtype), batch.n_atoms, (batch.edge_src, batch.edge_dst, batch.edge_vec), rotations)

    @torch.no_grad()
    def predict(self, batch: GraphBatch, features: Sequence[torch.Tensor] | None = None) -> list:
        """One :class:`~vgnn_core.phonons.nac.BornCharges` per crystal of ``batch`` (float64)."""
        from ..phonons.nac import BornCharges

        out = self(batch, features)
        born = out.born.double().cpu().numpy()
        eps = out.epsilon.double().cpu().numpy()
        offsets = np.concatenate([[0], np.cumsum(batch.n_atoms.cpu().numpy())])
        return [BornCharges(eps[b], born[offsets[b] : offsets[b + 1]]) for b in range(batch.n_graphs)]
