"""Batched inference: structures in, phonon frequencies (cm⁻¹) out.

:class:`Predictor` wraps any :class:`~vgnn_core.nn.model.VGNN` (trained or not) and handles
validation, graph building, batching many crystals into one forward pass, grouping the
eigen-solves by matrix size, and conversion to numpy.

Polar crystals: ``predict_phonons(..., nac=True)`` adds the LO–TO splitting at Γ (by default
only the direction-dependent jump there; ``nac_mode="full"``: the whole Gonze–Lee dipole–dipole
term at every q, :mod:`vgnn_core.phonons.nac`) with Born charges Z* and ε∞ predicted by the
shipped Born heads on the model's backbone (:func:`~vgnn_core.pretrained.registry.load_born_model`),
except where :func:`nac_skip_reason` says the heads do not apply (metals, one-atom cells,
ε∞ beyond the training range or not finite); ``nac=BornCharges(...)`` (or one per structure) uses given charges.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .crystal.crystal import Crystal, as_crystal
from .crystal.domain import TrainingDomain
from .crystal.graph import CrystalGraph, collate, crystal_graph
from .crystal.structures import StructureLike
from .crystal.symmetry import PrimitiveSites
from .nn.copies import same_weights
from .nn.ensemble import MemberAgreement
from .nn.model import Model
from .nn.uncertainty import ErrorPredictors, UncertaintyModel
from .phonons.dynamical_matrix import band_frequencies, gamma_frequencies
from .phonons.force_constants import ForceConstants
from .phonons.nac import BornCharges
from .phonons.result import PhononResult, phonon_properties
from .pretrained.registry import load_pretrained_model
from .threads import map_threads
from .timing import THREADED_STEP, StageClock, maybe_stage

#: What ``nac`` may be: off (None / False), predicted charges (True), or given ones — one
#: :class:`~vgnn_core.phonons.nac.BornCharges` (a single structure) or one (or None) per structure.
NacOption = bool | BornCharges | Sequence[BornCharges | None] | None

#: Largest ε∞ eigenvalue the Born heads are trusted for: Petretto's DFPT ε∞ exceeds it for 4
#: of 1,521 materials only (near-metallic gaps, up to 4·10⁶); a larger prediction means (nearly)
#: metallic screening, where Z* and the LO–TO splitting lose their meaning.
MAX_EPSILON_INF = 100.0


#: :func:`nac_skip_reason` for charges that overflowed: not a gate the heads expect, so it is also warned of
NOT_FINITE_CHARGES = "predicted Z* or ε∞ not finite: far outside the training range"


def nac_skip_reason(structure, charges: BornCharges) -> str | None:
    """Why predicted Born charges are not applied to ``structure`` (``None``: they are).

    The heads were trained on gapped materials only (Petretto's DFPT), so NAC is skipped for
    a cell of one atom (Z* = 0 by the sum rule: nothing to correct), for a crystal whose elements
    are all metals (pymatgen's ``Element.is_metal``: an alloy or intermetallic, with no Born
    charges), where the predicted ε∞ has an eigenvalue above :data:`MAX_EPSILON_INF`, and where
    Z* or ε∞ is not finite (ε∞ = 1 + exp(S) overflows float32 for an S far outside training).
    """
    if len(structure) < 2:
        return "one atom in the cell: no LO–TO splitting"
    elements = structure.composition.elements
    if all(getattr(el, "is_metal", False) for el in elements):
        return f"all elements are metals ({', '.join(sorted(el.symbol for el in elements))}): no Born charges"
    if not (np.isfinite(charges.epsilon).all() and np.isfinite(charges.born).all()):
        return NOT_FINITE_CHARGES
    eps = float(np.linalg.eigvalsh(0.5 * (charges.epsilon + charges.epsilon.T)).max())
    if eps > MAX_EPSILON_INF:
        return f"predicted ε∞ {eps:.0f} above {MAX_EPSILON_INF:.0f}: (nearly) metallic screening"
    return None


#: ``predict_gamma``, ``predict_bands`` and ``predict_force_constants`` (:meth:`Predictor.graphs`)
#: use symmetry orbits for cells with at least this many graph edges: below it finding the
#: operations and the orbits (moyo's operations and the site maps, ~0.5 ms a cell; the orbits,
#: 0.1–1 ms) costs more wall time than the networks save (measured on 335 Togo cells, two
#: threads: break-even at ~400 edges, 2026-12-07; ~500 with spglib's 2–6 ms analysis before).
#: ``predict_phonons`` needs every cell's symmetry anyway (q-mesh, uncertainty), so it uses them
#: for all, and so do its Born charges.
ORBITS_MIN_EDGES = 400


class Predictor:
    """Γ spectra and band structures from a VGNN model.

    ``max_atoms_per_batch`` bounds how many atoms go through one forward pass; crystals are
    otherwise batched in input order, ``batch_size`` at a time. The network runs in the
    model's precision; D(q) is assembled and diagonalised in ``eig_dtype`` (float64 by
    default, so the zero acoustic modes are not lost to float32 round-off under the √).
    After the network, :meth:`predict_phonons` computes each crystal's bands, DOS and thermal
    properties on the CPU in ``cpu_threads`` threads (default: ``torch.get_num_threads()`` at
    the call, i.e. this process's cores, or 1 in a Dask worker); the results do not depend on it.
    With ``use_symmetry`` the networks run on one atom and one bond of each orbit under the cell's
    exact symmetry operations and rotate the result to the rest (:mod:`vgnn_core.nn.orbits`):
    the same force constants to float32 round-off, exactly symmetric, in ~40 % of the network time
    of a typical cell (:data:`ORBITS_MIN_EDGES`); ``False`` runs them on every atom and bond.
    """

    def __init__(
        self,
        model: Model,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_atoms_per_batch: int = 4096,
        eig_dtype: torch.dtype = torch.float64,
        cpu_threads: int | None = None,
        born_model: torch.nn.Module | None = None,
        use_symmetry: bool = True,
    ):
        self.device = torch.device(device)
        self.use_symmetry = bool(use_symmetry)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.max_atoms_per_batch = int(max_atoms_per_batch)
        self.eig_dtype = eig_dtype
        self.cpu_threads = cpu_threads
        self._born_model = born_model
        self._born_error: str | None = None  # why no Born model fits (found once, then remembered)

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def graphs(self, structures: Sequence[StructureLike], min_orbit_edges: int = ORBITS_MIN_EDGES) -> list[CrystalGraph]:
        """Validate every input and build its crystal graph (raises on the first bad one), with
        symmetry orbits (``use_symmetry``) for the graphs of at least ``min_orbit_edges`` edges."""
        if not isinstance(structures, (list, tuple)):
            structures = [structures]
        r_max = self.model.config.graph_cutoff
        return [crystal_graph(as_crystal(s), r_max, self.use_symmetry, min_orbit_edges) for s in structures]

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
        """The predicted force constants Φ_ij(T) (k-MVN) or Γ pair blocks (MVN), in eV/Å²."""
        return self._force_constants(self.graphs(structures))

    def _force_constants(self, graphs: Sequence[CrystalGraph]) -> list[ForceConstants]:
        return self._force_constants_and_agreement(graphs)[0][0]

    @property
    def born_model(self) -> torch.nn.Module:
        """The Born-charge model on this model's backbone (the shipped heads, loaded on first use)."""
        if self._born_model is None:
            from .pretrained.registry import PretrainedNotAvailableError, load_born_model

            if self._born_error is None:
                try:
                    self._born_model = load_born_model(self.model, device=str(self.device))
                except (ValueError, PretrainedNotAvailableError) as exc:
                    self._born_error = f"predicted Born charges (nac=True) need the shipped k-MVN's backbone: {exc}"
            if self._born_model is None:
                raise ValueError(self._born_error)
        return self._born_model

    @property
    def predicts_born_charges(self) -> bool:
        """Whether this predictor can add NAC with predicted charges (``nac=True``): a k-MVN with
        Born heads that fit its backbone (the shipped ones fit the shipped k-MVN), or heads with
        backbones of their own."""
        if not self.model.supports_bands:
            return False
        try:
            return self.born_model is not None
        except ValueError:
            return False

    def predict_born_charges(self, structures: Sequence[StructureLike]) -> list[BornCharges]:
        """Predicted Z* (e, neutral) and ε∞ of every structure, ungated (see :func:`nac_skip_reason`);
        the charges :meth:`predict_phonons` gives with ``nac=True`` (orbits for every cell, as there).
        Far outside the training range ε∞ can be NaN (exp(S) past float32's range)."""
        graphs = self.graphs(structures, min_orbit_edges=0)
        out: list[BornCharges] = []
        with torch.inference_mode():
            for _, batch in self._each_batch(graphs):
                out += self.born_model.predict(batch)
        return out

    def _force_constants_and_agreement(
        self, graphs: Sequence[CrystalGraph], born: list | None = None, companion: Predictor | None = None,
        rotations: Sequence[np.ndarray | None] | None = None,
        primitive_sites: Sequence[PrimitiveSites | None] | None = None,
    ) -> list[tuple[list[ForceConstants], list[MemberAgreement | None]]]:
        """Force constants and, for an ensemble, how far its members agree on each crystal
        (None for a single network): ``[(fcs, agreements)]``, then the same for ``companion``
        (a predictor running the same networks, :func:`networks_shared`) from the same passes.

        With a list ``born``, the Born model's charges of every crystal are appended to it,
        predicted on the same batches. ``rotations`` (each crystal's exact point-group rotations,
        :attr:`~vgnn_core.crystal.crystal.Crystal.mesh_rotations`) let an ensemble measure its
        members' agreement at the q-points that differ under them only; ``primitive_sites``
        (:attr:`~vgnn_core.crystal.crystal.Crystal.primitive_sites`) on the primitive cell's modes."""
        for name, given in (("rotations", rotations), ("primitive sites", primitive_sites)):
            if given is not None and len(given) != len(graphs):
                raise ValueError(f"{len(given)} crystals' {name} for {len(graphs)} graphs")
        if not self.model.has_force_constants:
            raise ValueError(f"a {self.kind.upper()} predicts frequencies directly; it has no force constants")
        models = [self.model] + ([companion.model] if companion is not None else [])
        out: list[tuple[list, list]] = [([], []) for _ in models]
        # the Born heads read the same backbones as the force constants: run them once per batch
        positions = getattr(self.born_model, "member_positions", None) if born is not None else None
        shared = positions(self.model) if positions is not None else None
        with torch.inference_mode():
            for idx, batch in self._each_batch(graphs):
                features = None  # the backbones' output, when the Born heads need it too
                symmetry = {key: [given[k] for k in idx] for key, given in
                            (("rotations", rotations), ("primitive_sites", primitive_sites)) if given is not None}
                if shared is not None:
                    features = self.model.encode(batch)
                    per_member = features if isinstance(features, list) else [features]
                    born += self.born_model.predict(batch, [per_member[k].h for k in shared])
                elif born is not None:
                    born += self.born_model.predict(batch)
                # with a companion, the networks run once here and both models assemble their blocks
                member_blocks = self.model.member_bond_blocks(batch, features) if companion is not None else None
                for model, (fcs, agreements) in zip(models, out):
                    agreement_of = getattr(model, "force_constants_and_agreement", None)
                    if agreement_of is None:  # any other model with force constants: one network
                        fcs += model.force_constants(batch) if features is None else model.force_constants(batch, features)
                        agreements += [None] * batch.n_graphs
                        continue
                    f, agreement = agreement_of(batch, features, member_blocks=member_blocks, **symmetry)
                    fcs += f
                    agreements += agreement
        return out

    @property
    def uncertainty_model(self) -> UncertaintyModel:
        """From the members' agreement to the expected per-material MAE (cm⁻¹), fitted on the
        validation splits when the model was shipped (the bare spread when it was not)."""
        metadata = getattr(self.model, "checkpoint_metadata", {})
        return UncertaintyModel.from_metadata(metadata) or UncertaintyModel.proportional(1.0)

    @functools.cached_property
    def domain(self) -> TrainingDomain | None:
        """The model's :class:`~vgnn_core.crystal.domain.TrainingDomain`, when its checkpoint records it."""
        d = getattr(self.model, "checkpoint_metadata", {}).get("domain")
        return TrainingDomain.from_dict(d) if d else None

    def domain_notes(self, graphs: Sequence[CrystalGraph], crystals: Sequence[Crystal] | None = None) -> list[str | None]:
        """Per crystal: ``None`` when in the training domain (or unknown), else why not. With the
        graphs' ``crystals``, a cell larger than any training cell is sized by its primitive cell."""
        domain = self.domain
        if domain is None:
            return [None] * len(graphs)
        if crystals is None:
            return [domain.why_outside(g) for g in graphs]
        return [domain.why_outside(g, lambda c=c: c.primitive_atoms) for g, c in zip(graphs, crystals, strict=True)]

    def predict_phonons(
        self,
        structures: Sequence[StructureLike | Crystal],
        names: Sequence[str] | None = None,
        bands: bool = True,
        thermal: bool = True,
        nac: NacOption = None,
        nac_mode: str = "gamma",
        clock: StageClock | None = None,
        **mesh_options,
    ) -> list[PhononResult]:
        """Full :class:`~vgnn_core.phonons.result.PhononResult` per structure (k-MVN: Γ, bands
        along the high-symmetry path, DOS and thermal properties; MVN / VVN: Γ only), with the
        ensemble's uncertainty, its members' lowest mode (``member_lowest_cm1``, behind
        ``likely_unstable``) and the training-domain flag.

        ``nac`` (k-MVN only): ``True`` applies the LO–TO correction with predicted Z*/ε∞ where
        :func:`nac_skip_reason` allows it; a :class:`~vgnn_core.phonons.nac.BornCharges` (one
        structure) or a sequence of them (``None`` entries: no correction) is applied as given.
        ``nac_mode="gamma"`` (default) adds only the direction-dependent LO–TO jump at Γ to the
        network's force constants, which already hold the analytic long-range part (on Petretto
        ``val`` it leaves the band MAE as it is and about halves the LO error at Γ: the README's
        LO–TO table, from ``vgnn_core.training.nac_eval``); ``"full"`` takes them as short-range
        and adds the whole Gonze–Lee term at every q (on ``val`` the bands get much worse: the
        long-range part is then counted twice). ``PhononResult.has_nac`` says whether a crystal got it.

        :class:`~vgnn_core.crystal.crystal.Crystal` inputs are used as they are: neither
        validated nor symmetry-analysed again.

        ``clock`` (a :class:`~vgnn_core.timing.StageClock`) counts the seconds of each stage:
        ``graph``, ``network``, ``solves`` (MVN), ``bands`` and ``dos_thermo`` (k-MVN).
        """
        return self._predict_phonons(structures, names, bands, thermal, nac, nac_mode, clock, mesh_options)[0]

    def predict_phonons_and_gamma(
        self,
        gamma: Predictor,
        structures: Sequence[StructureLike | Crystal],
        names: Sequence[str] | None = None,
        nac: NacOption = None,
        nac_mode: str = "gamma",
        clock: StageClock | None = None,
        **mesh_options,
    ) -> tuple[list[PhononResult], list[PhononResult]]:
        """This k-MVN's :meth:`predict_phonons` and ``gamma``'s Γ spectra (an MVN of the same
        networks, :func:`networks_shared`: the shipped MVN is the shipped k-MVN's members summed
        per atom pair) from one forward pass per batch.

        Returns ``(results, gamma_results)``: the same as ``predict_phonons(structures, ...)`` and
        ``gamma.predict_phonons(structures, bands=False, thermal=False)``, each with its own
        calibrated uncertainty, at about the network cost of one of them.
        """
        if not self.model.supports_bands:
            raise ValueError(f"predict_phonons_and_gamma needs a k-MVN; this is a {self.kind.upper()}")
        if gamma.kind != "mvn":
            raise ValueError(f"predict_phonons_and_gamma's Γ model is an MVN, not a {gamma.kind.upper()}")
        if not networks_shared(self, gamma):
            raise ValueError(f"the {gamma.kind.upper()} does not run this k-MVN's networks on the same "
                             "graphs and batches: predict with each separately")
        return self._predict_phonons(structures, names, True, True, nac, nac_mode, clock, mesh_options, gamma)

    def _predict_phonons(self, structures, names, bands, thermal, nac, nac_mode, clock, mesh_options,
                         companion: Predictor | None = None) -> tuple[list[PhononResult], list[PhononResult] | None]:
        """:meth:`predict_phonons`, and with ``companion`` (an MVN of the same networks) its Γ results."""
        items = structures if isinstance(structures, (list, tuple)) else [structures]
        names = None if names is None else list(names)
        if names is not None and len(names) != len(items):  # zip() below would drop the unnamed structures' results
            raise ValueError(f"{len(names)} names for {len(items)} structures")
        with maybe_stage(clock, "graph"):  # a bad structure's error names it as the caller did (a file: its name)
            crystals = [as_crystal(s, name=None if n is None else str(n))
                        for s, n in zip(items, names if names is not None else [None] * len(items))]
            structures = [c.structure for c in crystals]
            r_max = self.model.config.graph_cutoff
            graphs = [crystal_graph(c, r_max, self.use_symmetry) for c in crystals]  # validated once, just above
        if names is None:
            names = [c.structure.properties.get("material_id") or c.structure.composition.reduced_formula
                     for c in crystals]
        if nac is not None and nac is not False and not self.model.supports_bands:
            raise ValueError(f"the LO–TO correction (nac) needs a k-MVN's force constants, not a {self.kind.upper()}")
        companion_out = None
        if not self.model.has_force_constants:
            with maybe_stage(clock, "network"):  # a VVN's network gives the frequencies themselves
                gammas = self.spectra_from_graphs(graphs)[0]
            results = [PhononResult(n, s, g) for n, s, g in zip(names, structures, gammas)]
            agreements = [None] * len(results)
        else:
            results, agreements, companion_out = self._force_constant_results(
                graphs, crystals, names, bands, thermal, dict(mesh_options, nac_mode=nac_mode), nac, clock, companion)
        self._add_trust(results, agreements, graphs, crystals, clock)
        if companion_out is not None:
            companion._add_trust(*companion_out, graphs, crystals, clock)
            return results, companion_out[0]
        return results, None

    def _add_trust(self, results: list[PhononResult], agreements: Sequence[MemberAgreement | None],
                   graphs: Sequence[CrystalGraph], crystals: Sequence[Crystal], clock: StageClock | None = None) -> None:
        """Each result's calibrated uncertainty, members' lowest mode and training-domain flag."""
        expected_error = self.uncertainty_model
        with maybe_stage(clock, "graph"):
            notes = self.domain_notes(graphs, crystals)
            # the primitive cell's size needs a symmetry search (kept on the Crystal): only when used
            primitive = [c.primitive_atoms if expected_error.atoms and a is not None else 1
                         for c, a in zip(crystals, agreements)]
        known_domain = self.domain is not None
        for r, agreement, note, g, n in zip(results, agreements, notes, graphs, primitive):
            if agreement is not None:
                r.uncertainty_cm1 = expected_error(ErrorPredictors(
                    spread_cm1=agreement.spread_cm1, highest_cm1=agreement.highest_cm1, lowest_cm1=agreement.lowest_cm1,
                    has_hydrogen=bool((g.numbers == 1).any()), primitive_atoms=n))
                r.member_lowest_cm1 = agreement.lowest_cm1
            r.in_domain = (note is None) if known_domain else None
            r.domain_note = note

    def _given_charges(self, nac: NacOption, structures: Sequence) -> list[BornCharges | None]:
        """Given Born charges, one (or None) per structure, checked against each cell's size."""
        given = [nac] if isinstance(nac, BornCharges) else list(nac)
        if len(given) != len(structures):
            raise ValueError(f"{len(structures)} structures but {len(given)} Born charges (nac)")
        for s, z in zip(structures, given):
            if z is not None and np.shape(z.born) != (len(s), 3, 3):
                raise ValueError(f"{s.composition.reduced_formula}: Born charges of shape {np.shape(z.born)} "
                                 f"for a cell of {len(s)} atoms")
        return given

    def _force_constant_results(self, graphs, crystals, names, bands, thermal, mesh_options, nac=None, clock=None,
                                companion: Predictor | None = None):
        """PhononResults of force-constant models and how far an ensemble's members agree on each;
        with ``companion`` (an MVN of the same networks) also its Γ ``(results, agreements)``."""
        structures = [c.structure for c in crystals]
        predicted: list | None = [] if nac is True else None
        if predicted is not None:
            self.born_model  # noqa: B018 - loaded (once) before the network is timed
        rotations = cells = None  # a k-MVN ensemble's agreement: on the primitive cell, at the q-points its rotations tell apart
        if self.model.kind == "kmvn" and hasattr(self.model, "members"):
            with maybe_stage(clock, "graph"):  # kept on each Crystal: its mesh is reduced by them too
                rotations = [c.mesh_rotations for c in crystals]
                cells = [c.primitive_sites for c in crystals]
        with maybe_stage(clock, "network"):
            outputs = self._force_constants_and_agreement(graphs, predicted, companion, rotations, cells)
            outputs = [([fc.cpu() for fc in fcs], agreements) for fcs, agreements in outputs]  # the rest runs on the CPU
        fcs, agreements = outputs[0]
        companion_out = None
        if companion is not None:
            companion_out = (companion._gamma_results(outputs[1][0], names, structures, clock), outputs[1][1])
        if predicted is not None:
            reasons = [nac_skip_reason(s, z) for s, z in zip(structures, predicted)]
            for name, reason in zip(names, reasons):
                if reason == NOT_FINITE_CHARGES:
                    warnings.warn(f"{name}: no LO–TO correction: {reason}", RuntimeWarning, stacklevel=3)
            charges = [None if reason else z for z, reason in zip(predicted, reasons)]
        elif nac is None or nac is False:
            charges = [None] * len(structures)
        else:
            charges = self._given_charges(nac, structures)
        if not self.model.supports_bands:
            return self._gamma_results(fcs, names, structures, clock), agreements, companion_out

        def properties(job: tuple) -> PhononResult:
            fc, c, n, z = job
            return phonon_properties(fc, c, name=n, bands=bands, thermal=thermal, born=z, clock=clock, **mesh_options)

        threads = self.cpu_threads or torch.get_num_threads()
        with maybe_stage(clock, THREADED_STEP):
            results = map_threads(properties, list(zip(fcs, crystals, names, charges)), threads)
        return results, agreements, companion_out

    def _gamma_results(self, fcs: Sequence[ForceConstants], names, structures, clock=None) -> list[PhononResult]:
        """Γ-only PhononResults from force constants (an MVN's, or any model's at Γ)."""
        with maybe_stage(clock, "solves"):
            gammas = [w.numpy() for w in gamma_frequencies([fc.to(self.eig_dtype) for fc in fcs])]
        return [PhononResult(n, s, g) for n, s, g in zip(names, structures, gammas)]


def networks_shared(a: Predictor, b: Predictor) -> bool:
    """Whether ``a`` and ``b`` run the same networks on the same graphs and batches, so one
    forward pass serves both (:meth:`Predictor.predict_phonons_and_gamma`): force-constant models
    whose networks differ at most in the kind (the shipped MVN and k-MVN), with equal weights,
    on one device, in one precision, batched alike."""
    ma, mb = a.model, b.model
    if not (ma.has_force_constants and mb.has_force_constants):
        return False
    if (a.device, a.dtype, a.batch_size, a.max_atoms_per_batch) != (b.device, b.dtype, b.batch_size, b.max_atoms_per_batch):
        return False
    if ma is mb:
        return True
    nets_a = list(getattr(ma, "members", [ma]))
    nets_b = list(getattr(mb, "members", [mb]))
    if len(nets_a) != len(nets_b):
        return False
    return all(x.config.same_network(y.config) and same_weights(x.state_dict(), y.state_dict())
               for x, y in zip(nets_a, nets_b))


def load_pretrained(name: str, device: str | torch.device = "cpu", **kwargs) -> Predictor:
    """A :class:`Predictor` around the shipped checkpoint ``name`` (``kmvn``, ``mvn``, ``vvn``)."""
    return Predictor(load_pretrained_model(name, device=str(device)), device=device, **kwargs)
