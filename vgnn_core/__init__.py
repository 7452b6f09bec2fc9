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

from ._lazy import lazy

__version__ = "0.1.0"

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "ChecksumError": ".pretrained.registry",
    "Crystal": ".crystal.crystal",
    "CrystalGraph": ".crystal.graph",
    "ForceConstants": ".phonons.force_constants",
    "GraphBatch": ".crystal.graph",
    "InvalidStructureError": ".crystal.structures",
    "PhononDOS": ".phonons.dos",
    "PhononResult": ".phonons.result",
    "Predictor": ".predict",
    "PretrainedNotAvailableError": ".pretrained.registry",
    "QMesh": ".phonons.mesh",
    "QPath": ".phonons.qpath",
    "ThermalProperties": ".phonons.thermal",
    "VGNN": ".nn",
    "VGNNConfig": ".nn",
    "VGNNEnsemble": ".nn",
    "VVN": ".nn",
    "as_crystal": ".crystal.crystal",
    "as_structure": ".crystal.structures",
    "band_frequencies": ".phonons.dynamical_matrix",
    "build_graph": ".crystal.graph",
    "central_spring_force_constants": ".phonons.force_constants",
    "collate": ".crystal.graph",
    "dynamical_matrices": ".phonons.dynamical_matrix",
    "from_phonopy": ".phonons.force_constants",
    "gamma_frequencies": ".phonons.dynamical_matrix",
    "high_symmetry_path": ".phonons.qpath",
    "load_checkpoint": ".pretrained.registry",
    "load_pretrained": ".predict",
    "make_model": ".nn",
    "read_structure": ".crystal.structures",
    "save_checkpoint": ".pretrained.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
