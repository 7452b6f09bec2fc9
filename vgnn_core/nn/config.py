"""Architecture hyper-parameters of the VGNN models: one strict, serialisable dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MODEL_KINDS = ("kmvn", "mvn", "vvn")


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

    def same_network(self, other: VGNNConfig) -> bool:
        """Whether ``other`` builds the same network, read out perhaps as another kind (the
        kind changes how bond blocks become force constants, not the modules)."""
        return replace(self, kind=other.kind) == other

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VGNNConfig:
        """The config of ``d``; an unknown key is an error that names the known ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown architecture key(s) {unknown}; known: {', '.join(known)}")
        return cls(**d)
