"""Crystal structures in, validated: pymatgen ``Structure``, ASE ``Atoms`` or a file path.

Only ordered, fully occupied bulk crystals are accepted: the cell must be sane (finite, no
vector longer than ``MAX_CELL_LENGTH``, lattice planes at least ``MIN_PLANE_SPACING`` apart, at
most ``MAX_ATOMS`` atoms, which an xyz or POSCAR header is held to before a parser allocates for
it) — checked before any neighbour search allocates memory, after atoms given many cells away are
moved back into the cell — and the atoms must form one network connected in all three directions
(:mod:`vgnn_core.crystal.dimensionality`: molecules, free atoms, slabs and chains in vacuum are
refused). Anything else raises :class:`InvalidStructureError`, which names the structure and the
cause.

A CIF must mean what it says: its cell lengths positive, its angles within (0°, 180°), and every
fully occupied atom site it lists present in the parsed crystal as its own element, whichever
parser (pymatgen, or ASE when pymatgen fails) read it.

A file may hold several structures: every data block of a CIF that lists atom sites, every frame
of an (ext)xyz file. :func:`structure_labels` names them; ``read_structure(path, index)`` reads one.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import Element, Structure

#: Two atoms closer than this (Å, across periodic images too) are considered overlapping.
MIN_INTERATOMIC_DISTANCE = 0.5
#: Smallest accepted cell volume per atom (Å³); below this the cell is degenerate.
MIN_VOLUME_PER_ATOM = 0.5
#: Longest accepted lattice vector (Å). Real cells (zeolites, MOFs) stay far below; a longer one
#: is a unit error or a vacuum box, and would make a neighbour search allocate without bound.
MAX_CELL_LENGTH = 300.0
#: Smallest accepted spacing (Å) of the lattice planes spanned by two of the cell's vectors: a
#: flatter (or needlessly skewed) cell needs thousands of periodic images in a neighbour search.
MIN_PLANE_SPACING = 0.5
#: Most atoms accepted in one cell (the database build's limit, ``BuildSettings.max_atoms``).
MAX_ATOMS = 5000


#: The cause given for a lattice or positions holding NaN or infinity.
NON_FINITE_CELL = "lattice or coordinates contain NaN or infinity"


def is_finite_cell(lattice, frac_coords) -> bool:
    """Whether a lattice (Å) and fractional positions are all finite: spglib's and seekpath's C
    code crash the interpreter on NaN, so every call into them checks this first."""
    return bool(np.all(np.isfinite(np.asarray(lattice, dtype=float)))
                and np.all(np.isfinite(np.asarray(frac_coords, dtype=float))))


class InvalidStructureError(ValueError):
    """A structure that cannot be a phonon calculation's input.

    ``name`` identifies the structure (material id, file name or formula) and ``cause``
    says what is wrong with it.
    """

    def __init__(self, name: str, cause: str):
        self.name = name
        self.cause = cause
        super().__init__(f"{one_line(name)}: {one_line(cause)}")

    def __reduce__(self):  # pickles (across processes: Dask, multiprocessing) with both arguments
        return type(self), (self.name, self.cause)


StructureLike = Structure | Any  # pymatgen Structure, ASE Atoms, or a path


def one_line(text: str) -> str:
    """``text`` with every unprintable character (a newline in a file name, a tab or a terminal
    escape in a parser's message) written as its escape sequence: an error stays one line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def structure_name(structure: Structure, fallback: str = "structure") -> str:
    """A human-readable name: ``properties['material_id']`` if set, else the formula."""
    props = getattr(structure, "properties", None) or {}
    for key in ("material_id", "name", "id"):
        if props.get(key):
            return str(props[key])
    try:
        return structure.composition.reduced_formula or fallback
    except Exception:  # noqa: BLE001 - a broken structure may not even have a formula
        return fallback


def read_structure(path: str | os.PathLike, index: int | None = None) -> Structure:
    """Read CIF / POSCAR / extxyz / anything pymatgen or ASE can read, validated.

    ``index`` picks one structure of a file that holds several (its position in
    :func:`structure_labels`); without it the file must hold exactly one.
    """
    path = Path(path)
    name = path.name
    labels = structure_labels(path)  # a missing, unreadable or empty file raises here
    if index is None:
        if len(labels) > 1:
            raise InvalidStructureError(name, f"holds {len(labels)} structures ({_shorten(labels)}); read one by index")
        index = 0
    elif not 0 <= index < len(labels):
        raise InvalidStructureError(name, f"has no structure number {index} (it holds {len(labels)})")
    if len(labels) > 1:
        name = f"{name}:{labels[index]}"
    declared = _declared_atom_count(path)
    if declared is not None and declared > MAX_ATOMS:  # before a parser allocates for them
        raise InvalidStructureError(name, f"{declared} atoms in the cell, above the limit of {MAX_ATOMS} (its header)")
    cif = path.suffix.lower() in CIF_SUFFIXES
    block = _cif_block(path, index) if cif else None
    if block is not None and block.data is not None:
        _check_cif_cell(block.data, name)  # before a parser reads a negative length as another crystal
        _check_cif_coordinates(block.data, name)
    elif block is not None and (missing := _why_no_atom_sites(block.text)):
        raise InvalidStructureError(name, missing)  # not the parsers' messages about their internals
    errors = []
    structure = None
    via_ase = False
    try:
        structure = _read_with_pymatgen(path, index, block)
    except Exception as exc:  # noqa: BLE001 - fall back to ASE, then report both
        errors.append(f"pymatgen: {type(exc).__name__}: {exc}")
        try:
            if cif and len(labels) > 1:
                raise ValueError("not tried for one block of a multi-block CIF")  # ASE numbers blocks otherwise
            if cif and (block is None or block.data is None):
                raise ValueError("not tried for a CIF whose atom sites cannot be checked")
            from ase.io import read as ase_read

            structure = ase_read(path, index=index)
            via_ase = True
        except Exception as exc2:  # noqa: BLE001
            errors.append(f"ase: {type(exc2).__name__}: {exc2}")
    if structure is None:
        raise InvalidStructureError(name, "cannot be parsed (" + "; ".join(errors) + ")")
    if block is not None:  # whichever parser read it, it must hold the atoms the file lists
        parsed = structure if isinstance(structure, Structure) else _to_pymatgen(structure, name)
        _check_cif_sites(block, parsed, name, via_ase)
    return as_structure(structure, name=name, copy=False)  # a fresh Structure (or ASE Atoms): no copy


def _declared_atom_count(path: Path) -> int | None:
    """The atom count an xyz file's first line or a POSCAR's counts line declares (None for other
    formats or an unreadable header): pymatgen and ASE allocate for it before reading a site."""
    suffix, upper = path.suffix.lower(), path.name.upper()
    try:
        with open(path, "rb") as fh:
            head = [fh.readline().decode("ascii", "replace") for _ in range(7)]
        if suffix in XYZ_SUFFIXES:
            return int(head[0].split()[0])
        if suffix in (".vasp", ".poscar") or "POSCAR" in upper or "CONTCAR" in upper:
            for line in head[5:7]:  # VASP 4: counts on line 6; VASP 5: symbols on 6, counts on 7
                words = line.split()
                if words and all(w.lstrip("-").isdigit() for w in words):
                    return sum(int(w) for w in words)
    except (ValueError, IndexError, OSError):
        return None
    return None


#: Suffixes of files that may hold several structures: CIF data blocks, xyz frames.
CIF_SUFFIXES = (".cif", ".mcif")
XYZ_SUFFIXES = (".xyz", ".extxyz")


def structure_labels(path: str | os.PathLike) -> list[str]:
    """The structures a file holds, by label: ``[""]`` for a file of one structure; else the
    data-block names of a CIF (only blocks that list atom sites; numbers from 1 when names are
    missing or repeat) or the frame numbers of an xyz file (from 0, as ``ase.io.read``'s
    ``index``).

    Raises :class:`InvalidStructureError` for a missing, unreadable or empty file, naming the
    cause (a symbolic-link loop, a dangling link, a folder or device, permission denied…).
    """
    path = Path(path)
    name = path.name
    try:
        mode = path.stat().st_mode  # follows links: a loop or a dangling link raises here
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise InvalidStructureError(name, f"cannot be read: {kind}, not a regular file")
        with open(path, "rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise InvalidStructureError(name, f"cannot be read: {_os_cause(exc, path)}") from None
    if not head:
        raise InvalidStructureError(name, "file is empty")
    suffix = path.suffix.lower()
    if suffix in CIF_SUFFIXES:
        names = [one_line(block) for block, _ in _cif_blocks(path.read_text(errors="replace"))]
        if len(names) <= 1:
            return [""]
        return names if len(set(names)) == len(names) and all(names) else [str(k + 1) for k in range(len(names))]
    if suffix in XYZ_SUFFIXES:
        n = _count_xyz_frames(path)
        return [""] if n <= 1 else [str(k) for k in range(n)]
    return [""]


def _shorten(labels: list[str], n: int = 5) -> str:
    return ", ".join(labels[:n]) + (", …" if len(labels) > n else "")


def _os_cause(exc: OSError, path: Path) -> str:
    """One phrase for why a path cannot be opened."""
    import errno

    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"dangling symbolic link (its target {os.readlink(path)} does not exist)"
    if exc.errno == errno.ENOENT:
        return f"file not found: {path}"
    return exc.strerror or type(exc).__name__


def _cif_blocks(text: str) -> list[tuple[str, str]]:
    """``(name, text)`` of every data block that lists atom sites (names lower-cased: CIF names
    are case-insensitive); ``data_`` inside a ``;``-delimited text field starts no block."""
    blocks: list[tuple[str, list[str]]] = []
    in_field = False
    for line in text.splitlines(keepends=True):
        if line.startswith(";"):
            in_field = not in_field
        elif not in_field and line.lstrip().lower().startswith("data_"):
            blocks.append((line.strip()[5:].lower(), []))
        if blocks:
            blocks[-1][1].append(line)
    out = []
    for block, lines in blocks:
        body = "".join(lines)
        low = body.lower()
        if "_atom_site_fract_x" in low or "_atom_site_cartn_x" in low:
            out.append((block, body))
    return out


def _count_xyz_frames(path: Path) -> int:
    """Frames of an xyz file (a count line, a comment line, that many atom lines; repeated).
    Counting stops where the file leaves that layout: the reader then says why."""
    frames = 0
    with open(path, "rb") as fh:
        while True:
            first = fh.readline()
            if not first.strip():
                break
            try:
                n = int(first.split()[0])
            except (ValueError, IndexError):
                break
            if n < 0 or n > MAX_ATOMS:  # the reader refuses it (a count, not a file, to walk)
                break
            last = b""
            for _ in range(n + 1):
                last = fh.readline()
                if not last:
                    break
            if not last:
                break
            frames += 1
    return max(frames, 1)


#: CIF sites closer than this (fractional) after applying the symmetry operators are one site:
#: coordinates printed with 4 decimals put special positions (x = 0.3333) a few mÅ apart.
CIF_SITE_TOLERANCE = 2e-3


class _CifBlock(NamedTuple):
    """One CIF data block: its text and its items (tags lower-cased: CIF tags are case-insensitive;
    None when pymatgen cannot tokenise it)."""

    text: str
    data: dict | None


def _cif_block(path: Path, index: int) -> _CifBlock:
    """The ``index``-th data block that lists atom sites (the whole file when none does)."""
    import warnings

    from pymatgen.io.cif import CifFile

    text = _LOOP_KEYWORD.sub(r"\1loop_", path.read_text(errors="replace"))
    blocks = _cif_blocks(text)
    if blocks:
        text = blocks[index][1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = list(CifFile.from_str(text).data.values())
    except Exception:  # noqa: BLE001 - the parsers report what is wrong with it
        return _CifBlock(text, None)
    data = {key.lower(): value for key, value in parsed[0].data.items()} if len(parsed) == 1 else None
    if data is not None and "_atom_site_fract_x" not in data and "_atom_site_cartn_x" not in data:
        data = None  # e.g. a block pymatgen skips (its name holds "powder_pattern")
    return _CifBlock(text, data)


#: the loop keyword at the start of a line, in any case (CIF's reserved words are case-blind, pymatgen's not)
_LOOP_KEYWORD = re.compile(r"(?im)^([ \t]*)loop_(?=\s|$)")
_ATOM_SITE_TAGS = ("_atom_site_fract_x", "_atom_site_cartn_x")
#: one CIF value: a quoted string (a quote ends only before white space), or a bare word
_CIF_TOKEN = re.compile(r"'(?:[^']|'(?=\S))*'|\"(?:[^\"]|\"(?=\S))*\"|\S+")


def _why_no_atom_sites(text: str) -> str | None:
    """Why a CIF block the parsers cannot read lists no atoms, or ``None`` (their own messages
    then stand): no atom-site coordinates, coordinates only in the dotted CIF2 / mmCIF tags the
    parsers do not read, or an atom-site loop whose values fill no row or not every row (on which
    pymatgen's tokeniser divides by zero). Text without a data block (junk, another format) is
    left to the parsers."""
    lines = text.splitlines()
    if not any(line.lstrip().lower().startswith("data_") for line in lines):
        return None
    low = text.lower()
    if not any(tag in low for tag in _ATOM_SITE_TAGS):
        if "_atom_site.fract_x" in low or "_atom_site.cartn_x" in low:
            return "lists no atoms the parsers read: its coordinates are in dotted tags (_atom_site.fract_x)"
        return "lists no atoms: no _atom_site_fract_x or _atom_site_Cartn_x"
    tokens = _cif_tokens(lines)
    for k, token in enumerate(tokens):
        if token.lower() != "loop_":
            continue
        tags = list(itertools.takewhile(lambda t: t.startswith("_"), tokens[k + 1:]))
        if not any(t.lower() in _ATOM_SITE_TAGS for t in tags):
            continue
        values = list(itertools.takewhile(lambda t: not _is_cif_keyword(t), tokens[k + 1 + len(tags):]))
        if not values:
            return "lists no atoms: its atom-site loop has no rows"
        if len(values) % len(tags):
            return f"its atom-site loop has {len(values)} value(s) for {len(tags)} columns: a row is incomplete"
    return None


def _is_cif_keyword(token: str) -> bool:
    """A tag or a reserved word: what ends a loop's values."""
    low = token.lower()
    return low.startswith(("_", "data_", "save_")) or low in ("loop_", "global_", "stop_")


def _cif_tokens(lines: list[str]) -> list[str]:
    """The words of CIF text, comments left out; a ``;``-delimited text field is one word."""
    tokens: list[str] = []
    in_field = False
    for line in lines:
        if line.startswith(";"):
            if not in_field:
                tokens.append(";")
            in_field = not in_field
            continue
        if not in_field:
            tokens += itertools.takewhile(lambda t: not t.startswith("#"), _CIF_TOKEN.findall(line))
    return tokens


def _read_with_pymatgen(path: Path, index: int, block: _CifBlock | None) -> Structure:
    import warnings

    suffix = path.suffix.lower()
    if block is not None:
        from pymatgen.io.cif import CifParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stoichiometry and rounding notices
            structures = CifParser.from_str(block.text, site_tolerance=CIF_SITE_TOLERANCE).parse_structures(primitive=False)
        if not structures:
            raise ValueError("no structure in the CIF")
        return structures[0]
    if suffix in XYZ_SUFFIXES:
        from ase.io import read as ase_read

        return ase_read(path, index=index)  # extxyz carries the lattice and pbc
    return Structure.from_file(path)


def _cif_number(value: str) -> float:
    """A CIF number without its standard uncertainty: ``"5.4307(2)"`` → 5.4307."""
    return float(str(value).split("(")[0])


#: Each CIF cell tag with the rule its value must obey and what the rule says, for the messages.
_CIF_CELL_RULES = tuple(
    [(f"_cell_length_{axis}", " Å", lambda v: v > 0, "a cell length must be positive") for axis in "abc"]
    + [(f"_cell_angle_{angle}", "°", lambda v: 0 < v < 180, "a cell angle must lie between 0° and 180°")
       for angle in ("alpha", "beta", "gamma")]
)


def _check_cif_cell(data: dict, name: str) -> None:
    """Cell lengths must be positive and angles strictly between 0° and 180°: pymatgen would
    read a negative length as a vector pointing the other way, i.e. as another crystal. The three
    angles must make a cell (a positive volume): otherwise the parsers fail with messages about their
    own internals."""
    for key, unit, valid, rule in _CIF_CELL_RULES:
        try:
            value = _cif_number(data[key])
        except (KeyError, ValueError, TypeError):
            continue  # missing or unreadable: the parser says so
        if not valid(value):
            raise InvalidStructureError(name, f"{key} is {data[key]}{unit}; {rule}")
    keys = [f"_cell_angle_{angle}" for angle in ("alpha", "beta", "gamma")]
    try:
        cosines = np.cos(np.radians([_cif_number(data[key]) for key in keys]))
    except (KeyError, ValueError, TypeError):
        cosines = None
    if cosines is not None and 1 - (cosines ** 2).sum() + 2 * cosines.prod() <= 1e-10:  # (V / abc)²
        raise InvalidStructureError(name, f"cell angles {', '.join(str(data[key]) for key in keys)}°: no cell has them "
                                          "(its volume would be zero or imaginary)")


def _check_cif_coordinates(data: dict, name: str) -> None:
    """Every atom site the parsers read (occupancy above 0; fractional columns, else Cartesian) must have
    numbers for coordinates (``.`` reads as 0): a ``?`` or ``nan`` makes them fail with messages about
    their own internals."""

    def column(key: str) -> list:
        return [data[key]] if isinstance(data.get(key), str) else list(data.get(key) or [])

    kind = "fract" if "_atom_site_fract_x" in data else "cartn"  # the columns the parsers read
    labels, occupancies = column("_atom_site_label"), column("_atom_site_occupancy")
    for key in (f"_atom_site_{kind}_{axis}" for axis in "xyz"):
        for k, value in enumerate(column(key)):
            try:
                number = 0.0 if str(value).strip() == "." else _cif_number(value)  # "." reads as 0, as in pymatgen
            except ValueError:
                number = float("nan")
            try:
                absent = k < len(occupancies) and _cif_occupancy(occupancies[k]) <= 0  # a site the parsers skip
            except ValueError:
                absent = False
            if not np.isfinite(number) and not absent:
                label = labels[k] if k < len(labels) else str(k + 1)
                raise InvalidStructureError(name, f"atom site {label}: {key} is {value}; a coordinate must be a number")


def _cif_element(symbol: str) -> Element | str | None:
    """The element a CIF type symbol or label names, read as pymatgen's CIF parser reads it
    (``"Fe3+"`` → Fe, ``"O1a"`` → O, ``"Wat"`` → O, ``"D"`` → D); ``""`` for a symbol pymatgen
    reads as no atom at all (``"OH"``, ``"OH2"``); None for a dummy (``"Lp"``, ``"Xx"``)."""
    import re
    import warnings
    from types import SimpleNamespace

    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = CifParser._parse_symbol(SimpleNamespace(warnings=[]), str(symbol))
    except Exception:  # noqa: BLE001 - its private helper moved: read the leading symbol ourselves
        match = re.match(r"([A-Z][a-z]?)", str(symbol).strip().capitalize())
        parsed = match and next((c for c in (match.group(1), match.group(1)[0]) if Element.is_valid_symbol(c)), None)
    if parsed == "":
        return ""
    return Element(parsed) if parsed and Element.is_valid_symbol(parsed) else None


#: How far a CIF's occupancy may stray outside [0, 1] (rounding in the file), beyond three times the
#: uncertainty written with it ("1.04(5)"), before it is refused.
OCCUPANCY_SLACK = 0.05


def _cif_uncertainty(value: str) -> float:
    """The standard uncertainty written with a CIF number (``"1.04(5)"`` → 0.05; none → 0)."""
    text = str(value).strip()
    if "(" not in text:
        return 0.0
    number, digits = text.split("(", 1)
    decimals = len(number.split(".", 1)[1]) if "." in number else 0
    try:
        return int(digits.rstrip(")")) * 10.0 ** -decimals
    except ValueError:
        return 0.0


def _cif_occupancy(value: str) -> float:
    """A listed occupancy; ``?`` (unknown) and ``.`` (the default) are 1."""
    return 1.0 if str(value).strip() in ("?", ".") else _cif_number(value)


def _check_cif_sites(block: _CifBlock, structure: Structure, name: str, via_ase: bool = False) -> None:
    """Every fully occupied atom site the CIF lists must be in the parsed crystal, as its own element.

    Parsers merge sites closer than their tolerance and drop sites they cannot name: two listed
    atoms of different elements on one position (a typo, or disorder written without
    occupancies) would come back as one of them, a dropped site as nothing — silently, a crystal
    of another composition. ASE also ignores occupancies, so on its path a partly occupied site is
    refused here (pymatgen's path refuses it in the validation)."""
    data = block.data or {}
    cartesian = "_atom_site_fract_x" not in data  # Cartesian Å on the CIF's default axes (a along x, b in xy)
    kind = "cartn" if cartesian else "fract"
    xs, ys, zs = (data.get(f"_atom_site_{kind}_{axis}") for axis in "xyz")
    if not xs or not structure.is_ordered:
        return  # no sites, or disorder the validation refuses with its own message
    labels = data.get("_atom_site_label") or [str(k + 1) for k in range(len(xs))]
    symbols = data.get("_atom_site_type_symbol") or labels
    occupancies = data.get("_atom_site_occupancy") or ["1"] * len(xs)
    if not (len(labels) == len(symbols) == len(occupancies) == len(xs) == len(ys or []) == len(zs or [])):
        return  # a broken loop: the parser has already said so or read what it could
    listed = []  # (label, element, fractional position, as written) of every fully occupied site it names
    for label, symbol, occupancy, *xyz in zip(labels, symbols, occupancies, xs, ys, zs):
        element = _cif_element(symbol)
        try:
            point = np.array([_cif_number(v) for v in xyz])
            if cartesian:
                point = structure.lattice.get_fractional_coords(point)
            occupied = _cif_occupancy(occupancy)
        except ValueError:
            continue
        margin = OCCUPANCY_SLACK + 3 * _cif_uncertainty(occupancy)
        if not -margin <= occupied <= 1.0 + margin:  # pymatgen drops a negative one and reads 1.5 as one atom
            raise InvalidStructureError(name, f"atom site {label} ({symbol}) has occupancy {occupancy}; an occupancy "
                                              "lies between 0 and 1")
        if element == "" and occupied > 0:
            raise InvalidStructureError(name, f"atom site {label} ({symbol}) names no element pymatgen reads (it drops "
                                              "the site); give its element in _atom_site_type_symbol")
        if via_ase and occupied < 1.0 - 1e-3:
            raise InvalidStructureError(name, f"partial occupancy / disorder at site {label} (occupancy {occupancy}): "
                                              "only ordered crystals")
        if element is not None and occupied >= 1.0 - 1e-3 and np.isfinite(point).all():
            listed.append((label, element, point, ", ".join(str(v) for v in xyz)))
    lattice = structure.lattice

    def distances(frac: np.ndarray, point: np.ndarray) -> np.ndarray:  # Å, nearest periodic image
        delta = frac - point
        return np.linalg.norm(lattice.get_cartesian_coords(delta - np.round(delta)), axis=-1)

    frac = structure.frac_coords
    numbers = [site.specie.Z for site in structure]  # by atomic number: deuterium is hydrogen
    for label, element, point, where in listed:
        d = distances(frac, point)
        nearest = int(np.argmin(d))
        if d[nearest] >= MIN_INTERATOMIC_DISTANCE:
            raise InvalidStructureError(name, f"atom site {label} ({element}) at ({where}) is not in the crystal "
                                              f"{'ASE' if via_ase else 'pymatgen'} read from the file")
        if numbers[nearest] != element.Z:
            kept = structure[nearest].specie.symbol
            other = next((lab for lab, el, p, _ in listed if el.Z == numbers[nearest]
                          and distances(p[None], point)[0] < MIN_INTERATOMIC_DISTANCE), None)
            if other is None:
                raise InvalidStructureError(name, f"atom site {label} ({element}) at ({where}) came out as {kept} "
                                                  f"when {'ASE' if via_ase else 'pymatgen'} read the file")
            raise InvalidStructureError(name, f"atom sites {label} ({element}) and {other} ({kept}) are on one "
                                              f"position ({where}); only ordered crystals with one atom per site")


def as_structure(obj: StructureLike, name: str | None = None, check_overlaps: bool = True,
                 copy: bool = True) -> Structure:
    """Convert and validate one input into a pymatgen ``Structure``.

    Accepts a ``Structure``, an ASE ``Atoms`` or a path. Raises
    :class:`InvalidStructureError` for partial occupancy, vacancies, dummy species, a
    non-periodic, degenerate or huge cell, too many atoms, no atoms, non-finite coordinates,
    overlapping atoms, or atoms not connected in 3-D (a molecule, slab, chain or isolated atom).
    ``check_overlaps=False`` leaves the overlap test to the caller (the graph builder does it
    from its own neighbour list, saving a second search). A ``Structure`` is copied first
    (the caller's stays untouched) unless ``copy=False``.
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_structure(obj)
    structure = obj if not copy and isinstance(obj, Structure) else _to_pymatgen(obj, name)
    name = name or structure_name(structure)
    _validate(structure, name, check_overlaps)
    if name and "material_id" not in (structure.properties or {}):
        structure.properties = {**(structure.properties or {}), "name": name}
    return structure


def _is_ase_atoms(obj: Any) -> bool:
    return type(obj).__name__ == "Atoms" and hasattr(obj, "get_cell")


def _to_pymatgen(obj: Any, name: str | None) -> Structure:
    label = name or type(obj).__name__
    if isinstance(obj, Structure):
        return obj.copy()
    if _is_ase_atoms(obj):
        pbc = np.asarray(obj.get_pbc(), dtype=bool)
        if len(obj) == 0:
            raise InvalidStructureError(label, "structure has no atoms")
        if not pbc.all():
            raise InvalidStructureError(
                label, f"not periodic in all three directions (pbc={pbc.tolist()})"
            )
        check_cell(np.asarray(obj.get_cell()), len(obj), label)  # the adaptor inverts it
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(obj)
    if type(obj).__name__ in ("Molecule", "IMolecule"):
        raise InvalidStructureError(label, "a Molecule is not periodic; a crystal is required")
    raise InvalidStructureError(
        label, f"unsupported input type {type(obj).__name__}: expected Structure, Atoms or a path"
    )


def _validate(structure: Structure, name: str, check_overlaps: bool = True) -> None:
    if len(structure) == 0:
        raise InvalidStructureError(name, "structure has no atoms")
    compositions = [site.species for site in structure]
    # ordered: one species of occupancy exactly 1 (pymatgen's Site.is_ordered), so no vacancy either
    bad = [i for i, c in enumerate(compositions) if not c.num_atoms == len(c) == 1]
    if bad:
        raise InvalidStructureError(
            name, f"partial occupancy / disorder at site(s) {bad[:5]}: only ordered crystals"
        )
    for i, c in enumerate(compositions):
        sp = next(iter(c))
        if not isinstance(getattr(sp, "element", sp), Element):
            raise InvalidStructureError(name, f"site {i} holds {sp!s}, not a chemical element")
    pbc = getattr(structure.lattice, "pbc", (True, True, True))
    if not all(pbc):
        raise InvalidStructureError(name, f"not periodic in all directions (pbc={tuple(pbc)})")
    if len(structure) > MAX_ATOMS:
        raise InvalidStructureError(name, f"{len(structure)} atoms in the cell, above the limit of {MAX_ATOMS}")
    check_cell(structure.lattice.matrix, len(structure), name)
    if not np.all(np.isfinite(structure.frac_coords)):
        raise InvalidStructureError(name, NON_FINITE_CELL)
    _wrap_far_sites(structure, name)
    from .dimensionality import contact_pairs, contact_pairs_bound, periodicity

    if contact_pairs_bound(structure) > CROWDED_PAIRS:  # atoms stacked on one point would make the contact
        centers, neighbors, _, distances = structure.get_neighbor_list(  # search huge: refused on a short one
            MIN_INTERATOMIC_DISTANCE, exclude_self=True
        )
        raise_on_overlap(name, centers, neighbors, distances)
    pairs = contact_pairs(structure)  # one neighbour search for both checks
    if check_overlaps:
        raise_on_overlap(name, pairs.src, pairs.dst, pairs.distance)
    cause = periodicity(structure, pairs).cause()
    if cause:
        raise InvalidStructureError(name, cause)


#: Above this estimate of the contact search's pairs (:func:`~.dimensionality.contact_pairs_bound`)
#: overlapping atoms are looked for by a short search first (~0.2 ms), whatever ``check_overlaps``:
#: N atoms on one point of a thin cell would otherwise list ~N² pairs per cell image (GBs).
CROWDED_PAIRS = 5_000_000

#: Fractional coordinates beyond this are wrapped into the cell before any neighbour search, which
#: would otherwise allocate for every cell in between (unwrapped coordinates, e.g. from MD).
MAX_FRACTIONAL_COORDINATE = 2.0
#: ... and beyond this a float no longer holds the position within the cell: refused.
MAX_WRAPPABLE_COORDINATE = 1e6


def _wrap_far_sites(structure: Structure, name: str) -> None:
    """Move atoms given many cells away from the origin back into the cell (the same crystal)."""
    frac = structure.frac_coords
    far = np.abs(frac).max()
    if far <= MAX_FRACTIONAL_COORDINATE:
        return
    if far > MAX_WRAPPABLE_COORDINATE:
        raise InvalidStructureError(name, f"fractional coordinate {far:.3g}: too far from the cell to place an atom "
                                          "in it (a broken file?)")
    wrapped = frac - np.floor(frac)
    for i in np.flatnonzero(np.abs(frac).max(axis=1) > MAX_FRACTIONAL_COORDINATE):
        site = structure[i]
        structure.replace(int(i), site.species, wrapped[i], properties=site.properties)


def check_cell(matrix, n_atoms: int, name: str) -> None:
    """Refuse a lattice (rows = vectors, Å) no neighbour search should see: non-finite,
    degenerate (volume per atom below ``MIN_VOLUME_PER_ATOM``), longer than ``MAX_CELL_LENGTH``
    or with lattice planes closer than ``MIN_PLANE_SPACING``. Costs no allocation."""
    matrix = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise InvalidStructureError(name, NON_FINITE_CELL)
    lengths = np.linalg.norm(matrix, axis=1)
    if lengths.max() > MAX_CELL_LENGTH:
        raise InvalidStructureError(
            name, f"lattice vector of {lengths.max():.4g} Å, above the limit of {MAX_CELL_LENGTH:g} Å "
                  "(wrong units or a vacuum box?)")
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_VOLUME_PER_ATOM * n_atoms:
        raise InvalidStructureError(name, f"degenerate cell: volume {volume:.3g} Å^3 for {n_atoms} atoms")
    areas = np.linalg.norm(np.cross(matrix[[1, 2, 0]], matrix[[2, 0, 1]]), axis=1)
    spacing = volume / areas.max()
    if spacing < MIN_PLANE_SPACING:
        raise InvalidStructureError(
            name, f"degenerate or skewed cell: lattice planes {spacing:.3g} Å apart "
                  f"(minimum {MIN_PLANE_SPACING:g} Å; reduce the cell)")


def raise_on_overlap(name: str, centers, neighbors, distances) -> None:
    """Raise :class:`InvalidStructureError` if any neighbour distance is below the minimum."""
    if len(distances) and float(np.min(distances)) < MIN_INTERATOMIC_DISTANCE:
        k = int(np.argmin(distances))
        raise InvalidStructureError(
            name,
            f"atoms {int(centers[k])} and {int(neighbors[k])} overlap "
            f"({distances[k]:.3f} Å apart, minimum {MIN_INTERATOMIC_DISTANCE} Å)",
        )
