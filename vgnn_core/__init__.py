"""vgnn_core — virtual node graph neural networks for phonons.

The science of the project: crystal graphs with virtual nodes, the VVN / MVN / k-MVN models,
physically exact dynamical matrices, q-paths and batched inference. No pipeline code here.

>>> import vgnn_core
>>> p = vgnn_core.Predictor(vgnn_core.VGNN(kind="kmvn"))          # any model
>>> p = vgnn_core.load_pretrained("kmvn")                           # shipped checkpoints
>>> p.predict_gamma(structures)            # list of (3m,) arrays, cm⁻¹, sorted, signed
>>> p.predict_bands(structures, qpoints)   # list of (n_q, 3m) arrays, cm⁻¹
"""

from .checkpoints import (
    ChecksumError,
    PretrainedNotAvailableError,
    load_checkpoint,
    save_checkpoint,
)
from .dynamical_matrix import band_frequencies, dynamical_matrices, gamma_frequencies
from .ensemble import VGNNEnsemble
from .force_constants import ForceConstants, central_spring_force_constants, from_phonopy
from .graph import CrystalGraph, GraphBatch, build_graph, collate
from .model import VGNN, VGNNConfig
from .predictor import Predictor, load_pretrained
from .qpath import QPath, high_symmetry_path
from .structures import InvalidStructureError, as_structure, read_structure

__version__ = "0.1.0"

__all__ = [
    "VGNN",
    "VGNNEnsemble",
    "ChecksumError",
    "CrystalGraph",
    "ForceConstants",
    "GraphBatch",
    "InvalidStructureError",
    "PretrainedNotAvailableError",
    "Predictor",
    "QPath",
    "VGNNConfig",
    "as_structure",
    "band_frequencies",
    "build_graph",
    "central_spring_force_constants",
    "collate",
    "dynamical_matrices",
    "from_phonopy",
    "gamma_frequencies",
    "high_symmetry_path",
    "load_checkpoint",
    "load_pretrained",
    "read_structure",
    "save_checkpoint",
]
