"""Where a prediction's time goes: wall seconds per stage, for benchmarks and build reports.

A :class:`StageClock` is handed to :meth:`~vgnn_core.predict.Predictor.predict_phonons` (and
through it to :func:`~vgnn_core.phonons.result.phonon_properties`) by whoever wants the split;
without one nothing is timed. The stages of a prediction:

* ``graph`` — validating the structures and building their neighbour graphs;
* ``network`` — the networks' forward passes (force constants, Born charges) and, for an
  ensemble, its members' own eigen-solves at a few q-points (their agreement), up to the
  force constants' arrival on the CPU;
* ``solves`` — an MVN's Γ eigen-solves;
* ``bands`` — a k-MVN's Γ and band-path eigen-solves, the q-path itself and the LO–TO setup;
* ``dos_thermo`` — the q-mesh, its eigen-solves, the DOS and the thermal properties.

A k-MVN's per-crystal work runs in threads, one crystal each: there ``bands`` and ``dos_thermo``
are first counted in thread-seconds, and :meth:`StageClock.wall_seconds` shares the wall time
of the whole threaded step (``per_crystal``) out between them in that proportion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: the threaded per-crystal step (wall seconds) and the stages counted inside it (thread-seconds)
THREADED_STEP = "per_crystal"
THREADED_STAGES = ("bands", "dos_thermo")


class StageClock:
    """Seconds spent per named stage, summed over calls (thread-safe; pickles without its lock)."""

    def __init__(self, seconds: Mapping[str, float] | None = None) -> None:
        self._seconds: dict[str, float] = dict(seconds or {})
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"seconds": self.seconds}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seconds"])

    def __repr__(self) -> str:
        return f"StageClock({self.seconds!r})"

    @property
    def seconds(self) -> dict[str, float]:
        """A copy of the seconds per stage, as counted (thread-seconds inside the threaded step)."""
        with self._lock:
            return dict(self._seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name`` (counted also when the block raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` more for stage ``name``."""
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + float(seconds)

    def merge(self, other: Mapping[str, float] | StageClock) -> None:
        """Add another clock's (or a ``{stage: seconds}`` mapping's) seconds to this one."""
        for name, seconds in (other.seconds if isinstance(other, StageClock) else dict(other)).items():
            self.add(name, seconds)

    def wall_seconds(self) -> dict[str, float]:
        """Wall seconds per stage: the threaded step's wall time shared out between the stages
        counted inside it, in proportion to their thread-seconds (they then add up to it)."""
        out = self.seconds
        step = out.pop(THREADED_STEP, None)
        inside = {s: out[s] for s in THREADED_STAGES if s in out}
        if step is not None and sum(inside.values()) > 0:
            share = step / sum(inside.values())
            out.update({s: t * share for s, t in inside.items()})
        return out

    @property
    def total(self) -> float:
        """All stages' wall seconds together."""
        return sum(self.wall_seconds().values())


@contextmanager
def maybe_stage(clock: StageClock | None, name: str) -> Iterator[None]:
    """``clock.stage(name)``, or nothing when there is no clock."""
    if clock is None:
        yield
    else:
        with clock.stage(name):
            yield
