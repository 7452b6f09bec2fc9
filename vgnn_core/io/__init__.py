"""Getting data in and out: phonopy objects and files, band.yaml and pymatgen exports, plots,
and the Petretto download from figshare."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "to_phonopy": ".phonopy",
    "write_band_yaml": ".exports",
    "write_phonopy_force_constants": ".exports",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
