"""Crystals: reading and validating structures, their symmetry, the neighbour graph and bonds,
and the training domain a crystal may fall outside of."""

from .domain import TrainingDomain
from .graph import CrystalGraph, GraphBatch, build_graph, collate
from .structures import InvalidStructureError, StructureLike, as_structure, read_structure

__all__ = ["CrystalGraph", "GraphBatch", "InvalidStructureError", "StructureLike", "TrainingDomain",
           "as_structure", "build_graph", "collate", "read_structure"]
