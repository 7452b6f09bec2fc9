"""deploy/: the Prefect deployment file is valid for Prefect 3 and matches the flow it runs, the
deployment runs end to end on a real local Prefect server (deploy/run_local.sh, the commands of
deploy/README.md), the tasks it ships to Dask workers load outside the repository, and the
SLURM settings file builds a job script."""

import inspect
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_prefect_yaml_schedules_the_rebuild_without_overlap():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    weekly = next(d for d in model.deployments if d.name == "weekly-mp-rebuild")
    assert weekly.schedules[0].cron == "0 3 * * 0"
    limit = weekly.concurrency_limit
    assert getattr(limit, "limit", limit) == 1
    for d, spec in zip(model.deployments, raw["deployments"]):
        assert ":" not in d.entrypoint and not d.entrypoint.endswith(".py"), d.name  # a module path
        flow = load_flow_from_entrypoint(d.entrypoint)
        params = inspect.signature(flow.fn).parameters
        assert set(d.parameters) <= set(params), d.name  # every parameter exists on the flow
        assert spec["work_pool"]["name"] == "vgnn"
        assert Path(spec["parameters"]["out"]).is_absolute(), d.name  # runs start in a temp dir
        assert spec["parameters"]["cluster"] == "local"  # runs on a CPU box as deployed
        assert 0 < spec["parameters"]["timeout_hours"] < 7 * 24  # a stuck run frees the slot in time
    assert weekly.parameters["source"].startswith("mp")
    assert "{{" not in (DEPLOY / "prefect.yaml").read_text()  # nothing resolved at deploy time


def test_shard_task_loads_in_a_fresh_process_outside_the_repository(tmp_path):
    """What a Dask worker does with a shard task of a deployment's run: the flow loaded from the
    deployment's entrypoint, as Prefect loads it; the task, as submitted, pickled; unpickled by
    another interpreter started in an unrelated directory."""
    import cloudpickle
    from prefect.flows import load_flow_from_entrypoint

    raw = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    load_flow_from_entrypoint(raw["deployments"][0]["entrypoint"])
    from flows.build_flow import shard_task

    blob = tmp_path / "task.pkl"
    blob.write_bytes(cloudpickle.dumps(shard_task.with_options(timeout_seconds=60)))
    code = ("import pickle, sys; t = pickle.load(open(sys.argv[1], 'rb')); "
            "from prefect.cache_policies import NO_CACHE; "
            "print(t.name, t.fn.__module__, t.timeout_seconds, t.retries, t.cache_policy == NO_CACHE)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code, str(blob)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # no cache key: Prefect would otherwise hash every structure of every shard it runs
    assert done.stdout.split() == ["predict-and-write-shard", "flows.build_flow", "60.0", "2", "True"]


def _command_tokens(line: str) -> list[str]:
    """A shell command's words without leading ``VAR=value`` assignments and a trailing ``&``,
    with variables, absolute paths and numbers replaced by ``X``."""
    words = shlex.split(line.split(" #")[0].strip().rstrip("&"))
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words.pop(0)
    return [re.sub(r"\$\{?\w+\}?|(?<![\w/])/[\w./-]+|\b\d+(?:\.\d+)*\b", "X", w) for w in words]


def test_readme_commands_are_those_run_local_runs():
    """Every ``prefect ...`` command of the README's shell blocks is one of run_local.sh's (the same
    sub-command, and every option it shows), so the tested script is the documented sequence."""
    script = (DEPLOY / "run_local.sh").read_text().replace("\\\n", " ")
    ran = [_command_tokens(line) for line in script.splitlines() if line.strip().startswith("prefect ")]
    readme = (DEPLOY / "README.md").read_text()
    documented = [_command_tokens(line) for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
                  for line in block.splitlines() if "prefect " in line.split(" #")[0]]
    assert len(documented) >= 5
    for command in documented:
        assert any(r[:3] == command[:3] and set(command) <= set(r) for r in ran), " ".join(command)
    for command in ran:  # and the README shows every step the script takes
        assert any(d[:3] == command[:3] for d in documented), " ".join(command)
    assert any("vgnn-rebuild/weekly-mp-rebuild" in c for c in documented)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_deployment_runs_the_demo_rebuild_on_a_local_prefect_server(tmp_path):
    """deploy/run_local.sh against a real `prefect server start` (SQLite in a temporary
    PREFECT_HOME): the deployments register, a process worker on pool `vgnn` picks up the run, the
    flow builds the demo source on a one-worker LocalCluster, and the release is complete; the
    shutdown is clean (no worker killed)."""
    import torch

    import vgnn_core
    from flows.sources.demo import demo_structures
    from storage.catalog import connect
    from tests.conftest import TINY_ARCH

    torch.manual_seed(0)
    ckpt = tmp_path / "mvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="mvn", **TINY_ARCH), ckpt)
    out = tmp_path / "db"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "VGNN_WATCH_TIMEOUT": "900",
        "OMP_NUM_THREADS": "1",
    })
    start = time.perf_counter()
    script = subprocess.Popen(
        ["bash", "deploy/run_local.sh", str(out), str(_free_port()),
         "--param", f'models=["{ckpt}"]', "--param", "n_workers=1", "--param", "timeout_hours=0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = script.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        script.terminate()  # the script stops its server and worker on SIGTERM
        log, _ = script.communicate(timeout=180)
        pytest.fail("deploy/run_local.sh did not finish in 20 minutes:\n" + log[-6000:])
    seconds = time.perf_counter() - start
    assert script.returncode == 0, log[-6000:]
    print(f"deploy/run_local.sh: {seconds:.0f} s")
    assert "Flow run finished successfully in 'Completed'" in log
    for noise in ("still alive", "killed by signal", "Traceback"):
        assert noise not in log, noise

    (manifest,) = out.glob("releases/*/manifest.json")
    assert manifest.parent.name.startswith("demo-")
    con = connect(out)
    rows = dict(con.execute("SELECT material_id, frequencies_cm1 FROM gamma").fetchall())
    assert set(rows) == {mid for mid, _ in demo_structures()}
    structures = dict(demo_structures())
    for mid, w in rows.items():
        assert len(w) == 3 * len(structures[mid])  # 3N modes at Γ for every crystal


def test_slurm_yaml_builds_a_gpu_job_script(monkeypatch):
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
