"""``vgnn demo`` (``make validate``): exact phonons through the D(q) assembly every prediction uses.

With phonopy's example force sets (``$VGNN_DATA_DIR/phonopy_examples``) it compares our
frequencies with phonopy's along each crystal's high-symmetry path; spring models with analytic
dispersions run always. No network is involved: this checks the physics path, not a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from vgnn_core import (
    band_frequencies,
    central_spring_force_constants,
    from_phonopy,
    high_symmetry_path,
)
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_CM1


@dataclass
class DemoRow:
    crystal: str
    n_atoms: int
    n_qpoints: int
    max_frequency_cm1: float
    min_frequency_cm1: float
    acoustic_gamma_cm1: float
    max_abs_difference_cm1: float
    reference: str
    seconds: float


def phonopy_examples(root: Path) -> list[DemoRow]:
    """Our assembly vs phonopy along the band path of each example crystal."""
    from pymatgen.io.phonopy import get_pmg_structure

    from vgnn_core.io.phonopy import (
        example_directories,
        load_force_sets,
        phonopy_frequencies_cm1,
    )

    rows = []
    for directory in example_directories(root):
        t0 = time.perf_counter()
        ph = load_force_sets(directory)
        primitive = get_pmg_structure(ph.primitive)
        path = high_symmetry_path(primitive)
        ours = band_frequencies([from_phonopy(ph)], [torch.as_tensor(path.qpoints)])[0].numpy()
        reference = phonopy_frequencies_cm1(ph, path.qpoints)
        rows.append(_row(directory.name, primitive, path, ours, reference, "phonopy", t0))
    return rows


def side_by_side(root: Path, crystal: str = "ZnO") -> str:
    """Γ and zone-boundary frequencies of one crystal: ours next to phonopy's."""
    from pymatgen.io.phonopy import get_pmg_structure

    from vgnn_core.io.phonopy import load_force_sets, phonopy_frequencies_cm1

    ph = load_force_sets(root / crystal)
    path = high_symmetry_path(get_pmg_structure(ph.primitive))
    labels = ["GAMMA"] + [k for k in path.special_points if k != "GAMMA"][:1]
    q = np.array([path.special_points[k] for k in labels])
    ours = band_frequencies([from_phonopy(ph)], [torch.as_tensor(q)])[0].numpy()
    ref = phonopy_frequencies_cm1(ph, q)
    lines = [f"{crystal}: frequencies (cm⁻¹), vgnn_core assembly | phonopy"]
    for k, label in enumerate(labels):
        lines.append(f"  {label} q = ({q[k][0]:.4f}, {q[k][1]:.4f}, {q[k][2]:.4f})")
        for a, b in zip(ours[k], ref[k]):
            lines.append(f"    {a:12.5f} | {b:12.5f}")
    return "\n".join(lines)


def spring_models() -> list[DemoRow]:
    """Central-spring crystals whose dispersion is known in closed form."""
    k = 2.0
    cubic = Structure(Lattice.cubic(2.8), ["Al"], [[0, 0, 0]])
    rows = []
    t0 = time.perf_counter()
    path = high_symmetry_path(cubic)
    fc = central_spring_force_constants(cubic, k, r_max=3.0)
    ours = band_frequencies([fc], [torch.as_tensor(path.qpoints)])[0].numpy()
    mass = cubic[0].specie.atomic_mass
    exact = np.sort(2 * np.sqrt(k / mass) * np.abs(np.sin(np.pi * path.qpoints)), axis=1)
    rows.append(_row("Al simple-cubic springs", cubic, path, ours, exact * EV_ANGSTROM2_AMU_TO_CM1, "analytic", t0))
    return rows


def _row(name, structure, path, ours, reference, label, t0) -> DemoRow:
    gamma = np.flatnonzero(np.abs(path.qpoints).sum(axis=1) < 1e-12)
    # the three modes closest to zero at Γ (imaginary optical modes may sort below them)
    acoustic = float(np.sort(np.abs(ours[gamma]), axis=1)[:, :3].max()) if len(gamma) else float("nan")
    return DemoRow(
        crystal=name,
        n_atoms=len(structure),
        n_qpoints=path.n_qpoints,
        max_frequency_cm1=float(ours.max()),
        min_frequency_cm1=float(ours.min()),
        acoustic_gamma_cm1=acoustic,
        max_abs_difference_cm1=float(np.abs(ours - reference).max()),
        reference=label,
        seconds=time.perf_counter() - t0,
    )


def exactness_table(rows: list[DemoRow]) -> str:
    header = (
        f"{'crystal':<24}{'atoms':>6}{'q-pts':>7}{'ω min':>10}{'ω max':>10}"
        f"{'|ω_ac(Γ)|':>12}{'max |Δω|':>12}  reference"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.crystal:<24}{r.n_atoms:>6}{r.n_qpoints:>7}{r.min_frequency_cm1:>10.2f}"
            f"{r.max_frequency_cm1:>10.2f}{r.acoustic_gamma_cm1:>12.2e}{r.max_abs_difference_cm1:>12.2e}  {r.reference}"
        )
    lines.append("(frequencies in cm⁻¹; Δω = ours − reference along the seekpath band path)")
    return "\n".join(lines)
