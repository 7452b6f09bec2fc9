"""Saving, verifying and loading model checkpoints.

A checkpoint is a ``torch.save`` of plain tensors and JSON-able data (``config``,
``state_dict``, ``metadata``; an ensemble adds its ``member_configs``), so it loads with
``weights_only=True``. The checkpoints shipped inside the package are listed in
``checkpoints/registry.json`` with their sha256, which is
checked on every load.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..files import file_digest, write_text_atomic
from ..nn.config import VGNNConfig
from ..nn.copies import built_once, same_weights
from ..nn.ensemble import VGNNEnsemble
from ..nn.model import VGNN, Model, make_model

PRETRAINED_KINDS = ("kmvn", "mvn", "vvn")
#: Where the shipped checkpoints, their registry and their model cards live in the source tree.
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


class PretrainedNotAvailableError(RuntimeError):
    """No trained checkpoint of that name ships with this version of the package."""


class ChecksumError(RuntimeError):
    """A checkpoint file does not match its recorded sha256."""


def save_checkpoint(model: Model, path: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write ``model`` to ``path`` (weights in float32) and return the file's sha256."""
    state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    data = {"config": model.config.to_dict(), "state_dict": state, "metadata": metadata or {}}
    if isinstance(model, VGNNEnsemble):
        data["member_configs"] = model.member_configs
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # same file name: torch names its archive after it
        staged = Path(tmp) / path.name
        torch.save(data, staged)
        os.replace(staged, path)
    return file_digest(path)


def load_checkpoint(path: str | Path, sha256: str | None = None, device: str = "cpu",
                    share_with: Sequence[Model] = ()) -> Model:
    """Load a model; with ``sha256`` given, refuse a file that does not match it.

    ``share_with``: models already loaded (on ``device``) whose networks this checkpoint may
    hold too, as the shipped MVN holds the k-MVN's. Where one holds exactly these weights under
    the same configs apart from the kind, the model returned runs its modules
    (:meth:`~vgnn_core.nn.model.VGNN.read_as`) instead of building and loading its own: the same
    numbers, without the second network's build. Meant for inference: training one trains both."""
    path = Path(path)
    if sha256 is not None:
        actual = file_digest(path)
        if actual != sha256:
            raise ChecksumError(f"{path.name}: sha256 {actual} does not match the expected {sha256}")
    data = torch.load(path, map_location=device, weights_only=True)
    # radial-basis frequencies are derived from the config (early checkpoints stored them)
    state = {k: v for k, v in data["state_dict"].items() if not k.endswith("radial_basis.frequencies")}
    model = next(filter(None, (_same_networks(data, state, other) for other in share_with)), None)
    if model is None:
        if "member_configs" in data:
            # members of one config: built once, then copied with their generated code (e3nn
            # builds ~1 s of code per network, a copy takes milliseconds); load_state_dict fills them
            configs = [VGNNConfig.from_dict(c) for c in data["member_configs"]]
            model = VGNNEnsemble(built_once(configs, VGNN))
        else:
            model = make_model(VGNNConfig.from_dict(data["config"]))
        model.load_state_dict(state)
    model.checkpoint_metadata = dict(data.get("metadata", {}))
    model.checkpoint_sha256 = sha256 or file_digest(path)
    return model.to(device).eval()


def _same_networks(data: dict, state: dict[str, torch.Tensor], other: Model) -> Model | None:
    """``other``'s networks read as the checkpoint ``data``'s kind when they are the checkpoint's
    networks (configs equal apart from the kind, every weight equal), else ``None``."""
    if not isinstance(other, VGNN | VGNNEnsemble):
        return None
    configs = data.get("member_configs", [data["config"]])
    nets = list(other.members) if isinstance(other, VGNNEnsemble) else [other]
    if ("member_configs" in data) != isinstance(other, VGNNEnsemble) or len(configs) != len(nets):
        return None
    configs = [VGNNConfig.from_dict(c) for c in configs]
    kind = configs[0].kind
    if kind not in ("kmvn", "mvn") or not all(c.same_network(n.config) for c, n in zip(configs, nets)):
        return None
    return other.read_as(kind) if same_weights(other.state_dict(), state) else None


def combine_runs(run_dirs: list[str | Path], out: str | Path, kind: str | None = None) -> VGNNEnsemble:
    """Save the ensemble of several training runs' ``best.pt`` as ``out/best.pt``, with
    ``out/ensemble.json`` naming the runs (a model card reads their logs from there).

    ``kind="mvn"`` reads k-MVN members as MVNs: the same bond blocks summed per atom pair,
    i.e. exactly the k-MVN's D(Γ), as a Γ-only model.
    """
    out = Path(out)
    members = [load_checkpoint(Path(r) / "best.pt") for r in run_dirs]
    if kind is not None:
        members = [as_kind(m, kind) for m in members]
    ensemble = VGNNEnsemble(members)
    out.mkdir(parents=True, exist_ok=True)
    names = [str(r) for r in run_dirs]
    save_checkpoint(ensemble, out / "best.pt", {"members": names, **({"as_kind": kind} if kind else {})})
    write_text_atomic(out / "ensemble.json", json.dumps({"members": names}, indent=1) + "\n")
    return ensemble


def as_kind(model: VGNN, kind: str) -> VGNN:
    """The same force-constant network read out as another force-constant kind (kmvn ↔ mvn)."""
    from dataclasses import replace

    twin = VGNN(replace(model.config, kind=kind))
    twin.load_state_dict(model.state_dict())
    return twin


def _registry() -> dict[str, dict[str, str]]:
    """Every entry of ``checkpoints/registry.json``: name → {file, sha256[, role]}."""
    registry = resources.files("vgnn_core.pretrained") / "checkpoints" / "registry.json"
    if not registry.is_file():
        return {}
    return json.loads(registry.read_text())


def shipped_checkpoints() -> dict[str, dict[str, str]]:
    """The registry of model checkpoints inside the package: name → {file, sha256} (entries
    with a ``role``, such as the Born heads, are not models and are left out)."""
    return {name: entry for name, entry in _registry().items() if "role" not in entry}


def shipped_file(name: str) -> Path:
    """The sha256-verified path of the registry entry ``name`` (a model or another role)."""
    entry = _registry().get(name)
    if entry is None:
        raise PretrainedNotAvailableError(f"no '{name}' file ships with this version of vgnn_core")
    path = CHECKPOINT_DIR / entry["file"]
    actual = file_digest(path)
    if actual != entry["sha256"]:
        raise ChecksumError(f"{path.name}: sha256 {actual} does not match the expected {entry['sha256']}")
    return path


#: Registry name of the shipped Born-charge / ε∞ heads (:mod:`vgnn_core.nn.born`).
BORN_HEADS = "born_heads"


def load_born_model(model: Model | None = None, device: str = "cpu", heads_file: str | Path | None = None):
    """The shipped Born heads on ``model``'s backbone (default: the shipped ``kmvn``), as a
    :class:`~vgnn_core.nn.born.BornModel` predicting Z* (e) and ε∞ per crystal; ``heads_file``:
    heads not (yet) shipped, e.g. a release's new ones, in place of the shipped file.

    Heads fine-tuned with backbones of their own carry them and ignore ``model``; heads trained
    on the frozen backbones of particular ensemble members (named by their weights' sha256 in the
    heads' metadata) need ``model`` to contain them (extra members are ignored), else a
    ``ValueError`` says which are missing. The heads file is sha256-checked.
    """
    from ..nn.born import BornModel
    from ..training.born import load_born

    heads, meta, own = load_born(heads_file if heads_file is not None else shipped_file(BORN_HEADS), backbone=model)
    if own is not None:
        needed = max(m.config.r_max for m in own.members)
        if model is not None and model.config.graph_cutoff < needed:
            raise ValueError(f"the Born heads' own backbones pass messages to {needed} Å; this model's graphs "
                             f"stop at {model.config.graph_cutoff} Å")
        born = BornModel(own.to(device), heads.to(device))
    else:
        if model is None:
            model = load_pretrained_model("kmvn", device=device)
        born = BornModel(model, heads.to(device), meta.get("backbone_members_sha256"))
    born.metadata = meta
    return born.eval()


def load_pretrained_model(name: str, device: str = "cpu", share_with: Sequence[Model] = ()) -> Model:
    """The shipped checkpoint ``name`` (``kmvn``, ``mvn`` or ``vvn``), sha256-verified;
    ``share_with`` as for :func:`load_checkpoint`."""
    if name not in PRETRAINED_KINDS:
        raise ValueError(f"unknown pretrained model {name!r}; expected one of {PRETRAINED_KINDS}")
    entry = shipped_checkpoints().get(name)
    if entry is None:
        raise PretrainedNotAvailableError(
            f"no trained '{name}' checkpoint ships with this version of vgnn_core yet. Train one "
            f"(see the training issue) or wrap any model with vgnn_core.Predictor(model)."
        )
    path = resources.files("vgnn_core.pretrained") / "checkpoints" / entry["file"]
    with resources.as_file(path) as p:
        return load_checkpoint(p, sha256=entry["sha256"], device=device, share_with=share_with)
