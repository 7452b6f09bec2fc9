"""The networks: radial bases, equivariant convolutions, virtual-node read-outs, the VGNN
models (k-MVN, MVN, VVN), ensembles of them, and the Born-charge / ε∞ heads."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "BornHeads": ".born",
    "BornHeadsEnsemble": ".born",
    "BornModel": ".born",
    "ErrorPredictors": ".uncertainty",
    "ForceConstantModel": ".model",
    "MemberAgreement": ".ensemble",
    "Model": ".model",
    "UncertaintyModel": ".uncertainty",
    "VGNN": ".model",
    "VGNNConfig": ".config",
    "VGNNEnsemble": ".ensemble",
    "VVN": ".model",
    "make_model": ".model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
