"""Per-crystal CPU work in threads: same results bit for bit, order kept, errors surfaced."""

import numpy as np
import pytest
import torch

import vgnn_core
from flows.models import worker_cpu_threads
from flows.sources import demo_structures
from vgnn_core.threads import map_threads


def test_map_threads_keeps_order_and_restores_the_callers_threads():
    before = torch.get_num_threads()
    seen = []

    def work(x):
        seen.append(torch.get_num_threads())
        return x * x

    assert map_threads(work, range(20), threads=3) == [x * x for x in range(20)]
    assert set(seen) == {1}  # one intra-op thread per item: no oversubscription
    assert map_threads(work, [], threads=3) == []
    assert torch.get_num_threads() == before


def test_map_threads_reraises_an_items_error_after_the_others_finish():
    done = []

    def work(x):
        if x == 3:
            raise ValueError("item 3 is bad")
        done.append(x)
        return x

    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="item 3"):
        map_threads(work, range(8), threads=2)
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7]
    assert torch.get_num_threads() == before


def test_phonons_do_not_depend_on_the_thread_count():
    """Bands, DOS and thermal properties of several crystals: bitwise equal with 1 and 3 threads
    (each crystal runs on one intra-op thread either way)."""
    structures = [s for _, s in demo_structures()][:6]
    model = vgnn_core.load_pretrained("kmvn").model
    serial = vgnn_core.Predictor(model, cpu_threads=1).predict_phonons(structures, density=20.0)
    threaded = vgnn_core.Predictor(model, cpu_threads=3).predict_phonons(structures, density=20.0)
    assert [r.name for r in serial] == [r.name for r in threaded]
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a.bands, b.bands)
        np.testing.assert_array_equal(a.dos.total, b.dos.total)
        np.testing.assert_array_equal(a.thermal.heat_capacity, b.thermal.heat_capacity)
        assert a.bands.shape[1] == 3 * len(a.structure) and np.abs(a.bands[0, :3]).max() < 1e-3  # Γ first, acoustic


def test_worker_cpu_threads(monkeypatch):
    monkeypatch.setenv("VGNN_CPU_THREADS", "6")
    assert worker_cpu_threads() == 6
    monkeypatch.delenv("VGNN_CPU_THREADS")
    monkeypatch.setenv("VGNN_DEVICE", "cpu")
    assert worker_cpu_threads() == torch.get_num_threads()  # a CPU worker uses the threads Dask gave it


def test_gpu_worker_shares_the_node_cores_among_gpus_and_tasks(monkeypatch):
    import os

    monkeypatch.delenv("VGNN_CPU_THREADS", raising=False)
    monkeypatch.setenv("VGNN_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))  # pinned to one NUMA node
    assert worker_cpu_threads() == 16  # 64 cores / 4 GPUs, within the 32 it may run on
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # a SLURM job's 8 cores
    assert worker_cpu_threads() == 8
    import types

    import distributed

    worker = types.SimpleNamespace(state=types.SimpleNamespace(nthreads=8))
    monkeypatch.setattr(distributed, "get_worker", lambda: worker)
    assert worker_cpu_threads() == 1  # eight tasks at once on those 8 cores: one thread each
