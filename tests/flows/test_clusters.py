"""Cluster specs: SLURM (dask-jobqueue) constructed for real without a SLURM installation;
the task runner for each --cluster choice."""

import pytest

from flows.clusters import slurm_cluster_kwargs


def test_slurm_cluster_job_script(tmp_path, monkeypatch):
    jobqueue = pytest.importorskip("dask_jobqueue")
    config = tmp_path / "slurm.yaml"
    config.write_text("queue: a100\nwalltime: '08:00:00'\nlocal_directory: /tmp\n")
    monkeypatch.setenv("VGNN_SLURM_CONFIG", str(config))
    kwargs = slurm_cluster_kwargs()
    cluster = jobqueue.SLURMCluster(**kwargs, scheduler_options={"host": "127.0.0.1"})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p a100" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -t 08:00:00" in script and "--cpus-per-task=8" in script


def test_task_runner_per_cluster_spec():
    from flows.build_flow import task_runner

    assert task_runner("local", 3).cluster_kwargs["n_workers"] == 3
    assert task_runner("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    import torch

    if not torch.cuda.is_available():  # no GPU here: a clear error instead
        with pytest.raises(RuntimeError, match="--cluster cuda: torch sees no GPU"):
            task_runner("cuda")
    else:
        from flows.clusters import gpu_node_layout

        assert task_runner("cuda").cluster_kwargs["n_workers"] == gpu_node_layout().workers
    slurm = task_runner("slurm")
    assert "SLURMCluster" in str(slurm.cluster_class) and slurm.cluster_kwargs["job_extra_directives"] == ["--gres=gpu:1"]
    with pytest.raises(ValueError, match="unknown cluster"):
        task_runner("kubernetes")


def test_slurm_workers_inherit_the_malloc_setting(tmp_path):
    """The SLURM job script hands the workers' nannies our Dask config: a nanny started with it
    no longer sets MALLOC_TRIM_THRESHOLD_ but still pins BLAS/OpenMP to one thread."""
    import os
    import subprocess
    import sys

    (line,) = [x for x in slurm_cluster_kwargs()["job_script_prologue"] if "DASK_INTERNAL_INHERIT_CONFIG" in x]
    value = line.split("=", 1)[1]
    probe = ("import distributed.nanny as n; "
             "print(sorted(n._get_env_variables('distributed.nanny.pre-spawn-environ')))")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "DASK_INTERNAL_INHERIT_CONFIG": value},
                         capture_output=True, text=True, check=True).stdout
    assert "MALLOC_TRIM_THRESHOLD_" not in out and "OMP_NUM_THREADS" in out


@pytest.mark.parametrize(("gpus", "cores", "workers", "threads"), [
    (1, 16, 8, 2),   # the measured node: one H200, 16 cores
    (4, 64, 32, 2),  # eight per GPU
    (8, 32, 16, 2),  # short of cores: two workers per GPU keep two cores each
    (1, 2, 1, 2),
    (2, 2, 2, 1),    # never fewer workers than GPUs
])
def test_gpu_node_layout(gpus, cores, workers, threads):
    from flows.clusters import gpu_node_layout

    layout = gpu_node_layout(gpus=gpus, cores=cores)
    assert (layout.workers, layout.cpu_threads) == (workers, threads)
    assert layout.workers % gpus == 0 and layout.workers * layout.cpu_threads <= max(cores, layout.workers)
    assert layout.worker_env()["VGNN_CPU_THREADS"] == str(threads)


def test_cuda_task_runner_lays_out_the_node(monkeypatch):
    import os

    import torch

    from flows.build_flow import task_runner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    kwargs = task_runner("cuda").cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["processes"]) == (16, 1, True)
    assert kwargs["env"]["VGNN_CPU_THREADS"] == "2" and kwargs["env"]["VGNN_GPU_BY_WORKER"] == "1"


def test_workers_share_gpus_by_index(monkeypatch):
    import types

    import distributed
    import torch

    from flows.models import worker_device

    monkeypatch.delenv("VGNN_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "get_worker", lambda: types.SimpleNamespace(name=5))
    assert worker_device() == "cuda"  # without the layout's variable: the process's own GPU
    monkeypatch.setenv("VGNN_GPU_BY_WORKER", "0")
    assert worker_device() == "cuda"  # only "1" turns it on
    monkeypatch.setattr(torch.cuda, "set_device", lambda k: picked.append(k))
    picked = []
    monkeypatch.setenv("VGNN_GPU_BY_WORKER", "1")
    assert worker_device() == "cuda:1" and picked == [1]
    monkeypatch.setenv("VGNN_DEVICE", "cuda:0")
    assert worker_device() == "cuda:0"  # an explicit device wins


def _worker_settings():
    import os

    import torch

    from flows.models import _dask_worker_index, worker_cpu_threads, worker_device

    return (os.environ.get("VGNN_GPU_BY_WORKER"), worker_cpu_threads(), torch.get_num_threads(),
            _dask_worker_index(), worker_device())


def test_layout_environment_reaches_real_workers():
    """A real LocalCluster started with a layout's worker environment: every worker process
    sees it (and, without a GPU, still runs on the CPU)."""
    from distributed import Client, LocalCluster

    from flows.clusters import gpu_node_layout, worker_dask_config

    layout = gpu_node_layout(gpus=1, cores=6)  # 3 workers, 2 threads each
    with worker_dask_config(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                            env=layout.worker_env(), dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            workers = sorted(client.scheduler_info()["workers"])
            seen = [client.submit(_worker_settings, workers=[w], pure=False).result() for w in workers]
    # each worker: the layout's variable, 2 threads for its CPU work and for torch, its index, the CPU
    assert sorted(seen) == [("1", 2, 2, 0, "cpu"), ("1", 2, 2, 1, "cpu")]


def test_gpu_check_carries_the_flows_requirements():
    """``benchmarks/gpu_check.sh prepare`` carries Prefect, Dask and what they import as wheels of
    exactly this environment's versions, extras followed: Prefect's server needs greenlet (through
    ``sqlalchemy[asyncio]``) and burner-redis, whose absence stopped the first GPU run."""
    import importlib.metadata as md
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    pins = dict(p.split("==") for p in gpu_check.flow_requirements())
    for name in ("prefect", "prefect-dask", "dask", "distributed", "sqlalchemy", "greenlet", "burner-redis",
                 "uvicorn", "aiosqlite", "alembic", "pydantic-core"):
        assert pins[name] == md.version(name), name
    assert not set(pins) & (gpu_check.DEVICE_IMAGE_KEEPS | gpu_check.NEVER_IMPORTED)


def test_gpu_check_carries_every_dependency_of_the_library_that_the_device_image_lacks():
    """The device image has torch, e3nn, numpy, scipy, pyarrow, tqdm, pyyaml and requests; every
    other dependency of ``pyproject.toml`` that a build imports travels as a wheel of
    ``gpu_check.sh prepare`` (moyopy came with the site maps, session 45), at this environment's version."""
    import importlib.metadata as md
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    block = (root / "pyproject.toml").read_text().split("\ndependencies = [")[1].split("\n]")[0]
    names = {name.lower() for name in re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block, flags=re.M)}
    assert {"torch", "pymatgen", "spglib", "moyopy", "phonopy"} <= names
    on_device = {"torch", "e3nn", "numpy", "scipy", "pyarrow", "tqdm", "pyyaml", "requests"}
    flow = {"prefect", "prefect-dask", "dask", "duckdb"}  # the --flow wheels (above) or not imported by a build
    script = (root / "benchmarks" / "gpu_check.sh").read_text()
    core = script.split('"prepare" ]]')[1].split('rm -rf "$CACHE/flow_whl"')[0]  # the build's own wheels
    carried = dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][^\s\\]*)", core))
    for name in sorted(names - on_device - flow):
        assert name in carried, f"{name} is not carried to the GPU machine"
        assert carried[name] == md.version(name), name
