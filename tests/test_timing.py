"""Stage timing: a clock changes no result, counts every stage a prediction passes through (once:
the wall seconds never exceed the call's), adds up correctly from many threads and pickles."""

import pickle
import threading
import time

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH
from vgnn_core import VGNN, Predictor
from vgnn_core.timing import StageClock


def test_clock_adds_from_many_threads_and_pickles():
    clock = StageClock()

    def work():
        for _ in range(1000):
            clock.add("bands", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.seconds["bands"] == pytest.approx(4.0, abs=1e-9)
    clock.merge(StageClock({"bands": 1.0, "write": 0.5}))
    clock.merge({"write": 0.25})
    assert clock.seconds == pytest.approx({"bands": 5.0, "write": 0.75})
    copy = pickle.loads(pickle.dumps(clock))
    copy.add("write", 1.0)
    assert copy.seconds["write"] == 1.75 and clock.seconds["write"] == 0.75  # its own lock and counts


def test_threaded_stages_share_the_steps_wall_time():
    clock = StageClock({"per_crystal": 2.0, "bands": 3.0, "dos_thermo": 1.0, "network": 0.5})
    assert clock.wall_seconds() == pytest.approx({"bands": 1.5, "dos_thermo": 0.5, "network": 0.5})
    assert clock.total == pytest.approx(2.5)
    # a stage whose block raises is still counted
    with pytest.raises(RuntimeError), clock.stage("graph"):
        time.sleep(0.01)
        raise RuntimeError("bad structure")
    assert clock.seconds["graph"] >= 0.01


def test_timed_prediction_equals_untimed(si_primitive, wurtzite_zno):
    torch.manual_seed(0)
    predictor = Predictor(VGNN(kind="kmvn", **TINY_ARCH), cpu_threads=2)
    structures = [si_primitive, wurtzite_zno]
    plain = predictor.predict_phonons(structures, density=20.0)
    clock = StageClock()
    t0 = time.perf_counter()
    timed = predictor.predict_phonons(structures, density=20.0, clock=clock)
    wall = time.perf_counter() - t0
    for a, b in zip(plain, timed):
        np.testing.assert_array_equal(a.gamma, b.gamma)
        np.testing.assert_array_equal(a.bands, b.bands)
        np.testing.assert_array_equal(a.dos.total, b.dos.total)
    stages = clock.wall_seconds()
    assert set(stages) == {"graph", "network", "bands", "dos_thermo"}
    assert min(stages.values()) > 0 and clock.total <= wall  # nothing counted twice
    # Γ only: no mesh; an MVN's Γ solves are their own stage
    gamma_clock = StageClock()
    predictor.predict_phonons([si_primitive], bands=False, thermal=False, clock=gamma_clock)
    assert set(gamma_clock.wall_seconds()) == {"graph", "network", "bands"}
    mvn_clock = StageClock()
    Predictor(VGNN(kind="mvn", **TINY_ARCH)).predict_phonons(structures, clock=mvn_clock)
    assert set(mvn_clock.wall_seconds()) == {"graph", "network", "solves"}
