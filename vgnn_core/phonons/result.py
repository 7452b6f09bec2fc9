"""Everything a k-MVN prediction gives for one crystal: Γ modes, bands, DOS, thermal properties.

:func:`phonon_properties` turns force constants into a :class:`PhononResult`;
:meth:`vgnn_core.Predictor.predict_phonons` runs the network batched and calls it per crystal.

Polar crystals: given Born charges and ε∞ (a :class:`~vgnn_core.phonons.nac.BornCharges`),
:func:`phonon_properties` adds their dipole–dipole term as ``nac_mode`` says: ``"full"`` (its
default; phonopy's NAC) takes the force constants as short-range and adds the whole Gonze–Lee term
at every q; ``"gamma"`` (the :class:`~vgnn_core.Predictor`'s default) takes them as the full ones
and adds only the direction-dependent jump at Γ. Along the band path each segment through Γ
approaches it from its own direction (LO–TO splitting), the mesh (DOS, thermal properties) needs
no direction (at Γ itself: TO), and the Γ frequencies are the TO ones;
:meth:`PhononResult.gamma_along` gives LO + TO along a direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ..crystal.crystal import as_crystal
from ..timing import StageClock, maybe_stage
from .centrosymmetric import InversionPairs, inversion_pairs
from .dos import DEFAULT_SIGMA_CM1, PhononDOS, phonon_dos
from .dynamical_matrix import (
    band_frequencies,
    eigenvalues_to_cm1,
    gamma_dynamical_matrices_along,
    gamma_frequencies,
)
from .force_constants import ForceConstants
from .mesh import DEFAULT_MESH_DENSITY, QMesh, mesh_for
from .modes import modes
from .nac import BornCharges, GammaJumpCorrection, NonAnalyticCorrection, path_q_directions
from .qpath import QPath, high_symmetry_path
from .thermal import ThermalProperties, thermal_properties
from .units import INSTABILITY_THRESHOLD_CM1

if TYPE_CHECKING:
    from ..crystal.symmetry import Inversion


@dataclass
class PhononResult:
    """Predicted phonons of one crystal (frequencies in cm⁻¹; see each field's module)."""

    name: str
    structure: object  # pymatgen Structure
    gamma: np.ndarray  # (3m,)
    qpath: QPath | None = None
    bands: np.ndarray | None = None  # (n_q, 3m) along qpath
    mesh: QMesh | None = None
    dos: PhononDOS | None = None
    thermal: ThermalProperties | None = None
    force_constants: ForceConstants | None = None
    #: expected per-material MAE (cm⁻¹) from an ensemble's spread, the crystal's frequency scale,
    #: hydrogen, primitive-cell size and the members' lowest mode, fitted on val
    #: (:class:`~vgnn_core.nn.uncertainty.UncertaintyModel`); None for a single network
    uncertainty_cm1: float | None = None
    #: elements, cell size and bonding all seen in training (None: the model records no domain)
    in_domain: bool | None = None
    #: why the crystal is outside the training domain (None when inside or unknown)
    domain_note: str | None = None
    #: an ensemble's lowest frequency of any single member at Γ and the zone-boundary points of
    #: the 2×2×2 grid (MVN: Γ), cm⁻¹ signed, without NAC; None for a single network
    member_lowest_cm1: float | None = None
    #: Born charges and ε∞ of the non-analytic correction (None: no NAC); ``gamma`` holds the TO
    #: frequencies, and ``force_constants`` are the full ones (``nac_mode="gamma"``, the
    #: Predictor's default) or the short-range ones (``"full"``, :func:`phonon_properties`' default)
    born: BornCharges | None = None
    nac: NonAnalyticCorrection | None = field(default=None, repr=False)

    @property
    def has_nac(self) -> bool:
        """Whether the dipole–dipole (LO–TO) correction is applied."""
        return self.nac is not None

    @property
    def spectrum(self) -> np.ndarray:
        """The widest set of predicted frequencies (cm⁻¹): the bands when there are some, else Γ."""
        return self.bands if self.bands is not None else self.gamma

    @property
    def lowest_frequency_cm1(self) -> float:
        """The lowest predicted frequency (cm⁻¹, signed) of :attr:`spectrum`."""
        return float(np.min(self.spectrum))

    @property
    def likely_unstable(self) -> bool:
        """Whether the crystal is probably dynamically unstable: the prediction, or any ensemble
        member on its own, has a mode below :data:`INSTABILITY_THRESHOLD_CM1`."""
        lowest = self.lowest_frequency_cm1
        if self.member_lowest_cm1 is not None:
            lowest = min(lowest, self.member_lowest_cm1)
        return bool(lowest < INSTABILITY_THRESHOLD_CM1)

    @property
    def born_charges(self) -> np.ndarray | None:
        """Z* (n_atoms, 3, 3) in e, ``[i, α, β] = ∂P_α/∂u_iβ`` (None without NAC)."""
        return None if self.born is None else self.born.born

    @property
    def epsilon_inf(self) -> np.ndarray | None:
        """ε∞ (3, 3), dimensionless (None without NAC)."""
        return None if self.born is None else self.born.epsilon

    def gamma_along(self, direction: Sequence[float] | np.ndarray) -> np.ndarray:
        """Frequencies (cm⁻¹) at Γ approached along ``direction`` (fractional, in the reciprocal
        basis, as phonopy's ``nac_q_direction``): the LO modes split from the TO ones. One
        direction (3,) gives (3m,); several (k, 3) give (k, 3m), solved together. Without NAC, or
        with a zero direction, they are :attr:`gamma`."""
        if self.force_constants is None:
            raise ValueError(f"{self.name}: the result holds no force constants to solve Γ along a direction")
        d = np.asarray(direction, dtype=float)
        if not (d.shape == (3,) or (d.ndim == 2 and d.shape[1] == 3)):
            raise ValueError(f"{self.name}: a direction is (3,) and several are (k, 3), got shape {d.shape}")
        if self.nac is None:
            w = np.repeat(np.asarray(self.gamma)[None], len(d.reshape(-1, 3)), axis=0)
        else:  # D at Γ along a direction is real: one real eigen-solve per direction
            mats = gamma_dynamical_matrices_along(self.force_constants, self.nac, d.reshape(-1, 3))
            w = eigenvalues_to_cm1(torch.linalg.eigvalsh(mats)).numpy()
        return w if d.ndim == 2 else w[0]

    def lo_to_splitting(self, direction: Sequence[float] | np.ndarray) -> np.ndarray:
        """ω(Γ along ``direction``) − ω_TO(Γ) per mode (cm⁻¹; (3m,), or (k, 3m) for k directions as
        in :meth:`gamma_along`), both sorted: zero without NAC."""
        return self.gamma_along(direction) - self.gamma

    def summary(self, temperature: float = 300.0) -> dict:
        """The headline numbers: Γ modes, extremes, C_v / S / F at ``temperature``, ZPE."""
        out = {
            "name": self.name,
            "formula": self.structure.composition.reduced_formula,
            "n_atoms": len(self.structure),
            "gamma_cm1": [round(float(w), 3) for w in self.gamma],
            "max_frequency_cm1": float(np.max(self.spectrum)),
            "min_frequency_cm1": self.lowest_frequency_cm1,
            "likely_unstable": self.likely_unstable,
            "uncertainty_cm1": None if self.uncertainty_cm1 is None else round(float(self.uncertainty_cm1), 2),
            "in_domain": self.in_domain,
        }
        if self.domain_note:
            out["domain_note"] = self.domain_note
        if self.has_nac:
            out["has_nac"] = True
        if self.thermal is not None:
            per_fu = self.thermal.per_formula_unit()
            at = per_fu.at(temperature)
            out.update({
                "temperature_K": temperature,
                "formula_units": self.thermal.formula_units,
                "heat_capacity_J_K_mol_fu": at["heat_capacity"],
                "entropy_J_K_mol_fu": at["entropy"],
                "free_energy_kJ_mol_fu": at["free_energy"],
                "zero_point_energy_kJ_mol_fu": per_fu.zero_point_energy,
                "imaginary_mode_fraction": self.thermal.n_imaginary / max(1, self.thermal.n_modes),
            })
        return out


def element_groups(structure) -> tuple[np.ndarray, list[str]]:
    """Per-atom group index by element (in order of first appearance) and the element names."""
    names: list[str] = []
    index = []
    for site in structure:
        symbol = site.specie.symbol
        if symbol not in names:
            names.append(symbol)
        index.append(names.index(symbol))
    return np.asarray(index), names


def formula_units(structure) -> float:
    """Formula units of pymatgen's reduced formula in the cell.

    Usually an integer; a half where pymatgen writes a molecule-like formula the cell holds
    half of (a one-atom hydrogen cell is ½ H₂, a LiO cell ½ Li₂O₂)."""
    return float(structure.composition.get_reduced_composition_and_factor()[1])


def mesh_properties(
    fc: ForceConstants,
    structure,
    mesh: tuple[int, int, int] | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    temperatures: np.ndarray | None = None,
    sigma: float = DEFAULT_SIGMA_CM1,
    partial: bool = True,
    symmetry: bool = True,
    nac: NonAnalyticCorrection | None = None,
    inversion: Inversion | InversionPairs | None | Literal["crystal"] = "crystal",
) -> tuple[QMesh, PhononDOS, ThermalProperties]:
    """DOS (with per-element partial DOS) and thermal properties on a Γ-centred mesh, reduced
    to its irreducible points by the crystal's point group (``symmetry``) and time reversal.
    With ``nac`` every D(q) gets its dipole–dipole term (Gonze–Lee on short-range ``fc``; Γ: the
    TO modes); the jump at Γ adds nothing on a mesh, which has no direction of approach.
    ``inversion``: the crystal's own (``"crystal"``), one given, or ``None``; with one, D(q) is
    solved real (:func:`~vgnn_core.phonons.modes.modes`)."""
    crystal = as_crystal(structure)
    structure = crystal.structure
    qmesh = crystal_mesh(crystal, mesh, density, symmetry)
    groups, names = element_groups(structure)
    inversion = crystal.inversion if isinstance(inversion, str) else inversion
    freqs, proj = modes(fc, qmesh.qpoints, groups=groups if partial else None, nac=nac, inversion=inversion)
    dos = phonon_dos(freqs, qmesh.weights, sigma=sigma, projections=proj, group_names=names)
    thermal = thermal_properties(freqs, qmesh.weights, temperatures, formula_units(structure))
    return qmesh, dos, thermal


def crystal_mesh(
    structure,
    mesh: tuple[int, int, int] | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    symmetry: bool = True,
) -> QMesh:
    """The Γ-centred mesh of ``structure`` (``mesh`` or from ``density``), reduced to its
    irreducible points by the point group (``symmetry``) and time reversal."""
    crystal = as_crystal(structure)
    rotations = crystal.mesh_rotations if symmetry else None
    return mesh_for(np.asarray(crystal.structure.lattice.matrix), density=density, mesh=mesh, rotations=rotations)


def mesh_thermal(
    fcs: Sequence[ForceConstants],
    structures: Sequence,
    temperatures: np.ndarray | None = None,
    density: float = DEFAULT_MESH_DENSITY,
    symmetry: bool = True,
    nacs: Sequence[NonAnalyticCorrection | None] | None = None,
) -> list[tuple[QMesh, ThermalProperties]]:
    """Thermal properties alone (no DOS, no eigenvectors) of many crystals; their mesh
    eigen-solves share batched calls. Equal to :func:`mesh_properties`' thermal part
    (``nacs``: one correction or None per crystal, as in :func:`mesh_properties`)."""
    crystals = [as_crystal(s) for s in structures]
    structures = [c.structure for c in crystals]
    meshes = [crystal_mesh(c, density=density, symmetry=symmetry) for c in crystals]
    freqs = band_frequencies([fc.cpu().to(torch.float64) for fc in fcs],
                             [torch.as_tensor(m.qpoints, dtype=torch.float64) for m in meshes], nacs=nacs,
                             inversions=[c.inversion for c in crystals])
    return [
        (m, thermal_properties(f.numpy(), m.weights, temperatures, formula_units(s)))
        for m, f, s in zip(meshes, freqs, structures)
    ]


def phonon_properties(
    fc: ForceConstants,
    structure,
    name: str = "",
    qpath: QPath | None = None,
    bands: bool = True,
    thermal: bool = True,
    born: BornCharges | None = None,
    supercell_matrix: np.ndarray | None = None,
    nac_mode: str = "full",
    clock: StageClock | None = None,
    **mesh_options,
) -> PhononResult:
    """Γ modes, the band structure along the high-symmetry path (``bands``) and the DOS and
    thermal properties on a q-mesh (``thermal``; ``mesh_options`` go to :func:`mesh_properties`).

    With ``born`` (Z* in e, ε∞; used as given — :meth:`~vgnn_core.phonons.nac.BornCharges.neutral`
    enforces Σ Z* = 0) the Gonze–Lee correction is applied everywhere. ``fc`` are then the
    short-range force constants, unless ``supercell_matrix`` ((3, 3) integer; supercell lattice
    rows = M · cell rows) says they are the full force constants of that supercell (phonopy's
    force sets), whose dipole–dipole part is removed first
    (:meth:`~vgnn_core.phonons.nac.NonAnalyticCorrection.short_range`). ``nac_mode="gamma"``
    adds only the direction-dependent jump at Γ (:class:`~vgnn_core.phonons.nac.GammaJumpCorrection`)
    to ``fc`` taken as the full force constants — what the networks' force constants need.
    ``clock`` (a :class:`~vgnn_core.timing.StageClock`) counts the ``bands`` (Γ, path, LO–TO
    setup) and ``dos_thermo`` (mesh) seconds.
    """
    if nac_mode not in ("full", "gamma"):
        raise ValueError(f"nac_mode must be 'full' or 'gamma', not {nac_mode!r}")
    with maybe_stage(clock, "bands"):
        result, crystal, pairs = _gamma_and_path(fc, structure, name, qpath, bands, born, supercell_matrix,
                                                 nac_mode, symmetrize=bands or thermal)
    if thermal:
        with maybe_stage(clock, "dos_thermo"):
            result.mesh, result.dos, result.thermal = mesh_properties(result.force_constants, crystal, nac=result.nac,
                                                                      inversion=pairs, **mesh_options)
    return result


def _gamma_and_path(fc, structure, name, qpath, bands, born, supercell_matrix, nac_mode, symmetrize=True):
    """:func:`phonon_properties` up to the mesh: the result with Γ (and the path's bands), the
    crystal, and its :class:`~vgnn_core.phonons.centrosymmetric.InversionPairs` (or None); the
    result's force constants are short-range when a supercell's were split, and (``symmetrize``)
    made exactly inversion-symmetric in a centrosymmetric cell, which the bands and the mesh are
    then solved real for, from these pairs (Γ alone is real anyway: not worth the search)."""
    fc = fc.cpu().to(torch.float64)
    crystal = as_crystal(structure)
    structure = crystal.structure
    nac = None
    if born is not None:
        correction = GammaJumpCorrection if nac_mode == "gamma" else NonAnalyticCorrection
        nac = correction.from_born(structure, born)
        if supercell_matrix is not None and nac_mode == "gamma":
            raise ValueError("nac_mode='gamma' uses the force constants as they are: no supercell matrix")
        if supercell_matrix is not None:
            fc = nac.short_range(fc, np.asarray(supercell_matrix))
    elif supercell_matrix is not None:
        raise ValueError(f"{name or structure.composition.reduced_formula}: a supercell matrix without Born "
                         "charges has no meaning (it only splits off the dipole–dipole force constants)")
    pairs = None
    if symmetrize and crystal.inversion is not None:  # the force constants exactly as symmetric as the crystal
        pairs = inversion_pairs(fc, crystal.inversion, nac)  # None where masses, Z* or Φ break it: as given
        fc = fc if pairs is None else pairs.force_constants
    nacs = None if nac is None else [nac]
    result = PhononResult(name or structure.composition.reduced_formula, structure,
                          gamma_frequencies([fc], nacs)[0].numpy(), force_constants=fc, born=born, nac=nac)
    if bands:
        result.qpath = qpath or high_symmetry_path(structure)
        q = result.qpath.qpoints
        dirs = None if nac is None else [path_q_directions(q, result.qpath.segments, structure.lattice.matrix)]
        result.bands = band_frequencies([fc], [torch.as_tensor(q)], nacs=nacs, q_directions=dirs,
                                        inversions=[pairs])[0].numpy()
    return result, crystal, pairs
