"""The training domain of a model, read off the training splits of its data."""

from __future__ import annotations

from ..crystal.domain import TrainingDomain
from . import petretto, phonondb


def training_domain_of(sources: list[str], cutoff: float, r_bond: float) -> dict:
    """The :class:`~vgnn_core.crystal.domain.TrainingDomain` of the training splits of ``sources``."""
    graphs = []
    if "petretto2018" in sources:
        graphs += [s.graph for s in petretto.load_samples(petretto.load_split()["train"], r_max=cutoff)]
    if "phonondb" in sources:
        graphs += [s.graph for s in phonondb.load_samples(phonondb.load_split()["train"], cutoff, r_bond)]
    return TrainingDomain.from_graphs(graphs).to_dict()
