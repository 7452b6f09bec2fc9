"""Getting data in and out: phonopy objects and files, band.yaml and pymatgen exports, plots,
and the Petretto download from figshare."""

from .exports import write_band_yaml, write_phonopy_force_constants
from .phonopy import to_phonopy

__all__ = ["to_phonopy", "write_band_yaml", "write_phonopy_force_constants"]
