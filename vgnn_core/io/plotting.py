"""Band structure beside the DOS, in cm⁻¹, THz or meV, with imaginary modes below zero."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..phonons.dos import PhononDOS
from ..phonons.qpath import QPath
from ..phonons.units import THZ_TO_CM1, cm1_to_mev
from .exports import pretty_label

_UNITS = {"cm-1": (1.0, "Frequency (cm$^{-1}$)"), "THz": (1.0 / THZ_TO_CM1, "Frequency (THz)"),
          "meV": (float(cm1_to_mev(1.0)), "Energy (meV)")}


def plot_phonons(
    qpath: QPath,
    frequencies_cm1: np.ndarray,
    dos: PhononDOS | None = None,
    unit: str = "cm-1",
    reference: np.ndarray | None = None,
    reference_label: str = "DFPT",
    title: str | None = None,
):
    """A matplotlib ``Figure``: bands along ``qpath`` (and ``dos`` beside them when given).

    ``reference`` (n_q, n_bands, cm⁻¹ on the same q-points) is overlaid as dashed lines.
    Segments separated by a break in the path are drawn apart, with ``A|B`` labels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {sorted(_UNITS)}, not {unit!r}")
    scale, ylabel = _UNITS[unit]
    if dos is not None:
        fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4.5), sharey=True,
                                         gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05})
    else:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax_dos = None
    x = np.asarray(qpath.distances)
    f = np.asarray(frequencies_cm1) * scale
    for a, b in qpath.segments:
        seg = slice(a, b + 1)
        ax.plot(x[seg], f[seg], color="C0", lw=1.2)
        if reference is not None:
            ax.plot(x[seg], np.asarray(reference)[seg] * scale, color="k", lw=0.9, ls="--")
    if reference is not None:
        ax.plot([], [], color="C0", lw=1.2, label="VGNN")
        ax.plot([], [], color="k", lw=0.9, ls="--", label=reference_label)
        ax.legend(loc="best", fontsize=8)
    ticks, names = tick_labels(qpath)
    ax.set_xticks(ticks, names)
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.6)
    ax.axhline(0.0, color="0.4", lw=0.6)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ax_dos is not None and dos is not None:
        ax_dos.plot(dos.total / scale, dos.frequencies * scale, color="k", lw=1.0, label="total")
        for k, (name, part) in enumerate(dos.partial.items()):
            ax_dos.plot(part / scale, dos.frequencies * scale, lw=0.9, color=f"C{k + 1}", label=name)
        ax_dos.axhline(0.0, color="0.4", lw=0.6)
        ax_dos.set_xlabel("DOS")
        ax_dos.set_xlim(left=0)
        ax_dos.set_xticks([])
        ax_dos.legend(loc="upper right", fontsize=7)
    lo = min(0.0, float(f.min()))
    hi = float(f.max())
    ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.05 * (hi - lo))
    return fig


def tick_labels(qpath: QPath) -> tuple[list[float], list[str]]:
    """Tick positions and labels; two labels on one position become ``A|B`` at a break."""
    x = np.asarray(qpath.distances)
    ticks: list[float] = []
    names: list[str] = []
    for index, name in qpath.labels:
        label = pretty_label(name)
        if ticks and abs(x[index] - ticks[-1]) < 1e-9:
            if names[-1] != label:
                names[-1] = f"{names[-1]}|{label}"
            continue
        ticks.append(float(x[index]))
        names.append(label)
    return ticks, names


def plot_result(result, path: str | Path | None = None, unit: str = "cm-1", reference: np.ndarray | None = None):
    """Bands beside the DOS of a :class:`~vgnn_core.phonons.result.PhononResult`; saved when ``path``."""
    if result.qpath is None or result.bands is None:
        raise ValueError(f"{result.name}: no band structure to plot (needs a k-MVN model)")
    fig = plot_phonons(result.qpath, result.bands, result.dos, unit=unit, reference=reference,
                       title=f"{result.structure.composition.reduced_formula} ({result.name})")
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig
