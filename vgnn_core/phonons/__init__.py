"""Phonon physics, independent of any network: force constants Φ_ij(T), D(q), q-paths and
meshes, DOS, thermal properties, group velocities, modes, and the result of a prediction.
Units follow phonopy (eV/Å², amu) with frequencies in cm⁻¹ (imaginary modes negative)."""

from .dynamical_matrix import band_frequencies, dynamical_matrices, gamma_frequencies
from .force_constants import ForceConstants, central_spring_force_constants, from_phonopy
from .qpath import QPath, high_symmetry_path
from .result import PhononResult, phonon_properties

__all__ = ["ForceConstants", "PhononResult", "QPath", "band_frequencies", "central_spring_force_constants",
           "dynamical_matrices", "from_phonopy", "gamma_frequencies", "high_symmetry_path", "phonon_properties"]
