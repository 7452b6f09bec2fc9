"""Batched inference: structures in, phonon frequencies (cm⁻¹) out.

:class:`Predictor` wraps any :class:`~vgnn_core.nn.model.VGNN` (trained or not) and handles
validation, graph building, batching many crystals into one forward pass, grouping the
eigen-solves by matrix size, and conversion to numpy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .crystal.crystal import Crystal, as_crystal
from .crystal.domain import TrainingDomain
from .crystal.graph import CrystalGraph, build_graph, collate
from .crystal.structures import StructureLike, as_structure
from .nn.model import Model
from .phonons.dynamical_matrix import band_frequencies, gamma_frequencies
from .phonons.force_constants import ForceConstants
from .phonons.result import PhononResult, phonon_properties
from .pretrained.registry import load_pretrained_model
from .threads import map_threads


class Predictor:
    """Γ spectra and band structures from a VGNN model.

    ``max_atoms_per_batch`` bounds how many atoms go through one forward pass; crystals are
    otherwise batched in input order, ``batch_size`` at a time. The network runs in the
    model's precision; D(q) is assembled and diagonalised in ``eig_dtype`` (float64 by
    default, so the zero acoustic modes are not lost to float32 round-off under the √).
    After the network, :meth:`predict_phonons` computes each crystal's bands, DOS and thermal
    properties on the CPU in ``cpu_threads`` threads (default: ``torch.get_num_threads()`` at
    the call, i.e. this process's cores, or 1 in a Dask worker); the results do not depend on it.
    """

    def __init__(
        self,
        model: Model,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_atoms_per_batch: int = 4096,
        eig_dtype: torch.dtype = torch.float64,
        cpu_threads: int | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.max_atoms_per_batch = int(max_atoms_per_batch)
        self.eig_dtype = eig_dtype
        self.cpu_threads = cpu_threads

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def graphs(self, structures: Sequence[StructureLike]) -> list[CrystalGraph]:
        """Validate every input and build its crystal graph (raises on the first bad one)."""
        if not isinstance(structures, (list, tuple)):
            structures = [structures]
        r_max = self.model.config.graph_cutoff
        return [build_graph(as_structure(s, check_overlaps=False), r_max) for s in structures]

    def _batches(self, graphs: Sequence[CrystalGraph]) -> Iterator[list[int]]:
        current: list[int] = []
        atoms = 0
        for k, g in enumerate(graphs):
            if current and (len(current) >= self.batch_size or atoms + g.n_atoms > self.max_atoms_per_batch):
                yield current
                current, atoms = [], 0
            current.append(k)
            atoms += g.n_atoms
        if current:
            yield current

    def _each_batch(self, graphs: Sequence[CrystalGraph]) -> Iterator[tuple[list[int], object]]:
        for idx in self._batches(graphs):
            yield idx, collate([graphs[k] for k in idx], dtype=self.dtype, device=self.device)

    def spectra_from_graphs(
        self,
        graphs: Sequence[CrystalGraph],
        qpoints: Sequence[np.ndarray] | None = None,
        gamma: bool = True,
    ) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
        """Γ spectra and/or band structures of prebuilt graphs, one forward pass per batch.

        Returns ``(gamma, bands)``: lists of (3m,) and (n_q, 3m) arrays in cm⁻¹ (``None`` for
        what was not asked: ``gamma=False``, or ``qpoints`` not given).
        """
        if qpoints is not None and not self.model.supports_bands:
            raise ValueError(
                f"a {self.kind.upper()} model predicts Γ frequencies only; load 'kmvn' for bands"
            )
        if qpoints is not None and len(qpoints) != len(graphs):
            raise ValueError(f"{len(graphs)} structures but {len(qpoints)} q-point arrays")
        out_gamma: list[np.ndarray] | None = [] if gamma else None
        out_bands: list[np.ndarray] | None = [] if qpoints is not None else None
        with torch.inference_mode():
            for idx, batch in self._each_batch(graphs):
                if not self.model.has_force_constants:
                    out_gamma += [w.cpu().numpy() for w in self.model.gamma_frequencies(batch)]
                    continue
                fcs = [fc.to(self.eig_dtype) for fc in self.model.force_constants(batch)]
                if gamma:
                    out_gamma += [w.cpu().numpy() for w in gamma_frequencies(fcs)]
                if qpoints is not None:
                    qs = [
                        torch.as_tensor(np.asarray(qpoints[k], dtype=float).reshape(-1, 3), dtype=self.eig_dtype, device=self.device)
                        for k in idx
                    ]
                    out_bands += [w.cpu().numpy() for w in band_frequencies(fcs, qs)]
        return out_gamma, out_bands

    def predict_gamma(self, structures: Sequence[StructureLike]) -> list[np.ndarray]:
        """Γ frequencies (cm⁻¹, signed, sorted), one (3m,) array per structure."""
        return self.spectra_from_graphs(self.graphs(structures))[0]

    def predict_bands(
        self, structures: Sequence[StructureLike], qpoints: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Frequencies (cm⁻¹, signed, sorted per q) at fractional ``qpoints`` of each structure.

        ``qpoints[k]`` is an (n_q, 3) array in the reciprocal basis of ``structures[k]``.
        Returns one (n_q, 3m) array per structure.
        """
        if not self.model.supports_bands:
            raise ValueError(
                f"a {self.kind.upper()} model predicts Γ frequencies only; load 'kmvn' for bands"
            )
        return self.spectra_from_graphs(self.graphs(structures), qpoints, gamma=False)[1]

    def predict_force_constants(self, structures: Sequence[StructureLike]) -> list[ForceConstants]:
        """The predicted force constants Φ_ij(T) (k-MVN) or Γ pair blocks (MVN)."""
        return self._force_constants(self.graphs(structures))

    def _force_constants(self, graphs: Sequence[CrystalGraph]) -> list[ForceConstants]:
        return self._force_constants_and_uncertainty(graphs)[0]

    def _force_constants_and_uncertainty(
        self, graphs: Sequence[CrystalGraph]
    ) -> tuple[list[ForceConstants], list[float | None]]:
        """Force constants and, for an ensemble, each crystal's calibrated uncertainty (cm⁻¹)."""
        fcs: list[ForceConstants] = []
        uncertainty: list[float | None] = []
        spread_of = getattr(self.model, "force_constants_and_spread", None)
        with torch.inference_mode():
            for _, batch in self._each_batch(graphs):
                if spread_of is None:
                    fcs += self.model.force_constants(batch)
                    uncertainty += [None] * batch.n_graphs
                else:
                    f, spread = spread_of(batch)
                    fcs += f
                    uncertainty += [self.uncertainty_scale * u for u in spread]
        return fcs, uncertainty

    @property
    def uncertainty_scale(self) -> float:
        """Factor from the members' spread to the expected per-material MAE (cm⁻¹), calibrated
        on the validation split when the model was shipped (1 when it was not)."""
        return float(getattr(self.model, "checkpoint_metadata", {}).get("uncertainty_scale", 1.0))

    @functools.cached_property
    def domain(self) -> TrainingDomain | None:
        """The model's :class:`~vgnn_core.crystal.domain.TrainingDomain`, when its checkpoint records it."""
        d = getattr(self.model, "checkpoint_metadata", {}).get("domain")
        return TrainingDomain.from_dict(d) if d else None

    def domain_notes(self, graphs: Sequence[CrystalGraph]) -> list[str | None]:
        """Per crystal: ``None`` when in the training domain (or unknown), else why not."""
        domain = self.domain
        return [domain.why_outside(g) if domain is not None else None for g in graphs]

    def predict_phonons(
        self,
        structures: Sequence[StructureLike | Crystal],
        names: Sequence[str] | None = None,
        bands: bool = True,
        thermal: bool = True,
        **mesh_options,
    ) -> list[PhononResult]:
        """Full :class:`~vgnn_core.phonons.result.PhononResult` per structure (k-MVN: Γ, bands
        along the high-symmetry path, DOS and thermal properties; MVN / VVN: Γ only), with the
        ensemble's uncertainty and the training-domain flag.

        :class:`~vgnn_core.crystal.crystal.Crystal` inputs are used as they are: neither
        validated nor symmetry-analysed again.
        """
        items = structures if isinstance(structures, (list, tuple)) else [structures]
        crystals = [as_crystal(s) for s in items]
        structures = [c.structure for c in crystals]
        names = list(names) if names is not None else [
            c.structure.properties.get("material_id") or c.structure.composition.reduced_formula for c in crystals]
        r_max = self.model.config.graph_cutoff
        graphs = [build_graph(s, r_max) for s in structures]  # validated once, just above
        notes = self.domain_notes(graphs)
        known_domain = self.domain is not None
        if not self.model.has_force_constants:
            gammas = self.spectra_from_graphs(graphs)[0]
            results = [PhononResult(n, s, g) for n, s, g in zip(names, structures, gammas)]
            uncertainty = [None] * len(results)
        else:
            results, uncertainty = self._force_constant_results(graphs, crystals, names, bands, thermal, mesh_options)
        for r, u, note in zip(results, uncertainty, notes):
            r.uncertainty_cm1 = u
            r.in_domain = (note is None) if known_domain else None
            r.domain_note = note
        return results

    def _force_constant_results(self, graphs, crystals, names, bands, thermal, mesh_options):
        """PhononResults of force-constant models, and each crystal's uncertainty."""
        structures = [c.structure for c in crystals]
        fcs, uncertainty = self._force_constants_and_uncertainty(graphs)
        fcs = [fc.cpu() for fc in fcs]  # the rest runs on the CPU
        if not self.model.supports_bands:
            gammas = [w.numpy() for w in gamma_frequencies([fc.to(self.eig_dtype) for fc in fcs])]
            results = [PhononResult(n, s, g) for n, s, g in zip(names, structures, gammas)]
        else:
            def properties(job: tuple) -> PhononResult:
                fc, c, n = job
                return phonon_properties(fc, c, name=n, bands=bands, thermal=thermal, **mesh_options)

            threads = self.cpu_threads or torch.get_num_threads()
            results = map_threads(properties, list(zip(fcs, crystals, names)), threads)
        return results, uncertainty


def load_pretrained(name: str, device: str | torch.device = "cpu", **kwargs) -> Predictor:
    """A :class:`Predictor` around the shipped checkpoint ``name`` (``kmvn``, ``mvn``, ``vvn``)."""
    return Predictor(load_pretrained_model(name, device=str(device)), device=device, **kwargs)
