"""The ``togo`` source: the 10,034 structures of Togo's phonondb, in phonopy's primitive cells."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from vgnn_core.settings import shared_data_dir

from .item import SourceItem


def togo_source(archive: str | Path | None = None, limit: int | None = None) -> Iterator[SourceItem]:
    """Togo's phonondb structures: each ``POSCAR-unitcell`` reduced with its ``PRIMITIVE_AXIS``."""
    import io
    import tarfile
    from fractions import Fraction

    from pymatgen.io.vasp import Poscar

    if archive is None:
        root = shared_data_dir()
        archive = None if root is None else root / "togo_phonondb" / "unitcells_conf_born.tar.xz"
    if archive is None or not Path(archive).is_file():
        raise FileNotFoundError("togo_phonondb/unitcells_conf_born.tar.xz not found: set VGNN_DATA_DIR")
    pending: dict[str, dict[str, str]] = {}
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            folder, _, name = member.name.rpartition("/")
            if name not in ("POSCAR-unitcell", "phonopy.conf") or not member.isfile():
                continue
            entry = pending.setdefault(folder, {})
            entry[name] = tar.extractfile(member).read().decode()
            if len(entry) < 2:
                continue
            del pending[folder]
            mid = "-".join(Path(folder).name.split("-")[:2])  # mp-1000-20180417 → mp-1000
            unit = Poscar.from_str(entry["POSCAR-unitcell"]).structure
            axis = None
            for line in io.StringIO(entry["phonopy.conf"]):
                key, _, value = line.partition("=")
                if key.strip().upper() == "PRIMITIVE_AXIS":
                    axis = np.array([float(Fraction(x)) for x in value.split()[:9]]).reshape(3, 3)
            yield SourceItem(mid, structure=_apply_primitive_axis(unit, axis, mid))
            count += 1
            if limit and count >= limit:
                return


def _apply_primitive_axis(unit: Structure, axis, material_id: str) -> Structure:
    """phonopy's primitive cell: lattice columns ``A_p = A_u · P`` (rows: ``Pᵀ · rows``)."""
    if axis is None or np.allclose(axis, np.eye(3)):
        s = unit
    else:
        from phonopy.structure.atoms import PhonopyAtoms
        from phonopy.structure.cells import get_primitive
        from pymatgen.io.phonopy import get_pmg_structure

        atoms = PhonopyAtoms(symbols=[x.specie.symbol for x in unit], cell=unit.lattice.matrix,
                             scaled_positions=unit.frac_coords)
        s = get_pmg_structure(get_primitive(atoms, axis, symprec=1e-4))
    s.properties = {"material_id": material_id}
    return s
