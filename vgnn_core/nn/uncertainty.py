"""How far to trust one prediction: an ensemble's expected per-material error.

The members' spread ranks the error well but not alone: at the same spread a stiff crystal is off
by more cm⁻¹ than a soft one, and hydrogen's modes by less than the spread suggests.
:class:`UncertaintyModel` is a power law in those quantities, fitted on validation materials when
a model is shipped, that turns one :class:`~vgnn_core.nn.ensemble.MemberAgreement` into the
expected per-material MAE (cm⁻¹). Its inputs do not depend on how many atoms the cell holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

#: Floors that keep the logarithms finite. Identical members have no spread, and an MVN's
#: one-atom cell has only acoustic modes at Γ (highest frequency 0): such crystals get a
#: near-zero uncertainty, which is right, as their Γ frequencies are exact.
MIN_SPREAD_CM1 = 1e-3
MIN_FREQUENCY_CM1 = 1.0
#: fewer validation materials than this: the spread times a factor, not a fit
MIN_MATERIALS_TO_FIT = 50


@dataclass(frozen=True)
class UncertaintyModel:
    """u = exp(log_scale) · s^spread · ω^frequency · exp(hydrogen · [H])  (cm⁻¹).

    s: the members' spread (cm⁻¹), ω: the highest frequency any member predicts where the spread
    is measured (cm⁻¹; k-MVN: Γ and the 2×2×2 zone-boundary points, MVN: Γ), [H]: 1 if the crystal
    holds hydrogen. The exponents come from a least-squares fit of log MAE on validation materials;
    ``log_scale`` is then set so the mean u equals their mean MAE. :meth:`proportional` is u = k·s.
    """

    log_scale: float
    spread: float = 1.0
    frequency: float = 0.0
    hydrogen: float = 0.0

    def __call__(self, spread_cm1: float, highest_cm1: float, has_hydrogen: bool) -> float:
        """Expected per-material MAE (cm⁻¹) of one crystal's prediction."""
        x = _log_terms(np.array([spread_cm1]), np.array([highest_cm1]), np.array([has_hydrogen]))
        return float(np.exp(x @ self._coefficients())[0])

    @classmethod
    def proportional(cls, scale: float) -> UncertaintyModel:
        """u = ``scale`` × spread (what checkpoints recorded as ``uncertainty_scale``)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"uncertainty scale must be positive and finite, got {scale}")
        return cls(log_scale=math.log(scale))

    @classmethod
    def fit(cls, spread_cm1: Sequence[float], highest_cm1: Sequence[float], has_hydrogen: Sequence[bool],
            error_cm1: Sequence[float]) -> UncertaintyModel:
        """Fit to the per-material ``error_cm1`` (MAE, cm⁻¹) of validation materials.

        Materials with a non-finite value or no error are left out; a term that does not vary
        among the rest (e.g. no hydrogen at all) keeps exponent 0; with fewer than
        :data:`MIN_MATERIALS_TO_FIT` left, the spread times a factor is returned.
        """
        s, w, h, e = (np.asarray(v, dtype=float) for v in (spread_cm1, highest_cm1, has_hydrogen, error_cm1))
        ok = np.isfinite(s) & np.isfinite(w) & np.isfinite(e) & (e > 0) & (s >= 0)
        s, w, h, e = s[ok], w[ok], h[ok], e[ok]
        if not len(e):
            raise ValueError("no validation material with a finite spread and a positive error")
        if len(e) < MIN_MATERIALS_TO_FIT:
            return cls.proportional(e.sum() / max(s.sum(), MIN_SPREAD_CM1))
        x = _log_terms(s, w, h)
        varies = np.r_[True, np.ptp(x[:, 1:], axis=0) > 0]
        beta = np.zeros(x.shape[1])
        beta[varies] = np.linalg.lstsq(x[:, varies], np.log(e), rcond=None)[0]
        beta[0] += math.log(e.mean() / np.exp(x @ beta).mean())  # calibrated: mean u = mean MAE
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
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown or "log_scale" not in d:
            raise ValueError(f"an uncertainty model needs log_scale and takes spread, frequency, hydrogen; got {sorted(d)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def describe(self) -> str:
        """One line for model cards."""
        return (f"{math.exp(self.log_scale):.3g} · spread^{self.spread:.2f} · ω_max^{self.frequency:.2f} · "
                f"{math.exp(self.hydrogen):.2f}^[H]")

    def _coefficients(self) -> np.ndarray:
        return np.array([self.log_scale, self.spread, self.frequency, self.hydrogen])


def _log_terms(spread: np.ndarray, highest: np.ndarray, hydrogen: np.ndarray) -> np.ndarray:
    """The fit's design matrix: 1, log s, log ω, [H]."""
    return np.stack([np.ones(len(spread)), np.log(np.maximum(spread, MIN_SPREAD_CM1)),
                     np.log(np.maximum(highest, MIN_FREQUENCY_CM1)), hydrogen.astype(float)], axis=1)
