"""Training and judging the models: the Petretto and phonondb data, losses, metrics,
evaluation, the resumable trainer and shipping a run with its model card."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "PhononSample": ".samples",
    "TrainConfig": ".train",
    "evaluate": ".evaluation",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
