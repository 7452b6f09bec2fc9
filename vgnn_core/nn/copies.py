"""Copies of a built network that share its generated code.

e3nn generates, traces and optimises the code of every tensor product and linear layer when a
module is built, and again when one is unpickled (``copy.deepcopy`` goes through pickling), so
an ensemble of three networks of one config costs three code generations (~0.4–1.3 s of CPU
each). The code depends on the irreps alone, never on the weights: :func:`clone_module` copies
only the tensors and the modules' own bookkeeping, and a worker's models load in a fraction of
the time.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)


def clone_module(module: M) -> M:
    """A copy of ``module`` with its own parameters and buffers (copies, same values, same
    ``requires_grad``) and its own submodules, hooks and registries, recursively; everything else
    of each module (generated code, irreps, instruction lists, configs) is shared with ``module``.

    Use it for networks that will be loaded with other weights or trained apart: no parameter
    or buffer is shared (a tensor kept as a plain attribute would be; no module here keeps one).
    A submodule that appears twice in ``module`` appears twice in the
    copy too (one copy, shared the same way)."""
    return _clone(module, {})


def _clone(module: torch.nn.Module, done: dict[int, torch.nn.Module]) -> torch.nn.Module:
    if id(module) in done:
        return done[id(module)]
    twin = object.__new__(type(module))  # torch.fx's GraphModules: one class per instance, shared
    done[id(module)] = twin
    state = {}
    for key, value in module.__dict__.items():
        # the modules' registries and hook tables are their own; other containers (instruction
        # lists, the code generator's sources) are read-only after construction and shared
        state[key] = copy.copy(value) if key.startswith("_") and isinstance(value, (dict, set)) else value
    state["_parameters"] = {k: None if p is None else torch.nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                            for k, p in module._parameters.items()}
    state["_buffers"] = {k: None if b is None else b.detach().clone() for k, b in module._buffers.items()}
    state["_modules"] = {k: None if m is None else _clone(m, done) for k, m in module._modules.items()}
    twin.__dict__.update(state)
    return twin
