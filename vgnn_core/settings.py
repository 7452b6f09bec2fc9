"""Every environment variable and default the project reads, in one place.

| variable | meaning | default |
|---|---|---|
| ``VGNN_DATA_DIR`` | shared data folder (Petretto, phonondb, IZA, phonopy examples) | ``../shared/data`` when it exists |
| ``VGNN_CACHE_DIR`` | prepared training samples, downloads | ``~/.cache/vgnn`` |
| ``VGNN_DEVICE`` | torch device of build workers | the worker's GPU, else ``cpu`` |
| ``VGNN_CPU_THREADS`` | threads for the CPU work after the network | see :func:`flows.models.worker_cpu_threads` |
| ``VGNN_GPU_BY_WORKER`` | build workers share the node's GPUs, worker k on GPU k mod n (set by ``--cluster cuda``) | off |
| ``VGNN_SLURM_CONFIG`` | a YAML of SLURM cluster settings for ``--cluster slurm`` (e.g. ``deploy/slurm.yaml``) | none: ``flows.clusters.SLURM_DEFAULTS`` |
| ``VGNN_IZA_URL`` | the IZA framework CIF server (a mirror, or a test server) | the IZA Structure Commission |
| ``MP_API_KEY``, ``MP_API_ENDPOINT`` | the Materials Project key and API (``--source mp``) | none; mp-api's |
| ``OSF_TOKEN`` | the OSF personal access token of ``vgnn publish`` | none |
| ``VGNN_VERBOSE`` | Prefect's and Dask's INFO logs during a build (``vgnn build --verbose``) | off |

Functions read the environment when called (never at import), so tests and workers can set
variables first.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_VAR = "VGNN_DATA_DIR"
CACHE_DIR_VAR = "VGNN_CACHE_DIR"
DEVICE_VAR = "VGNN_DEVICE"
CPU_THREADS_VAR = "VGNN_CPU_THREADS"
GPU_BY_WORKER_VAR = "VGNN_GPU_BY_WORKER"

#: The symmetry tolerance (Å) of every symmetry analysis — space group, structure hash, q-path,
#: irreducible q-mesh — but one: the count below. Loose enough for relaxed DFT cells, tight
#: enough not to promote distorted ones.
SYMPREC: float = 1e-3
#: The tolerance (Å) with which the uncertainty counts a crystal's primitive-cell atoms
#: (:func:`vgnn_core.crystal.symmetry.primitive_atoms`), ten times :data:`SYMPREC`: the count
#: enters the expected error as a power, and noise at SYMPREC's scale (a CIF's coordinates to
#: four decimals, a loosely relaxed cell) must not make a conventional cell count as primitive.
PRIMITIVE_SYMPREC: float = 1e-2


def shared_data_dir() -> Path | None:
    """The shared data folder, or ``None`` when it is absent (a user's machine).

    ``$VGNN_DATA_DIR`` wins when set. Otherwise ``../shared/data`` is looked up relative to
    the current directory and to the source checkout that holds this package.
    """
    env = os.environ.get(DATA_DIR_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    candidates = [
        Path.cwd() / ".." / "shared" / "data",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def cache_dir() -> Path:
    """``$VGNN_CACHE_DIR`` or ``~/.cache/vgnn``."""
    return Path(os.environ.get(CACHE_DIR_VAR, Path.home() / ".cache" / "vgnn"))


def env(name: str) -> str | None:
    """One of the variables in the table above (``None`` when unset or empty)."""
    known = {DATA_DIR_VAR, CACHE_DIR_VAR, DEVICE_VAR, CPU_THREADS_VAR, GPU_BY_WORKER_VAR, "VGNN_SLURM_CONFIG", "VGNN_IZA_URL",
             "MP_API_KEY", "MP_API_ENDPOINT", "OSF_TOKEN", "VGNN_VERBOSE"}
    if name not in known:
        raise KeyError(f"{name} is not one of the project's settings: {sorted(known)}")
    return os.environ.get(name) or None


def device_override() -> str | None:
    """``$VGNN_DEVICE`` when set."""
    return os.environ.get(DEVICE_VAR) or None


def cpu_threads_override() -> int | None:
    """``$VGNN_CPU_THREADS`` (at least 1) when set."""
    value = os.environ.get(CPU_THREADS_VAR)
    return max(1, int(value)) if value else None
