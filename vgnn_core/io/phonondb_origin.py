"""Togo's phonondb force sets from their public origin, for users without the prepared pack.

The origin is the public GitHub repository ``WMD-group/phononDB`` (Togo's phonondb release
ph20180417, CC BY 4.0; cite A. Togo, phonondb, Kyoto University, and A. Togo and I. Tanaka,
Scr. Mater. 108, 1 (2015)): one ``phonon_db_tarred/materials-id-<id>-<formula>-<group>.tar.lzma``
per material with ``POSCAR-unitcell``, ``phonopy.conf`` (``DIM``, ``PRIMITIVE_AXIS``) and
``FORCE_SETS``. :func:`download_phonondb` lists the archives at a fixed commit (GitHub's git
trees API), fetches each through :mod:`vgnn_core.io.http`, checks it against its git blob hash,
and converts it into the ``.npz`` that :func:`vgnn_core.training.force_sets.iter_force_sets`
reads from a folder (the same arrays as the prepared pack, forces in eV/Å).
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import requests

from ..files import save_npz_atomic
from .http import DownloadError, download_verified, http_session

GITHUB_API = "https://api.github.com"
GITHUB_RAW = "https://raw.githubusercontent.com"
REPOSITORY = "WMD-group/phononDB"
#: The commit the project's pack was made from (``togo_phonondb/FORCE_SETS_README.md``).
COMMIT = "b5fa78d25c2d983d8fdfaf4ce063d713a529bfc2"
FOLDER = "phonon_db_tarred"
_NAME = re.compile(r"^materials-id-(\d+)-.*\.tar\.lzma$")


@dataclass(frozen=True)
class OriginArchive:
    """One material's archive in the repository."""

    material_id: str  # mp-<id>
    path: str
    size: int
    blob_sha: str  # git's sha1 of "blob <size>\0" + content


def list_archives(session: requests.Session, api: str = GITHUB_API, repository: str = REPOSITORY,
                  commit: str = COMMIT) -> dict[str, OriginArchive]:
    """The force-set archives of ``repository`` at ``commit``, by material id."""
    r = session.get(f"{api.rstrip('/')}/repos/{repository}/git/trees/{commit}", params={"recursive": "1"}, timeout=120)
    if r.status_code >= 400:
        raise DownloadError(f"{repository}@{commit[:10]}: listing failed (HTTP {r.status_code})")
    out = {}
    for entry in r.json().get("tree", []):
        folder, _, name = entry.get("path", "").rpartition("/")
        m = _NAME.match(name)
        if entry.get("type") == "blob" and folder == FOLDER and m:
            out[f"mp-{m.group(1)}"] = OriginArchive(f"mp-{m.group(1)}", entry["path"], int(entry["size"]), entry["sha"])
    return out


def git_blob_sha1(path: Path) -> str:
    """git's object id of a file's content."""
    data = Path(path).read_bytes()
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _conf_matrix(text: str, key: str) -> np.ndarray | None:
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip().upper() == key:
            numbers = [float(Fraction(x)) for x in value.split()]
            if len(numbers) == 3:
                return np.diag(numbers)
            if len(numbers) == 9:
                return np.array(numbers).reshape(3, 3)
            raise ValueError(f"{key} has {len(numbers)} numbers, expected 3 or 9")
    return None


def force_set_arrays(archive: Path, material_id: str) -> dict[str, np.ndarray]:
    """The arrays of one material (the prepared pack's layout) from its origin archive."""
    from phonopy.file_IO import parse_FORCE_SETS_from_strings
    from pymatgen.io.vasp import Poscar

    files: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:  # .tar.lzma: lzma's legacy format, read by r:*
        for member in tar:
            name = member.name.rpartition("/")[2]
            if member.isfile() and name in ("POSCAR-unitcell", "phonopy.conf", "FORCE_SETS"):
                files[name] = tar.extractfile(member).read().decode()
    missing = {"POSCAR-unitcell", "phonopy.conf", "FORCE_SETS"} - set(files)
    if missing:
        raise ValueError(f"{material_id}: {archive.name} lacks {sorted(missing)}")
    unit = Poscar.from_str(files["POSCAR-unitcell"]).structure
    dim = _conf_matrix(files["phonopy.conf"], "DIM")
    if dim is None:
        raise ValueError(f"{material_id}: phonopy.conf has no DIM")
    axis = _conf_matrix(files["phonopy.conf"], "PRIMITIVE_AXIS")
    n_super = int(round(abs(np.linalg.det(dim)))) * len(unit)
    dataset = parse_FORCE_SETS_from_strings(files["FORCE_SETS"], natom=n_super)
    first = dataset["first_atoms"]
    return {
        "lattice": np.asarray(unit.lattice.matrix, dtype=float),
        "numbers": np.array([s.specie.Z for s in unit], dtype=np.int32),
        "frac_coords": np.asarray(unit.frac_coords, dtype=float),
        "supercell_matrix": np.rint(dim).astype(np.int64),
        "primitive_matrix": np.eye(3) if axis is None else axis,
        "displaced_atoms": np.array([a["number"] for a in first], dtype=np.int32),
        "displacements": np.array([a["displacement"] for a in first], dtype=float).reshape(-1, 3),
        "forces": np.array([a["forces"] for a in first], dtype=float).reshape(len(first), n_super, 3),
        "forces_unit": np.float64(1.0),
    }


def download_phonondb(
    dest: str | Path,
    ids: Iterable[str] | None = None,
    session: requests.Session | None = None,
    api: str = GITHUB_API,
    raw: str = GITHUB_RAW,
    repository: str = REPOSITORY,
    commit: str = COMMIT,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Path], dict[str, str]]:
    """Fetch (or verify) the force sets of ``ids`` (all when ``None``) into ``dest`` as ``.npz``.

    Resumable: materials already converted are kept. Returns the files and, by material id,
    the one-line cause of every material that could not be fetched or converted.
    """
    dest = Path(dest)
    session = session or http_session()
    listing = list_archives(session, api, repository, commit)
    wanted = sorted(listing) if ids is None else list(ids)
    done, failures = [], {}
    for k, material_id in enumerate(wanted):
        target = dest / f"{material_id}.npz"
        if target.is_file():
            done.append(target)
            continue
        entry = listing.get(material_id)
        if entry is None:
            failures[material_id] = f"not in {repository}@{commit[:10]}/{FOLDER}"
            continue
        archive = dest / "archives" / entry.path.rpartition("/")[2]
        try:
            download_verified(session, f"{raw.rstrip('/')}/{repository}/{commit}/{entry.path}", archive, size=entry.size)
            if git_blob_sha1(archive) != entry.blob_sha:
                archive.unlink()
                raise DownloadError(f"{archive.name}: content does not match its git object {entry.blob_sha[:10]}")
            save_npz_atomic(target, force_set_arrays(archive, material_id))
        except Exception as exc:  # noqa: BLE001 - one bad archive is that material's failure
            failures[material_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        archive.unlink()
        done.append(target)
        if progress and (k + 1) % 100 == 0:
            progress(f"{k + 1} of {len(wanted)} materials")
    return done, failures
