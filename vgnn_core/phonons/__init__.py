"""Phonon physics, independent of any network: force constants Φ_ij(T), D(q), q-paths and
meshes, DOS, thermal properties, group velocities, modes, the LO–TO (non-analytic) correction
from Born charges and ε∞, and the result of a prediction.
Units follow phonopy (eV/Å², amu) with frequencies in cm⁻¹ (imaginary modes negative)."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "BornCharges": ".nac",
    "ForceConstants": ".force_constants",
    "INSTABILITY_THRESHOLD_CM1": ".units",
    "NonAnalyticCorrection": ".nac",
    "PhononResult": ".result",
    "QPath": ".qpath",
    "band_frequencies": ".dynamical_matrix",
    "central_spring_force_constants": ".force_constants",
    "centrosymmetric_matrices": ".centrosymmetric",
    "dynamical_matrices": ".dynamical_matrix",
    "from_phonopy": ".force_constants",
    "gamma_frequencies": ".dynamical_matrix",
    "high_symmetry_path": ".qpath",
    "phonon_properties": ".result",
    "real_dynamical_matrices": ".dynamical_matrix",
    "symmetrized_under_inversion": ".centrosymmetric",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
