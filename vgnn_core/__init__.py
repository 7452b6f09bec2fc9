"""vgnn_core — virtual node graph neural networks for phonons.

The science of the project, in subpackages by concept (no pipeline code here):

* :mod:`vgnn_core.crystal` — structures, symmetry, the neighbour graph, the training domain;
* :mod:`vgnn_core.phonons` — force constants, D(q), q-paths and meshes, DOS, thermal properties;
* :mod:`vgnn_core.nn` — the k-MVN / MVN / VVN networks and their ensembles;
* :mod:`vgnn_core.predict` — batched inference (:class:`Predictor`);
* :mod:`vgnn_core.pretrained` — shipped checkpoints and model cards;
* :mod:`vgnn_core.io` — phonopy, band.yaml and pymatgen exports, plots, downloads;
* :mod:`vgnn_core.training` — data, losses, metrics, evaluation, training, shipping.

>>> import vgnn_core
>>> p = vgnn_core.load_pretrained("kmvn")                           # shipped checkpoints
>>> p = vgnn_core.Predictor(vgnn_core.VGNN(kind="kmvn"))          # or any model
>>> results = p.predict_phonons(structures)   # PhononResult: Γ, bands, DOS, thermal, uncertainty
>>> p.predict_gamma(structures)            # list of (3m,) arrays, cm⁻¹, sorted, signed
>>> p.predict_bands(structures, qpoints)   # list of (n_q, 3m) arrays, cm⁻¹
"""

from .crystal.crystal import Crystal, as_crystal
from .crystal.graph import CrystalGraph, GraphBatch, build_graph, collate
from .crystal.structures import InvalidStructureError, as_structure, read_structure
from .nn import VGNN, VVN, VGNNConfig, VGNNEnsemble, make_model
from .phonons.dos import PhononDOS
from .phonons.dynamical_matrix import band_frequencies, dynamical_matrices, gamma_frequencies
from .phonons.force_constants import ForceConstants, central_spring_force_constants, from_phonopy
from .phonons.mesh import QMesh
from .phonons.qpath import QPath, high_symmetry_path
from .phonons.result import PhononResult
from .phonons.thermal import ThermalProperties
from .predict import Predictor, load_pretrained
from .pretrained.registry import (
    ChecksumError,
    PretrainedNotAvailableError,
    load_checkpoint,
    save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "VGNN",
    "VVN",
    "VGNNEnsemble",
    "ChecksumError",
    "Crystal",
    "CrystalGraph",
    "ForceConstants",
    "GraphBatch",
    "InvalidStructureError",
    "PhononDOS",
    "PhononResult",
    "PretrainedNotAvailableError",
    "Predictor",
    "QMesh",
    "QPath",
    "ThermalProperties",
    "VGNNConfig",
    "as_crystal",
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
    "make_model",
    "read_structure",
    "save_checkpoint",
]
