"""The networks: radial bases, equivariant convolutions, virtual-node read-outs, the VGNN
models (k-MVN, MVN, VVN) and ensembles of them."""

from .config import VGNNConfig
from .ensemble import VGNNEnsemble
from .model import VGNN, VVN, ForceConstantModel, Model, make_model

__all__ = ["VGNN", "VVN", "ForceConstantModel", "Model", "VGNNConfig", "VGNNEnsemble", "make_model"]
