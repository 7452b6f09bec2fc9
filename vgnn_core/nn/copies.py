"""Copies of a built network that share its generated code.

e3nn generates, traces and optimises the code of every tensor product and linear layer when a
module is built, and again when one is unpickled (``copy.deepcopy`` goes through pickling), so
an ensemble of three networks of one config costs three code generations (~0.4–1.3 s of CPU
each). The code depends on the irreps alone, never on the weights: :func:`clone_module` copies
only the tensors and the modules' own bookkeeping, and a worker's models load in a fraction of
the time. :func:`same_weights` tells whether two networks (or a checkpoint) hold the same tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)
K = TypeVar("K")


def built_once(specs: Sequence[K], build: Callable[[K], M]) -> list[M]:
    """One module per spec: ``build(spec)`` for the first of each distinct spec (by equality),
    :func:`clone_module` of that one for every later equal spec (an ensemble's members of one
    config: one code generation instead of one each)."""
    made: list[tuple[K, M]] = []
    for spec in specs:
        twin = next((module for seen, module in made if seen == spec), None)
        made.append((spec, clone_module(twin) if twin is not None else build(spec)))
    return [module for _, module in made]


def same_weights(a: Mapping[Hashable, torch.Tensor], b: Mapping[Hashable, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same tensors: the same names, and per name the same
    dtype, device and values."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].device == b[k].device and torch.equal(a[k], b[k]) for k in a)


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
