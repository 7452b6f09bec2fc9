"""Where a prediction's time goes: wall seconds per stage, for benchmarks and build reports.

A :class:`StageClock` is handed to :meth:`~vgnn_core.predict.Predictor.predict_phonons` (and
through it to :func:`~vgnn_core.phonons.result.phonon_properties`) by whoever wants the split;
without one nothing is timed. The stages of a prediction:

* ``graph`` — validating the structures and building their neighbour graphs;
* ``network`` — the networks' forward passes (force constants, Born charges, members' agreement);
* ``solves`` — Γ and band-path eigen-solves (with the q-path itself);
* ``dos_thermo`` — the q-mesh, its eigen-solves, the DOS and the thermal properties.

Stages that run in several threads at once (the per-crystal solves) add up every thread's
seconds, so a clock's total can exceed the wall time it covers: read them as thread-seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageClock:
    """Seconds spent per named stage (summed over calls and threads; thread-safe)."""

    seconds: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` more for stage ``name``."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def merge(self, other: Mapping[str, float] | StageClock) -> None:
        """Add another clock's (or a ``{stage: seconds}`` mapping's) seconds to this one."""
        for name, seconds in (other.seconds if isinstance(other, StageClock) else other).items():
            self.add(name, seconds)

    @property
    def total(self) -> float:
        """All stages' seconds together."""
        return sum(self.seconds.values())


@contextmanager
def maybe_stage(clock: StageClock | None, name: str) -> Iterator[None]:
    """``clock.stage(name)``, or nothing when there is no clock."""
    if clock is None:
        yield
    else:
        with clock.stage(name):
            yield
