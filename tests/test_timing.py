"""Stage timing: a clock changes no result, counts every stage a prediction passes through, and
adds up correctly from many threads."""

import threading

import numpy as np
import torch

from tests.conftest import TINY_ARCH
from vgnn_core import VGNN, Predictor
from vgnn_core.timing import StageClock


def test_clock_adds_from_many_threads():
    clock = StageClock()

    def work():
        for _ in range(1000):
            clock.add("solves", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert abs(clock.seconds["solves"] - 4.0) < 1e-9
    other = StageClock({"solves": 1.0, "write": 0.5})
    clock.merge(other)
    clock.merge({"write": 0.25})
    assert abs(clock.seconds["solves"] - 5.0) < 1e-9 and clock.seconds["write"] == 0.75
    assert abs(clock.total - 5.75) < 1e-9


def test_timed_prediction_equals_untimed(si_primitive, wurtzite_zno):
    torch.manual_seed(0)
    predictor = Predictor(VGNN(kind="kmvn", **TINY_ARCH), cpu_threads=2)
    plain = predictor.predict_phonons([si_primitive, wurtzite_zno], density=20.0)
    clock = StageClock()
    timed = predictor.predict_phonons([si_primitive, wurtzite_zno], density=20.0, clock=clock)
    for a, b in zip(plain, timed):
        np.testing.assert_array_equal(a.gamma, b.gamma)
        np.testing.assert_array_equal(a.bands, b.bands)
        np.testing.assert_array_equal(a.dos.total, b.dos.total)
    assert set(clock.seconds) == {"graph", "network", "solves", "dos_thermo"}
    assert min(clock.seconds.values()) > 0
    # Γ only: no mesh stage
    gamma_clock = StageClock()
    predictor.predict_phonons([si_primitive], bands=False, thermal=False, clock=gamma_clock)
    assert set(gamma_clock.seconds) == {"graph", "network", "solves"}
