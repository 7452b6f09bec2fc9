"""How far to trust one prediction: an ensemble's expected per-material error.

The members' spread ranks the error well but not alone: at the same spread a stiff crystal is off
by more cm⁻¹ than a soft one, and a large cell by less. :class:`UncertaintyModel` is a power law in
those quantities, fitted on validation materials when a model is shipped, that turns one
:class:`~vgnn_core.nn.ensemble.MemberAgreement` into the expected per-material MAE (cm⁻¹).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

#: floors that keep the logarithms finite (identical members; a one-atom cell's Γ)
MIN_SPREAD_CM1 = 1e-3
MIN_FREQUENCY_CM1 = 1.0


@dataclass(frozen=True)
class UncertaintyModel:
    """u = exp(log_scale) · s^spread · ω^frequency · exp(hydrogen · [H]) · m^atoms  (cm⁻¹).

    s: the members' spread (cm⁻¹), ω: the highest frequency any member predicts where the spread
    is measured (cm⁻¹), [H]: 1 if the crystal holds hydrogen, m: atoms in the cell. The exponents
    come from a least-squares fit of log MAE on validation materials; ``log_scale`` is then set so
    the mean u equals the mean MAE there. :meth:`proportional` is u = k·s, the spread alone.
    """

    log_scale: float
    spread: float = 1.0
    frequency: float = 0.0
    hydrogen: float = 0.0
    atoms: float = 0.0

    def __call__(self, spread_cm1: float, highest_cm1: float, has_hydrogen: bool, n_atoms: int) -> float:
        """Expected per-material MAE (cm⁻¹) of one crystal's prediction."""
        return float(np.exp(self._log_terms(np.array([spread_cm1]), np.array([highest_cm1]),
                                            np.array([has_hydrogen]), np.array([n_atoms])) @ self._coefficients())[0])

    @classmethod
    def proportional(cls, scale: float) -> UncertaintyModel:
        """u = ``scale`` × spread (what checkpoints recorded as ``uncertainty_scale``)."""
        if not scale > 0:
            raise ValueError(f"uncertainty scale must be positive, got {scale}")
        return cls(log_scale=math.log(scale))

    @classmethod
    def fit(cls, spread_cm1: Sequence[float], highest_cm1: Sequence[float], has_hydrogen: Sequence[bool],
            n_atoms: Sequence[int], error_cm1: Sequence[float]) -> UncertaintyModel:
        """Fit the exponents to the per-material ``error_cm1`` (MAE, cm⁻¹) of validation materials."""
        error = np.asarray(error_cm1, dtype=float)
        if len(error) < 10 or not (error > 0).all():
            raise ValueError(f"an uncertainty model needs at least 10 materials with a positive error, got {len(error)}")
        x = cls._log_terms(np.asarray(spread_cm1, float), np.asarray(highest_cm1, float),
                           np.asarray(has_hydrogen, float), np.asarray(n_atoms, float))
        beta = np.linalg.lstsq(x, np.log(error), rcond=None)[0]
        beta[0] += math.log(error.mean() / np.exp(x @ beta).mean())  # calibrated: mean u = mean MAE
        return cls(*(float(b) for b in beta))

    @classmethod
    def from_metadata(cls, metadata: dict) -> UncertaintyModel | None:
        """The model a checkpoint's metadata records (``uncertainty_model``, or the older
        ``uncertainty_scale``); ``None`` when it records neither."""
        if "uncertainty_model" in metadata:
            return cls.from_dict(metadata["uncertainty_model"])
        if "uncertainty_scale" in metadata:
            return cls.proportional(float(metadata["uncertainty_scale"]))
        return None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UncertaintyModel:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown uncertainty-model keys: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def describe(self) -> str:
        """One line for model cards."""
        return (f"{math.exp(self.log_scale):.3g} · spread^{self.spread:.2f} · ω_max^{self.frequency:.2f} · "
                f"{math.exp(self.hydrogen):.2f}^[H] · atoms^{self.atoms:.2f}")

    def _coefficients(self) -> np.ndarray:
        return np.array([self.log_scale, self.spread, self.frequency, self.hydrogen, self.atoms])

    @staticmethod
    def _log_terms(spread, highest, hydrogen, atoms) -> np.ndarray:
        return np.stack([np.ones(len(spread)), np.log(np.maximum(spread, MIN_SPREAD_CM1)),
                         np.log(np.maximum(highest, MIN_FREQUENCY_CM1)), hydrogen.astype(float),
                         np.log(np.maximum(atoms, 1))], axis=1)
