"""deploy/: the Prefect deployment file is valid for Prefect 3 and matches the flow it runs;
the SLURM settings file builds a job script."""

import inspect
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_prefect_yaml_schedules_the_rebuild_without_overlap():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    weekly = next(d for d in model.deployments if d.name == "weekly-mp-rebuild")
    assert weekly.schedules[0].cron == "0 3 * * 0"
    limit = weekly.concurrency_limit
    assert getattr(limit, "limit", limit) == 1
    root = DEPLOY.parent
    for d in model.deployments:
        path, _, name = d.entrypoint.partition(":")
        flow = load_flow_from_entrypoint(f"{root / path}:{name}")
        params = inspect.signature(flow.fn).parameters
        assert set(d.parameters) <= set(params), d.name  # every parameter exists on the flow
        assert raw["deployments"][[x["name"] for x in raw["deployments"]].index(d.name)]["work_pool"]["name"] == "vgnn"
    assert weekly.parameters["source"].startswith("mp")


def test_slurm_yaml_builds_a_gpu_job_script(monkeypatch):
    import pytest

    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    from flows.clusters import slurm_cluster_kwargs

    kwargs = slurm_cluster_kwargs(DEPLOY / "slurm.yaml")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cluster = SLURMCluster(**kwargs)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "--gres=gpu:1" in script and "-p gpu" in script and "activate" in script
