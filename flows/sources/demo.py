"""The ``demo`` source: ~35 real crystals built in code from prototypes and experimental
lattice constants (no data files needed)."""

from __future__ import annotations

import copy
import functools

from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup

from .item import SourceItem

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


@functools.cache
def _space_group(symbol: str) -> SpaceGroup:
    """pymatgen's space group (building one closes its operations under products: ~1 s for Fm-3m)."""
    return SpaceGroup(symbol)


@functools.cache
def _primitive_cells() -> tuple[tuple[str, Structure], ...]:
    """The demo crystals, built once per process: each asymmetric-unit site's orbit in the
    conventional cell (what ``Structure.from_spacegroup`` gives, with each group built once), then the
    primitive cell."""
    out = []
    for name, sg, lattice, species, coords in _PROTOTYPES:
        if not _space_group(sg).is_compatible(lattice):
            raise ValueError(f"demo-{name}: lattice {lattice.parameters} does not fit space group {sg}")
        orbits = [_space_group(sg).get_orbit(c) for c in coords]
        conventional = Structure(lattice, [el for el, orbit in zip(species, orbits) for _ in orbit],
                                 [site for orbit in orbits for site in orbit])
        out.append((f"demo-{name}", conventional.get_primitive_structure()))
    return tuple(out)


def demo_structures() -> list[tuple[str, Structure]]:
    """~35 real crystals (primitive cells) built from prototypes: the ``demo`` source (fresh copies)."""
    out = []
    for material_id, cell in _primitive_cells():
        s = copy.deepcopy(cell)  # Structure.copy() would share the lattice (its pbc is mutable)
        s.properties = {"material_id": material_id}
        out.append((material_id, s))
    return out


def demo_source() -> list[SourceItem]:
    """The demo crystals as source items."""
    return [SourceItem(mid, structure=s) for mid, s in demo_structures()]
