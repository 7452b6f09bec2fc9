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
    import importlib.util

    if importlib.util.find_spec("dask_cuda") is None:  # no GPU stack here: a clear error instead
        with pytest.raises(RuntimeError, match=r"needs dask-cuda: pip install 'vgnn-phonondb\[gpu\]'"):
            task_runner("cuda")
    else:
        assert "LocalCUDACluster" in str(task_runner("cuda").cluster_class)
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
