"""Training the Born-charge and dielectric heads (:mod:`vgnn_core.nn.born`) on a VGNN backbone.

Data: the DFPT dielectric block of every Petretto et al. (2018) record — ``dielectric.becs``
(Z*, (m, 3, 3) e, in the record's site order) and ``dielectric.eps_electronic`` (ε∞). The
charges are made neutral (:func:`~vgnn_core.phonons.nac.enforce_charge_neutrality`; DFPT breaks
the sum rule slightly, ``cnsr_breaking``) before they are targets, as the heads' are by
construction. Togo's phonondb BORN files (VASP PBEsol) are read by :func:`load_togo_born`
for extra training materials (phonondb ``train`` split only, never a Petretto val/test id).

The backbone (a shipped k-MVN: every ensemble member) is frozen, so its atom features are
computed once per material and kept in memory; an epoch then only runs the small heads. With
``backbone_lr`` > 0 the heads instead get copies of the backbones of their own
(:class:`~vgnn_core.nn.born.BornBackbones`), fine-tuned with them and saved with them. Training
records whose DFPT dielectric response no insulator has (:func:`physical_targets`: Petretto's
InCuTe2 has ε∞ ≈ 4·10⁶ and |Z*| ≈ 900 e) are left out of the fit, never out of val or test. The
split is the Petretto one (train to fit, val to select, test to report). Metrics, each next to
a constant baseline fitted on train: Z* MAE per tensor component (e) over all atoms, and the
median over materials of ε∞'s relative error ‖ε − ε_DFPT‖_F / ‖ε_DFPT‖_F.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..crystal.graph import CrystalGraph, build_graph, collate
from ..nn.born import (
    BornBackbones,
    BornHeads,
    BornHeadsEnsemble,
    backbone_features,
    backbone_irreps,
    select_members,
    symmetric_logm,
)
from ..nn.copies import built_once
from ..phonons.nac import BornCharges, enforce_charge_neutrality
from . import petretto


@dataclass
class DielectricSample:
    """One material: its graph, neutral DFPT Z* (m, 3, 3) in e and ε∞ (3, 3)."""

    material_id: str
    graph: CrystalGraph
    born: np.ndarray
    epsilon: np.ndarray
    structure: object = None  # pymatgen Structure
    features: np.ndarray | None = None  # (m, F) frozen backbone features, float32

    @property
    def numbers(self) -> np.ndarray:
        return self.graph.numbers

    @property
    def charges(self) -> BornCharges:
        return BornCharges(self.epsilon, self.born)


def dielectric_from_record(data: dict, r_max: float) -> DielectricSample | None:
    """The sample of one decoded Petretto JSON record; ``None`` when it has no dielectric block."""
    block = data.get("dielectric") or {}
    if "becs" not in block or "eps_electronic" not in block:
        return None
    record = petretto.parse_record(data)
    born = np.asarray(block["becs"], dtype=float)
    eps = np.asarray(block["eps_electronic"], dtype=float)
    if born.shape != (len(record.structure), 3, 3) or eps.shape != (3, 3):
        raise ValueError(f"{record.material_id}: becs {born.shape} / eps_electronic {eps.shape} do not fit "
                         f"a cell of {len(record.structure)} atoms")
    return DielectricSample(record.material_id, build_graph(record.structure, r_max=r_max),
                            enforce_charge_neutrality(born), 0.5 * (eps + eps.T), record.structure)


def load_dielectric(ids: Iterable[str] | None = None, r_max: float = 4.0,
                    archive: str | Path | None = None) -> list[DielectricSample]:
    """Samples of ``ids`` (all when ``None``) from the Petretto archive, in the order of ``ids``."""
    wanted = None if ids is None else list(ids)
    keep = None if wanted is None else set(wanted)
    found: dict[str, DielectricSample] = {}
    for material_id, load in petretto._json_members(Path(archive or petretto.default_archive())):
        if keep is not None and material_id not in keep:
            continue
        sample = dielectric_from_record(load(), r_max)
        if sample is not None:
            found[sample.material_id] = sample
        if keep is not None and keep <= found.keys():
            break  # every wanted record read: the rest of the archive is not decompressed
    if wanted is None:
        return list(found.values())
    missing = [i for i in wanted if i not in found]
    if missing:
        raise KeyError(f"{len(missing)} ids have no dielectric record in the archive, e.g. {missing[:3]}")
    return [found[i] for i in wanted]


#: Togo's phonondb structures, phonopy.conf and BORN files (beside the force-set pack)
TOGO_BORN_RELATIVE = Path("togo_phonondb") / "unitcells_conf_born.tar.xz"


def load_togo_born(ids: Iterable[str], r_max: float = 4.0, archive: str | Path | None = None,
                   log=print) -> list[DielectricSample]:
    """Samples from Togo's phonondb BORN files (VASP PBEsol) for the materials ``ids`` that have one.

    Each ``POSCAR-unitcell`` is reduced with its ``PRIMITIVE_AXIS`` (phonopy's primitive cell, the
    cell a BORN file is written for) and the independent atoms' charges are spread over the cell
    by symmetry (:func:`~vgnn_core.io.phonopy.read_born_file`); the charges are made neutral. A
    material whose files cannot be read is skipped with a one-line note.
    """
    import io
    import tarfile
    import tempfile
    from fractions import Fraction

    from phonopy.interface.vasp import read_vasp_from_strings
    from phonopy.structure.cells import get_primitive
    from pymatgen.io.phonopy import get_pmg_structure

    from ..io.phonopy import read_born_file
    from ..settings import shared_data_dir

    if archive is None:
        root = shared_data_dir()
        archive = None if root is None else root / TOGO_BORN_RELATIVE
    if archive is None or not Path(archive).is_file():
        raise FileNotFoundError(f"{TOGO_BORN_RELATIVE} not found: set VGNN_DATA_DIR")
    wanted = set(ids)
    files: dict[str, dict[str, str]] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            folder, _, name = member.name.rpartition("/")
            mid = "-".join(Path(folder).name.split("-")[:2])  # mp-1000-20180417 → mp-1000
            if mid in wanted and member.isfile() and name in ("POSCAR-unitcell", "phonopy.conf", "BORN"):
                files.setdefault(mid, {})[name] = tar.extractfile(member).read().decode()
    out: list[DielectricSample] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mid, entry in sorted(files.items()):
            if len(entry) < 3:
                continue  # no BORN file: a metal or a material Togo did not compute it for
            try:
                axis = np.eye(3)
                for line in io.StringIO(entry["phonopy.conf"]):
                    key, _, value = line.partition("=")
                    if key.strip().upper() == "PRIMITIVE_AXIS":
                        axis = np.array([float(Fraction(x)) for x in value.split("#")[0].split()[:9]]).reshape(3, 3)
                unit = read_vasp_from_strings(entry["POSCAR-unitcell"])
                structure = get_pmg_structure(get_primitive(unit, axis, symprec=1e-5))
                born_path = Path(tmp) / f"{mid}.BORN"
                born_path.write_text(entry["BORN"])
                charges = read_born_file(born_path, structure)
                eps = 0.5 * (charges.epsilon + charges.epsilon.T)
                if np.linalg.eigvalsh(eps).min() <= 1.0:
                    raise ValueError(f"ε∞ eigenvalues {np.linalg.eigvalsh(eps)} not above 1")
                out.append(DielectricSample(mid, build_graph(structure, r_max=r_max),
                                            enforce_charge_neutrality(charges.born), eps, structure))
            except Exception as exc:  # noqa: BLE001 - one unreadable material must not stop the rest
                log(f"togo {mid}: skipped ({str(exc).splitlines()[0][:120]})")
    return out


@torch.no_grad()
def attach_features(model: torch.nn.Module, samples: Sequence[DielectricSample], batch_size: int = 32) -> None:
    """Run the frozen backbone once per material and keep its atom features on the sample."""
    model.eval()
    dtype = next(model.parameters()).dtype
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collate([s.graph for s in chunk], dtype=dtype)
        feats = backbone_features(model, batch).float().numpy()
        offsets = np.concatenate([[0], np.cumsum([s.graph.n_atoms for s in chunk])])
        for k, s in enumerate(chunk):
            s.features = feats[offsets[k] : offsets[k + 1]]


#: Training targets beyond these are taken as a failed (metal-like, gapless) DFPT calculation: an
#: insulator's ε∞ eigenvalues stay in the tens (PbTe ≈ 33) and |Z*| components near 10.
MAX_TRAINING_EPSILON = 100.0
MAX_TRAINING_BORN = 20.0  # e


def physical_targets(samples: Sequence[DielectricSample], log=print) -> list[DielectricSample]:
    """The samples whose DFPT ε∞ (largest eigenvalue ≤ :data:`MAX_TRAINING_EPSILON`) and Z*
    (every component within ± :data:`MAX_TRAINING_BORN` e) an insulator can have; each one left out
    is logged by name. Used on training data only: val and test are scored as they come."""
    kept = []
    for s in samples:
        eps, z = float(np.linalg.eigvalsh(s.epsilon).max()), float(np.abs(s.born).max())
        if eps > MAX_TRAINING_EPSILON or z > MAX_TRAINING_BORN:
            log(f"{s.material_id}: left out of training (DFPT ε∞ up to {eps:.4g}, |Z*| up to {z:.4g} e: "
                "not an insulator's)")
        else:
            kept.append(s)
    return kept


# --- baselines ----------------------------------------------------------------------------------


@dataclass
class ElementBaseline:
    """Z* = the train mean tensor of the atom's element (neutralised per crystal); ε∞ = the
    train median of the isotropic ε̄ = tr ε / 3, times the identity."""

    born_mean: dict[int, np.ndarray]
    epsilon_median: float

    @classmethod
    def fit(cls, samples: Sequence[DielectricSample]) -> ElementBaseline:
        sums: dict[int, np.ndarray] = {}
        counts: dict[int, int] = {}
        for s in samples:
            for z, tensor in zip(s.numbers, s.born):
                sums[int(z)] = sums.get(int(z), 0.0) + tensor
                counts[int(z)] = counts.get(int(z), 0) + 1
        eps = np.median([np.trace(s.epsilon) / 3.0 for s in samples])
        return cls({z: sums[z] / counts[z] for z in sums}, float(eps))

    def predict(self, sample: DielectricSample) -> BornCharges:
        born = np.array([self.born_mean.get(int(z), np.zeros((3, 3))) for z in sample.numbers])
        return BornCharges(self.epsilon_median * np.eye(3), enforce_charge_neutrality(born))

    def to_dict(self) -> dict:
        """JSON-able form (element Z → 3×3 nested lists)."""
        return {"born_mean": {str(z): np.round(t, 6).tolist() for z, t in sorted(self.born_mean.items())},
                "epsilon_median": self.epsilon_median}

    @classmethod
    def from_dict(cls, d: dict) -> ElementBaseline:
        return cls({int(z): np.asarray(t, dtype=float) for z, t in d["born_mean"].items()}, float(d["epsilon_median"]))


# --- metrics --------------------------------------------------------------------------------------


def dielectric_metrics(samples: Sequence[DielectricSample], predicted: Sequence[BornCharges]) -> dict[str, float]:
    """Z* MAE per component (e, over all atoms × 9 components), its per-material mean, and ε∞'s
    relative Frobenius error (median and mean over materials)."""
    err = np.concatenate([np.abs(p.born - s.born).reshape(-1) for s, p in zip(samples, predicted)])
    per_material = [float(np.abs(p.born - s.born).mean()) for s, p in zip(samples, predicted)]
    rel = np.array([np.linalg.norm(p.epsilon - s.epsilon) / np.linalg.norm(s.epsilon)
                    for s, p in zip(samples, predicted)])
    return {"n": len(samples), "born_mae": float(err.mean()), "born_mae_per_material_mean": float(np.mean(per_material)),
            "eps_rel_median": float(np.median(rel)), "eps_rel_mean": float(rel.mean())}


# --- training -------------------------------------------------------------------------------------


@dataclass
class BornTrainConfig:
    """Hyper-parameters of the head training (backbone frozen unless ``backbone_lr`` > 0)."""

    epochs: int = 150
    batch_size: int = 32
    lr: float = 3e-3
    final_lr_ratio: float = 0.05
    weight_decay: float = 1e-5
    #: weight of the ε∞ loss (|S − log(ε_DFPT − 1)|, mean per component) next to Z*'s (e)
    epsilon_weight: float = 0.5
    seed: int = 0
    heads: dict = field(default_factory=dict)
    #: learning rate of the backbones, fine-tuned with the heads (0: frozen, features computed once)
    backbone_lr: float = 0.0
    #: leave records no insulator has out of the fit (:func:`physical_targets`); False fits every record
    physical_only: bool = True


@dataclass
class _Stacked:
    """Samples concatenated for the heads: features, atom counts, bonds and targets."""

    features: torch.Tensor
    n_atoms: torch.Tensor
    bonds: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    born: torch.Tensor
    log_epsilon: torch.Tensor


def _targets(samples: Sequence[DielectricSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Z* (N, 3, 3) and S = log(ε∞ − 1) (B, 3, 3) of ``samples`` (float32)."""
    return (torch.as_tensor(np.concatenate([s.born for s in samples]), dtype=torch.float32),
            torch.as_tensor(np.stack([symmetric_logm(s.epsilon - np.eye(3)) for s in samples]), dtype=torch.float32))


def _stack(samples: Sequence[DielectricSample]) -> _Stacked:
    offsets = np.concatenate([[0], np.cumsum([s.graph.n_atoms for s in samples])])[:-1]
    born, log_epsilon = _targets(samples)
    bonds = (torch.as_tensor(np.concatenate([s.graph.edge_src + o for s, o in zip(samples, offsets)])),
             torch.as_tensor(np.concatenate([s.graph.edge_dst + o for s, o in zip(samples, offsets)])),
             torch.as_tensor(np.concatenate([s.graph.edge_vec for s in samples]), dtype=torch.float32))
    return _Stacked(
        features=torch.as_tensor(np.concatenate([s.features for s in samples])),
        n_atoms=torch.as_tensor([s.graph.n_atoms for s in samples]),
        bonds=bonds,
        born=born,
        log_epsilon=log_epsilon,
    )


@torch.no_grad()
def predict_heads(heads: BornHeads, samples: Sequence[DielectricSample], batch_size: int = 256) -> list[BornCharges]:
    """The heads' :class:`BornCharges` of samples with features attached."""
    heads.eval()
    out: list[BornCharges] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        data = _stack(chunk)
        pred = heads(data.features, data.n_atoms, data.bonds)
        born, eps = pred.born.double().numpy(), pred.epsilon.double().numpy()
        offsets = np.concatenate([[0], np.cumsum(data.n_atoms.numpy())])
        out += [BornCharges(eps[k], born[offsets[k] : offsets[k + 1]]) for k in range(len(chunk))]
    return out


def selection_score(metrics: dict[str, float]) -> float:
    """What val selects on: Z* MAE (e) plus ε∞'s median relative error (0.1 ≈ 0.1 e)."""
    return metrics["born_mae"] + metrics["eps_rel_median"]


def train_heads(
    train: Sequence[DielectricSample],
    val: Sequence[DielectricSample],
    irreps_in: str,
    cfg: BornTrainConfig | None = None,
    checkpoint: str | Path | None = None,
    log=print,
    backbones: BornBackbones | None = None,
    init: BornHeads | None = None,
) -> tuple[BornHeads, dict]:
    """Fit :class:`BornHeads` on ``train`` (features attached), keep the epoch best on ``val``.

    With ``backbones`` (and ``cfg.backbone_lr`` > 0) they are fine-tuned with the heads: every
    batch runs them, and val's features are recomputed after every epoch (the best epoch's
    backbone weights are restored in place). ``init``: heads to start from (e.g. fitted on the
    frozen backbones), else new ones. With ``checkpoint`` the best heads so far are saved there
    after every improvement (:func:`save_heads`), so an interrupted run leaves its best model behind.
    """
    cfg = cfg or BornTrainConfig()
    tune = backbones is not None and cfg.backbone_lr > 0
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    heads = init if init is not None else BornHeads(irreps_in, **cfg.heads)
    groups = [{"params": list(heads.parameters()), "lr": cfg.lr}]
    if tune:
        groups.append({"params": list(backbones.parameters()), "lr": cfg.backbone_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * math.ceil(len(train) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    best = {"score": math.inf}
    best_state = None
    started = time.time()
    for epoch in range(1, cfg.epochs + 1):
        heads.train()
        if tune:
            backbones.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            chunk = [train[i] for i in order[start : start + cfg.batch_size]]
            if tune:
                batch = collate([s.graph for s in chunk], dtype=next(backbones.parameters()).dtype)
                features = backbone_features(backbones, batch).to(torch.float32)
                pred = heads(features, batch.n_atoms, (batch.edge_src, batch.edge_dst, batch.edge_vec))
                born, log_epsilon = _targets(chunk)
            else:
                data = _stack(chunk)
                pred = heads(data.features, data.n_atoms, data.bonds)
                born, log_epsilon = data.born, data.log_epsilon
            loss = ((pred.born - born).abs().mean()
                    + cfg.epsilon_weight * (pred.log_epsilon - log_epsilon).abs().mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(chunk)
        if tune:
            attach_features(backbones, val)
        metrics = dielectric_metrics(val, predict_heads(heads, val))
        score = selection_score(metrics)
        if score < best["score"]:
            best = {"score": score, "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()}}
            best_state = {k: v.detach().clone() for k, v in heads.state_dict().items()}
            if tune:
                best_backbones = {k: v.detach().clone() for k, v in backbones.state_dict().items()}
            if checkpoint is not None:
                save_heads(heads, checkpoint, {"best": best, "train_config": _plain(cfg)},
                           backbones if tune else None)
        if epoch == 1 or epoch % 10 == 0 or epoch == cfg.epochs:
            log(f"epoch {epoch:4d}  train loss {total / len(train):.4f}  val Z* MAE {metrics['born_mae']:.4f} e  "
                f"val ε rel median {metrics['eps_rel_median']:.4f}  best epoch {best['epoch']}  "
                f"{time.time() - started:.0f} s")
    if best_state is not None:
        heads.load_state_dict(best_state)
        if tune:
            backbones.load_state_dict(best_backbones)
            attach_features(backbones, val)  # val's features fit the restored backbones again
    best["seconds"] = round(time.time() - started, 1)
    return heads, best


#: Cartesian directions of approach to Γ for the LO–TO comparison
LO_TO_DIRECTIONS = np.eye(3)


@torch.no_grad()
def lo_to_comparison(model: torch.nn.Module, samples: Sequence[DielectricSample],
                     predicted: Sequence[BornCharges], batch_size: int = 16) -> list[dict]:
    """Largest LO–TO splitting at Γ with DFPT and with predicted Z*/ε∞, on the same force constants.

    ``model`` (a k-MVN) gives each material's force constants, taken as the short-range part;
    the Gonze–Lee term (:class:`~vgnn_core.phonons.nac.NonAnalyticCorrection`) is added once with
    the DFPT charges and once with ``predicted``. Per material and Cartesian direction x, y, z the
    splitting is max_k [ω_k(Γ, q̂) − ω_k^TO] (modes sorted, cm⁻¹); returned per material are the
    largest over directions, DFPT-charge and predicted-charge values (the difference isolates
    the charge heads' error from the force constants').
    """
    from ..phonons.dynamical_matrix import band_frequencies, gamma_frequencies
    from ..phonons.nac import NonAnalyticCorrection

    rows: list[dict] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        graphs = [build_graph(s.structure, r_max=model.config.graph_cutoff) for s in chunk]
        fcs = model.force_constants(collate(graphs, dtype=next(model.parameters()).dtype))
        for s, pred, fc in zip(chunk, predicted[start : start + batch_size], fcs):
            if s.graph.n_atoms < 2:
                continue
            fc = fc.cpu().to(torch.float64)
            dirs = LO_TO_DIRECTIONS @ np.asarray(s.structure.lattice.matrix).T  # Cartesian → fractional q
            row = {"material_id": s.material_id}
            for key, charges in (("dfpt", s.charges), ("predicted", pred)):
                nac = NonAnalyticCorrection.from_born(s.structure, charges)
                to = gamma_frequencies([fc], [nac])[0].numpy()
                along = band_frequencies([fc], [torch.zeros(len(dirs), 3, dtype=torch.float64)], nacs=[nac],
                                         q_directions=[dirs])[0].numpy()
                row[key] = float((along - to[None]).max())
            rows.append(row)
    return rows


def lo_to_metrics(rows: Sequence[dict], min_split: float = 5.0) -> dict[str, float]:
    """MAE (cm⁻¹) of the predicted-charge splitting against the DFPT-charge one, over all
    materials and over those splitting by more than ``min_split`` cm⁻¹ (with their median
    relative error)."""
    dfpt = np.array([r["dfpt"] for r in rows])
    pred = np.array([r["predicted"] for r in rows])
    big = dfpt > min_split
    return {"n": len(rows), "split_mae_cm1": float(np.abs(pred - dfpt).mean()),
            "n_split": int(big.sum()), "split_mae_cm1_split": float(np.abs(pred - dfpt)[big].mean()),
            "split_rel_median_split": float(np.median(np.abs(pred - dfpt)[big] / dfpt[big])),
            "dfpt_split_mean_cm1": float(dfpt.mean())}


def _plain(cfg: BornTrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def save_heads(heads: BornHeads | BornHeadsEnsemble, path: str | Path, metadata: dict | None = None,
               backbones: BornBackbones | None = None) -> None:
    """Write the heads (float32 weights, their hyper-parameters, JSON-able ``metadata``) and, when
    fine-tuned, their own ``backbones`` to ``path``; it loads with ``weights_only=True``
    (:func:`load_heads`, :func:`load_backbones`)."""
    from ..files import atomic_write

    state = {k: v.detach().to("cpu", torch.float32) for k, v in heads.state_dict().items()}
    data = {"hyper": heads.hyper, "state_dict": state, "metadata": json.loads(json.dumps(metadata or {}))}
    if backbones is not None:
        data["backbones"] = backbones.to_dict()
    atomic_write(Path(path), lambda fh: torch.save(data, fh))


def load_born(path: str | Path, backbone: torch.nn.Module | None = None,
              ) -> tuple[BornHeads | BornHeadsEnsemble, dict, BornBackbones | None]:
    """Everything :func:`save_heads` wrote to ``path``, read once: the heads (one set, or an averaged
    :class:`BornHeadsEnsemble`), their metadata, and their own fine-tuned backbones (``None`` when
    the heads read a k-MVN's frozen backbones). With ``backbone``, heads that read frozen members
    are first checked to find them in it (``ValueError`` if not), before seconds go into building
    the heads' tensor products."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    digests = data["metadata"].get("backbone_members_sha256")
    if backbone is not None and digests and "backbones" not in data:
        select_members(backbone, digests)
    return _heads_from(data, path), data["metadata"], _backbones_from(data, path)


def load_heads(path: str | Path) -> tuple[BornHeads | BornHeadsEnsemble, dict]:
    """The heads saved by :func:`save_heads` and their metadata (:func:`load_born`)."""
    heads, metadata, _ = load_born(path)
    return heads, metadata


def load_backbones(path: str | Path) -> BornBackbones | None:
    """The heads' own fine-tuned backbones saved with them, or ``None`` (:func:`load_born`)."""
    return load_born(path)[2]


def _heads_from(data: dict, path) -> BornHeads | BornHeadsEnsemble:
    hyper = data["hyper"]
    if "members" in hyper:  # members of equal hyper-parameters are copies of the first (same code)
        heads = BornHeadsEnsemble(built_once(hyper["members"], lambda h: BornHeads(**h)))
    else:
        heads = BornHeads(**hyper)
    try:
        heads.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: head weights do not fit their hyper-parameters ({exc})") from None
    return heads.eval()


def _backbones_from(data: dict, path) -> BornBackbones | None:
    if "backbones" not in data:
        return None
    try:
        return BornBackbones.from_dict(data["backbones"]).eval()
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: the Born model's own backbones do not load ({exc})") from None


def load_split_samples(model: torch.nn.Module, split_file: str | Path | None = None,
                       log=print) -> dict[str, list[DielectricSample]]:
    """Petretto train / val / test dielectric samples with ``model``'s backbone features attached."""
    started = time.time()
    split = petretto.load_split(split_file)
    samples = {name: load_dielectric(split[name], r_max=model.config.r_max) for name in ("train", "val", "test")}
    log(f"read {sum(map(len, samples.values()))} dielectric records in {time.time() - started:.0f} s")
    for group in samples.values():
        attach_features(model, group)
    log(f"backbone features of every material in {time.time() - started:.0f} s")
    return samples


def evaluate_and_save(model: torch.nn.Module, heads: BornHeads, samples: dict[str, list[DielectricSample]],
                      out: str | Path, metadata: dict | None = None, log=print,
                      backbones: BornBackbones | None = None) -> dict:
    """Every split's metrics next to the train-fitted :class:`ElementBaseline`'s, and the LO–TO
    comparison on ``test`` (force constants of ``model``); writes ``out/born_heads.pt`` (metrics and
    baseline in its metadata; the heads' own ``backbones`` when fine-tuned) and ``out/metrics.json``.
    The samples' features must be those the heads read."""
    out = Path(out)
    baseline = ElementBaseline.fit(samples["train"])
    metrics: dict = {}
    for name, group in samples.items():
        metrics[name] = {"heads": dielectric_metrics(group, predict_heads(heads, group)),
                         "baseline": dielectric_metrics(group, [baseline.predict(s) for s in group])}
        log(f"{name}: {json.dumps(metrics[name])}")
    rows = lo_to_comparison(model, samples["test"], predict_heads(heads, samples["test"]))
    metrics["test"]["lo_to"] = lo_to_metrics(rows)
    log(f"test LO–TO: {json.dumps(metrics['test']['lo_to'])}")
    save_heads(heads, out / "born_heads.pt", {**(metadata or {}), "metrics": metrics, "baseline": baseline.to_dict()},
               backbones)
    (out / "metrics.json").write_text(json.dumps({**(metadata or {}), **metrics, "lo_to_rows": rows}, indent=1))
    return metrics


def load_togo_train(model: torch.nn.Module, log=print) -> list[DielectricSample]:
    """Togo BORN samples of the phonondb ``train`` materials (the force-set pack's own split;
    its val/test and every material outside the pack stay unseen), backbone features attached."""
    from .phonondb import load_split as load_phonondb_split

    started = time.time()
    samples = load_togo_born(load_phonondb_split()["train"], r_max=model.config.r_max, log=log)
    attach_features(model, samples)
    log(f"{len(samples)} phonondb train materials with a BORN file, features in {time.time() - started:.0f} s")
    return samples


def _load_kmvn(model_name: str) -> tuple[torch.nn.Module, str]:
    """A shipped model's name or a checkpoint path → the model and how metadata names it."""
    from ..files import file_digest
    from ..pretrained.registry import PRETRAINED_KINDS, load_checkpoint, load_pretrained_model

    if Path(model_name).is_file() and model_name not in PRETRAINED_KINDS:
        return load_checkpoint(model_name), f"{Path(model_name).name} (sha256 {file_digest(Path(model_name))})"
    return load_pretrained_model(model_name), model_name


def run(out: str | Path, model_name: str = "kmvn", cfg: BornTrainConfig | None = None,
        split_file: str | Path | None = None, togo: bool = False, members: Sequence[int] | None = None,
        init_heads: str | Path | None = None, log=print) -> dict:
    """The whole recipe: Petretto train/val/test with a shipped backbone's features, heads fitted
    on train (with ``togo``, also on the BORN files of phonondb ``train``: :func:`load_togo_train`)
    and selected on Petretto val (:func:`train_heads`), then :func:`evaluate_and_save` into ``out``.

    ``model_name``: a shipped model's name, or the path of a k-MVN checkpoint (e.g. a candidate
    ensemble from ``vgnn ensemble``, before it is shipped). ``members`` picks ensemble members by
    position (default: all); the metadata names them by their weights' sha256
    (``backbone_members_sha256``), so heads on members 0 and 1 stay valid when another member is
    retrained or added.

    With ``cfg.backbone_lr`` > 0 the heads get their own copies of those backbones
    (:class:`~vgnn_core.nn.born.BornBackbones`), fine-tuned with them and saved with them (their
    metadata then names the members they started from as ``initial_members_sha256``: the frozen
    members' features no longer fit them). ``init_heads`` (a :func:`save_heads` file fitted on the
    same members' frozen features) starts the heads from those weights, fine-tuned or not; its
    hyper-parameters are the heads', so ``cfg.heads`` must not contradict them. With
    ``cfg.physical_only`` (the default) training records no insulator has are left out of the fit
    and of the baseline (:func:`physical_targets`)."""
    from ..files import file_digest
    from ..nn.born import member_digest, networks

    cfg = cfg or BornTrainConfig()
    model, backbone = _load_kmvn(model_name)
    if not getattr(model, "supports_bands", False):
        raise ValueError(f"{model_name}: Born heads go on a k-MVN's backbones, not on a {model.kind.upper()}")
    heads_r_max = cfg.heads.get("r_max", inspect.signature(BornHeads).parameters["r_max"].default)
    if heads_r_max > model.config.r_max:
        raise ValueError(f"heads r_max {heads_r_max} Å exceeds the training graphs' cutoff {model.config.r_max} Å: "
                         "their bonds beyond it would appear only at prediction")
    nets = networks(model)
    digests = [member_digest(nets[k]) for k in (range(len(nets)) if members is None else members)]
    model = select_members(model, digests)
    init = None
    if init_heads is not None:
        init, init_meta = load_heads(init_heads)
        if isinstance(init, BornHeadsEnsemble):
            raise ValueError(f"{init_heads}: averaged heads cannot start a fit; start from one of the files averaged")
        if init_meta.get("backbone_members_sha256") != digests or init.irreps_in != backbone_irreps(model):
            raise ValueError(f"{init_heads}: those heads were fitted on other backbones than {model_name}'s chosen members")
        clash = {k: v for k, v in cfg.heads.items() if init.hyper.get(k) != v}
        if clash:
            raise ValueError(f"{init_heads}: --heads {clash} contradicts the initial heads' {init.hyper}")
    samples = load_split_samples(model, split_file, log)
    keep = physical_targets if cfg.physical_only else (lambda group, log: list(group))
    extra = keep(load_togo_train(model, log), log) if togo else []
    all_train = samples["train"]
    samples["train"] = keep(all_train, log)  # the heads and the baseline fit these
    left_out = sorted({s.material_id for s in all_train} - {s.material_id for s in samples["train"]})
    fit_on = samples["train"] + extra
    backbones = BornBackbones.copy_of(model) if cfg.backbone_lr > 0 else None
    heads, best = train_heads(fit_on, samples["val"], str(backbone_irreps(model)), cfg,
                              checkpoint=Path(out) / "born_heads.pt", log=log, backbones=backbones, init=init)
    if backbones is not None:  # evaluate on the fine-tuned backbones' features
        for group in [*samples.values(), extra]:
            attach_features(backbones, group)
    members_key = "initial_members_sha256" if backbones is not None else "backbone_members_sha256"
    metadata = {"best": best, "backbone": backbone, members_key: digests, "train_config": {**_plain(cfg), "heads": heads.hyper},
                "data": ["petretto2018"] + (["phonondb"] if togo else []), "n_train": len(fit_on),
                "left_out_of_training": left_out,
                "backbone_fine_tuned": backbones is not None}
    if init_heads is not None:
        metadata["init_heads"] = f"{Path(init_heads).name} (sha256 {file_digest(Path(init_heads))})"
    if extra:
        metadata["phonondb_train_fit"] = dielectric_metrics(extra, predict_heads(heads, extra))
    return evaluate_and_save(model, heads, samples, out, metadata, log, backbones)


def average(out: str | Path, heads_files: Sequence[str | Path], model_name: str = "kmvn",
            split_file: str | Path | None = None, log=print) -> dict:
    """Average heads fitted on the same frozen members (:class:`BornHeadsEnsemble`) and score the
    average like :func:`run` does (train / val / test, baseline, LO–TO on ``test``) into ``out``.

    ``model_name``: the k-MVN (shipped name or checkpoint path) whose members the heads read; every
    file must name the same members (``backbone_members_sha256``)."""
    from ..files import file_digest

    loaded = [load_heads(p) for p in heads_files]
    digests = {tuple(meta.get("backbone_members_sha256") or ()) for _, meta in loaded}
    if len(digests) != 1 or not next(iter(digests)):
        raise ValueError("the averaged heads must all be fitted on the same frozen backbone members")
    model, backbone = _load_kmvn(model_name)
    members = list(next(iter(digests)))
    model = select_members(model, members)
    samples = load_split_samples(model, split_file, log=log)
    samples["train"] = physical_targets(samples["train"], log)
    heads = BornHeadsEnsemble([h for h, _ in loaded])
    Path(out).mkdir(parents=True, exist_ok=True)
    kept = ("best", "train_config", "data", "n_train", "left_out_of_training", "scored_without")
    metadata = {"backbone": backbone, "backbone_members_sha256": members, "data": ["petretto2018"], "averaged": [
        {"file": f"{Path(p).name} (sha256 {file_digest(Path(p))})", **{k: meta[k] for k in kept if k in meta}}
        for p, (_, meta) in zip(heads_files, loaded)]}
    metadata["best"] = {"val_" + k: v for k, v in dielectric_metrics(samples["val"], predict_heads(heads, samples["val"])).items()}
    metadata["best"]["score"] = selection_score({k[4:]: v for k, v in metadata["best"].items()})
    return evaluate_and_save(model, heads, samples, out, metadata, log)


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m vgnn_core.training.born OUT [--backbone NAME|PATH] [--epochs N] [--togo] [--heads JSON]``, or
    ``... OUT --average HEADS.pt HEADS.pt ...`` to average heads fitted on the same members."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vgnn_core.training.born", description=main.__doc__)
    parser.add_argument("out", help="output folder (born_heads.pt, metrics.json)")
    parser.add_argument("--epochs", type=int, default=BornTrainConfig.epochs)
    parser.add_argument("--lr", type=float, default=BornTrainConfig.lr)
    parser.add_argument("--seed", type=int, default=BornTrainConfig.seed)
    parser.add_argument("--togo", action="store_true", help="also fit the BORN files of phonondb train")
    parser.add_argument("--heads", default="{}", help="BornHeads hyper-parameters as JSON")
    parser.add_argument("--backbone", default="kmvn",
                        help="shipped k-MVN name or checkpoint path whose backbones the heads read (default: kmvn)")
    parser.add_argument("--backbone-lr", type=float, default=BornTrainConfig.backbone_lr,
                        help="fine-tune copies of the backbones with the heads at this learning rate (default 0: frozen)")
    parser.add_argument("--init-heads", help="start from these heads (born_heads.pt fitted on the same members)")
    parser.add_argument("--average", nargs="+", metavar="HEADS",
                        help="instead of training: average these born_heads.pt files (fitted on the same members)")
    parser.add_argument("--all-records", action="store_true",
                        help="fit every training record, also those no insulator has (default: leave them out)")
    parser.add_argument("--members", help="comma-separated positions of the k-MVN members whose backbones "
                                          "the heads read (default: all)")
    args = parser.parse_args(argv)
    if args.average:
        return average(args.out, args.average, model_name=args.backbone)
    cfg = BornTrainConfig(epochs=args.epochs, lr=args.lr, heads=json.loads(args.heads), backbone_lr=args.backbone_lr,
                          physical_only=not args.all_records, seed=args.seed)
    members = None if args.members is None else [int(k) for k in args.members.split(",")]
    return run(args.out, model_name=args.backbone, cfg=cfg, togo=args.togo, members=members,
               init_heads=args.init_heads)


if __name__ == "__main__":
    main()
