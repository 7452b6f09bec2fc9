"""Structure sources for the build: each yields ``(material_id, structure_or_path)`` pairs.

* ``demo`` — built in code from crystal prototypes and experimental lattice constants (no data
  files needed);
* ``dir:PATH`` — a folder of CIF / POSCAR / extxyz files;
* ``zeolites`` / ``zeolites:PATH`` — IZA framework CIFs, reduced to primitive cells;
  ``iza:FAU+LTA`` downloads those frameworks from the IZA Structure Commission site;
* ``mp`` / ``mp:FILTERS`` — the Materials Project through mp-api (see
  :mod:`flows.materials_project`);
* ``togo`` and ``petretto`` — the structures of those datasets in ``$VGNN_DATA_DIR``.

:func:`resolve_source` returns the items and a version string recorded in the ``runs`` table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from vgnn_core.data_paths import shared_data_dir

# (name, space group, lattice, species, fractional coordinates of the asymmetric unit)
_PROTOTYPES: list[tuple[str, str, Lattice, list[str], list[list[float]]]] = []


def _cubic(name, sg, a, species, coords):
    _PROTOTYPES.append((name, sg, Lattice.cubic(a), species, coords))


def _hex(name, sg, a, c, species, coords):
    _PROTOTYPES.append((name, sg, Lattice.hexagonal(a, c), species, coords))


for el, a in (("C", 3.567), ("Si", 5.431), ("Ge", 5.658)):
    _cubic(f"{el}-diamond", "Fd-3m", a, [el], [[0, 0, 0]])
for el, a in (("Al", 4.046), ("Cu", 3.615), ("Ni", 3.524), ("Ag", 4.086), ("Au", 4.078), ("Pb", 4.950)):
    _cubic(f"{el}-fcc", "Fm-3m", a, [el], [[0, 0, 0]])
for el, a in (("Fe", 2.867), ("W", 3.165), ("Mo", 3.147), ("Cr", 2.910), ("Na", 4.290)):
    _cubic(f"{el}-bcc", "Im-3m", a, [el], [[0, 0, 0]])
for el, a, c in (("Mg", 3.209, 5.211), ("Ti", 2.951, 4.686), ("Zn", 2.665, 4.947)):
    _hex(f"{el}-hcp", "P6_3/mmc", a, c, [el], [[1 / 3, 2 / 3, 0.25]])
for (a_el, b_el), a in ((("Na", "Cl"), 5.640), (("Mg", "O"), 4.212), (("Li", "F"), 4.026), (("K", "Cl"), 6.293), (("Pb", "Te"), 6.462)):
    _cubic(f"{a_el}{b_el}-rocksalt", "Fm-3m", a, [a_el, b_el], [[0, 0, 0], [0.5, 0.5, 0.5]])
for (a_el, b_el), a in ((("Ga", "As"), 5.653), (("Zn", "S"), 5.409), (("In", "P"), 5.869), (("Si", "C"), 4.360)):
    _cubic(f"{a_el}{b_el}-zincblende", "F-43m", a, [a_el, b_el], [[0, 0, 0], [0.25, 0.25, 0.25]])
for (a_el, b_el), a, c, u in ((("Zn", "O"), 3.250, 5.207, 0.382), (("Ga", "N"), 3.189, 5.185, 0.377), (("Al", "N"), 3.112, 4.982, 0.382)):
    _hex(f"{a_el}{b_el}-wurtzite", "P6_3mc", a, c, [a_el, b_el], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, u]])
_cubic("CsCl-B2", "Pm-3m", 4.123, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
_cubic("CaF2-fluorite", "Fm-3m", 5.463, ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]])
for b_el, a in (("Sr", 3.905), ("Ba", 4.004)):
    _cubic(f"{b_el}TiO3-perovskite", "Pm-3m", a, [b_el, "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
for m_el, a, c, u in (("Ti", 4.594, 2.959, 0.305), ("Sn", 4.737, 3.186, 0.307)):
    _PROTOTYPES.append((f"{m_el}O2-rutile", "P4_2/mnm", Lattice.tetragonal(a, c), [m_el, "O"], [[0, 0, 0], [u, u, 0]]))


def demo_structures() -> list[tuple[str, Structure]]:
    """~35 real crystals (primitive cells) built from prototypes: the ``demo`` source."""
    out = []
    for name, sg, lattice, species, coords in _PROTOTYPES:
        s = Structure.from_spacegroup(sg, lattice, species, coords).get_primitive_structure()
        material_id = f"demo-{name}"
        s.properties = {"material_id": material_id}
        out.append((material_id, s))
    return out


STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz")


def directory_source(path: str | Path) -> Iterator[tuple[str, Path]]:
    """Every structure-like file in a folder (sorted), id = file name without suffix."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a folder")
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix.lower() in STRUCTURE_SUFFIXES or f.name.startswith(("POSCAR", "CONTCAR"))):
            yield f.stem if f.suffix else f.name, f


def primitive_cell(structure: Structure, symprec: float = 1e-3) -> Structure:
    """The primitive cell found by spglib (fast even for thousands of atoms); the input when
    spglib finds no smaller cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        prim = SpacegroupAnalyzer(structure, symprec=symprec).find_primitive()
    except Exception:  # noqa: BLE001 - no symmetry found: keep the cell as given
        prim = None
    if prim is None or len(prim) >= len(structure):
        return structure
    prim.properties = dict(structure.properties)
    return prim


class PrimitiveFile:
    """A structure file read lazily and reduced to its primitive cell (zeolite CIFs are
    conventional cells: FAU has 576 atoms, its primitive cell 144)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def read(self) -> Structure:
        from vgnn_core import read_structure

        return primitive_cell(read_structure(self.path))


def zeolite_source(path: str | Path | None = None) -> Iterator[tuple[str, PrimitiveFile]]:
    """IZA framework CIFs (default ``$VGNN_DATA_DIR/iza_zeolites/cifs``), ids ``iza-XXX``."""
    if path is None:
        root = shared_data_dir()
        if root is None:
            raise FileNotFoundError("zeolite CIFs not found: set VGNN_DATA_DIR or pass a folder")
        path = root / "iza_zeolites" / "cifs"
    for mid, f in directory_source(path):
        yield f"iza-{mid}", PrimitiveFile(f)


def togo_source(archive: str | Path | None = None, limit: int | None = None) -> Iterator[tuple[str, Structure]]:
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
            yield mid, _apply_primitive_axis(unit, axis, mid)
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


def petretto_source(archive: str | Path | None = None) -> Iterator[tuple[str, Structure]]:
    """The 1,521 structures of the Petretto 2018 DFPT database (cells of the DFPT runs)."""
    from vgnn_core.dataset import iter_petretto

    for record in iter_petretto(archive):
        yield record.material_id, record.structure


def resolve_source(spec: str) -> tuple[list[tuple[str, object]], str]:
    """A source spec → ``(items, version)``; items are (material_id, structure or path)."""
    if spec == "demo":
        return list(demo_structures()), "demo"
    if spec == "zeolites" or spec.startswith("zeolites:"):
        folder = spec.partition(":")[2] or None
        return list(zeolite_source(folder)), f"zeolites:{folder or 'VGNN_DATA_DIR'}"
    if spec.startswith("iza:"):
        from flows.iza import download_frameworks

        codes = [c for c in spec[4:].replace(",", "+").split("+") if c]
        folder = download_frameworks(codes)
        return list(zeolite_source(folder)), f"iza:{'+'.join(codes)}"
    if spec.startswith("dir:"):
        return list(directory_source(spec[4:])), spec
    if spec == "togo":
        return list(togo_source()), "togo_phonondb-20180417"
    if spec == "petretto":
        return list(petretto_source()), "petretto2018"
    if spec == "mp" or spec.startswith("mp:"):
        from flows.materials_project import MPQuery, ingest
        from vgnn_core.dataset import cache_dir

        version, items = ingest(MPQuery.from_spec(spec.partition(":")[2]), cache_dir() / "materials_project", progress=print)
        return items, f"materials_project-{version}"
    raise ValueError(f"unknown source {spec!r}: use demo, zeolites[:PATH], iza:CODES, dir:PATH, togo, petretto or mp[:FILTERS]")
