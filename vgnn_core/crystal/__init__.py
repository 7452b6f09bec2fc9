"""Crystals: reading and validating structures, their symmetry, the neighbour graph and bonds,
and the training domain a crystal may fall outside of."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "CrystalGraph": ".graph",
    "GraphBatch": ".graph",
    "InvalidStructureError": ".structures",
    "StructureLike": ".structures",
    "TrainingDomain": ".domain",
    "as_structure": ".structures",
    "build_graph": ".graph",
    "collate": ".graph",
    "read_structure": ".structures",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
