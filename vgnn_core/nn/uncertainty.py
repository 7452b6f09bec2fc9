"""How far to trust one prediction: an ensemble's expected per-material error.

The members' spread ranks the error well but not alone: at the same spread a stiff crystal is off
by more cm⁻¹ than a soft one, and so is a crystal one member already calls unstable, while
hydrogen's modes and a large primitive cell are off by less than the spread suggests.
:class:`UncertaintyModel` is a power law in those quantities (:class:`ErrorPredictors`), fitted
on validation materials when a model is shipped, that turns them into the expected per-material
MAE (cm⁻¹). The atom count is the primitive cell's, whichever cell is given and under noise of a
few mÅ; the members' frequencies are the primitive cell's at its 2×2×2 grid
(:func:`~vgnn_core.nn.ensemble.uncertainty_qpoints`), projected from any other cell's D(q)
(:func:`~vgnn_core.phonons.dynamical_matrix.primitive_frequencies`): the same for every cell of a crystal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..phonons.units import INSTABILITY_THRESHOLD_CM1

#: Floors that keep the logarithms finite. Identical members have no spread, and an MVN's
#: one-atom cell has only acoustic modes at Γ (highest frequency 0): such crystals get a
#: near-zero uncertainty, which is right, as their Γ frequencies are exact.
MIN_SPREAD_CM1 = 1e-3
MIN_FREQUENCY_CM1 = 1.0
#: fewer validation materials than this: the spread times a factor, not a fit
MIN_MATERIALS_TO_FIT = 50


@dataclass(frozen=True)
class ErrorPredictors:
    """What one crystal's expected error is computed from."""

    #: the members' spread (cm⁻¹; :class:`~vgnn_core.nn.ensemble.MemberAgreement`)
    spread_cm1: float
    #: the highest frequency any member predicts where the spread is measured (cm⁻¹)
    highest_cm1: float
    #: the lowest frequency any member predicts there (cm⁻¹, signed)
    lowest_cm1: float
    has_hydrogen: bool
    #: atoms in the primitive cell (the same for any cell of the crystal, and under noise of a
    #: few mÅ; :func:`~vgnn_core.crystal.symmetry.primitive_atoms`)
    primitive_atoms: int

    @property
    def usable(self) -> bool:
        """Every value finite and the spread not negative: the crystal can enter a fit."""
        values = (self.spread_cm1, self.highest_cm1, self.lowest_cm1, self.primitive_atoms)
        return all(math.isfinite(v) for v in values) and self.spread_cm1 >= 0


@dataclass(frozen=True)
class UncertaintyModel:
    """u = exp(log_scale) · s^spread · ω^frequency · exp(hydrogen·[H]) · n^atoms · exp(unstable·[ω_min < −5])  (cm⁻¹).

    s: the members' spread (cm⁻¹), ω: the highest frequency any member predicts where the spread
    is measured (cm⁻¹; k-MVN: Γ and the 2×2×2 zone-boundary points, MVN: Γ), [H]: 1 if the crystal
    holds hydrogen, n: atoms in the primitive cell, [ω_min < −5]: 1 if some member predicts a mode
    below :data:`~vgnn_core.phonons.units.INSTABILITY_THRESHOLD_CM1` there. The exponents come from
    a least-squares fit of log MAE on validation materials; ``log_scale`` is then set so the mean u
    equals their mean MAE. :meth:`proportional` is u = k·s.
    """

    log_scale: float
    spread: float = 1.0
    frequency: float = 0.0
    hydrogen: float = 0.0
    atoms: float = 0.0
    unstable: float = 0.0

    def __call__(self, x: ErrorPredictors) -> float:
        """Expected per-material MAE (cm⁻¹) of one crystal's prediction."""
        return float(np.exp(design_matrix([x]) @ self._coefficients())[0])

    @classmethod
    def proportional(cls, scale: float) -> UncertaintyModel:
        """u = ``scale`` × spread (what checkpoints recorded as ``uncertainty_scale``)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"uncertainty scale must be positive and finite, got {scale}")
        return cls(log_scale=math.log(scale))

    @classmethod
    def fit(cls, predictors: Sequence[ErrorPredictors], error_cm1: Sequence[float]) -> UncertaintyModel:
        """Fit to the per-material ``error_cm1`` (MAE, cm⁻¹) of validation materials.

        Materials with a non-finite value or no error are left out; a term that does not vary
        among the rest (e.g. no hydrogen at all) keeps exponent 0; with fewer than
        :data:`MIN_MATERIALS_TO_FIT` left, the spread times a factor is returned.
        """
        if len(predictors) != len(error_cm1):
            raise ValueError(f"{len(predictors)} materials but {len(error_cm1)} errors")
        kept = [(p, float(err)) for p, err in zip(predictors, error_cm1) if p.usable and math.isfinite(err) and err > 0]
        if not kept:
            raise ValueError("no validation material with a finite spread and a positive error")
        e = np.array([err for _, err in kept])
        if len(e) < MIN_MATERIALS_TO_FIT:
            return cls.proportional(e.sum() / max(sum(p.spread_cm1 for p, _ in kept), MIN_SPREAD_CM1))
        beta = fit_log_mae(design_matrix([p for p, _ in kept]), e)
        if not np.isfinite(beta).all():
            raise ValueError(f"uncertainty fit did not converge: {beta}")
        return cls(*(float(b) for b in beta))

    @classmethod
    def from_metadata(cls, metadata: dict) -> UncertaintyModel | None:
        """The model a checkpoint's metadata records (``uncertainty_model``, or the older
        ``uncertainty_scale``); ``None`` when it records neither."""
        if metadata.get("uncertainty_model"):
            return cls.from_dict(metadata["uncertainty_model"])
        if metadata.get("uncertainty_scale"):
            return cls.proportional(float(metadata["uncertainty_scale"]))
        return None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UncertaintyModel:
        """The model a :meth:`to_dict` recorded; terms it lacks (older checkpoints) have exponent 0."""
        names = [f.name for f in fields(cls)]
        unknown = set(d) - set(names)
        if unknown or "log_scale" not in d:
            raise ValueError(f"an uncertainty model needs log_scale and takes {', '.join(names[1:])}; got {sorted(d)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def describe(self) -> str:
        """One line for model cards (the atom-count and instability terms only where fitted)."""
        text = (f"{math.exp(self.log_scale):.3g} · spread^{self.spread:.2f} · ω_max^{self.frequency:.2f} · "
                f"{math.exp(self.hydrogen):.2f}^[H]")
        if self.atoms or self.unstable:
            text += f" · n_prim^{self.atoms:.2f} · {math.exp(self.unstable):.2f}^[unstable]"
        return text

    def _coefficients(self) -> np.ndarray:
        return np.array([getattr(self, f.name) for f in fields(self)])


def fit_log_mae(x: np.ndarray, error_cm1: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of log MAE on the columns of ``x`` (the first all ones); a column
    that does not vary keeps 0, and the intercept is then set so the mean exp(x·β) is the mean MAE."""
    varies = np.r_[True, np.ptp(x[:, 1:], axis=0) > 0]
    beta = np.zeros(x.shape[1])
    beta[varies] = np.linalg.lstsq(x[:, varies], np.log(error_cm1), rcond=None)[0]
    beta[0] += math.log(error_cm1.mean() / np.exp(x @ beta).mean())  # calibrated: mean u = mean MAE
    return beta


def design_matrix(predictors: Sequence[ErrorPredictors]) -> np.ndarray:
    """The fit's design matrix, one row per crystal: 1, log s, log ω, [H], log n, [ω_min < threshold]."""
    s, w, lo, h, n = (np.array([getattr(p, k) for p in predictors], dtype=float)
                      for k in ("spread_cm1", "highest_cm1", "lowest_cm1", "has_hydrogen", "primitive_atoms"))
    return np.stack([np.ones(len(s)), np.log(np.maximum(s, MIN_SPREAD_CM1)), np.log(np.maximum(w, MIN_FREQUENCY_CM1)),
                     h, np.log(np.maximum(n, 1.0)), (lo < INSTABILITY_THRESHOLD_CM1).astype(float)], axis=1)
