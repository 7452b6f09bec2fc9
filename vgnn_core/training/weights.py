"""Weights during training: an exponential moving average, and warm starts from a checkpoint."""

from __future__ import annotations

import torch

from ..nn.model import Model


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def averaged(self, model: Model) -> Model:
        """A copy of ``model`` carrying the averaged weights."""
        from ..nn.copies import clone_module

        twin = clone_module(model)  # its own tensors; e3nn's generated code shared, not rebuilt
        twin.load_state_dict(self.shadow)
        return twin


#: Parameters a symmetric-block checkpoint lacks when it starts a ``full_blocks`` model.
ANTISYMMETRIC_PARAMETERS = ("readout.tp_anti_", "readout.radial_anti.", "readout.linear_anti_", "readout.anti_to_cartesian")


def warm_start(model: Model, source: Model, name: str) -> None:
    """Copy ``source``'s weights into ``model`` (same architecture).

    A ``full_blocks`` model may start from a symmetric-block one: the antisymmetric read-out
    then starts at zero (its last linear layers zeroed), so the warm start predicts exactly what
    ``source`` did and learns the antisymmetric part from there.
    """
    mine = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in source.state_dict().items()}
    extra = {k for k in mine.keys() - theirs.keys() if k.startswith(ANTISYMMETRIC_PARAMETERS)}
    if {k: v for k, v in mine.items() if k not in extra} != theirs:
        raise ValueError(f"{name}: its architecture does not match {model.config.to_dict()}")
    model.load_state_dict(source.state_dict(), strict=not extra)
    if extra:
        with torch.no_grad():
            model.readout.linear_anti_even.weight.zero_()
            model.readout.linear_anti_odd.weight.zero_()
