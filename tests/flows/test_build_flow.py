"""The Prefect flow on a real distributed.LocalCluster with 2 worker processes gives exactly
the rows of the in-process build, and a rerun skips every finished shard."""

import os
import time

import numpy as np
import pytest

import vgnn_core
from tests.conftest import TINY_ARCH as TINY


@pytest.fixture(scope="module", autouse=True)
def prefect_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect")
    settings = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_flow_on_local_cluster_matches_in_process_build(tmp_path):
    import torch

    from flows.build_flow import run_build
    from flows.local import build
    from flows.plan import BuildSettings
    from storage.catalog import connect

    torch.manual_seed(0)
    ckpt = tmp_path / "mvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="mvn", **TINY), ckpt)
    started = time.time()
    flow = run_build("demo", [str(ckpt)], str(tmp_path / "flow"), release="r", n_workers=2, atoms_per_shard=30)
    wall = time.time() - started
    assert flow["written"] == 35 and flow["failed"] == 0 and flow["shards"] >= 2
    # every second of the build accounted for, per task slot: the slots' shards ran inside the flow
    timeline = flow["timeline"]
    parts = ("before_flow_s", "to_first_shard_s", "shards_s", "between_shards_s", "tail_s", "after_last_shard_s",
             "flow_exit_s", "after_flow_s")
    assert 1 <= timeline["workers"] <= 2 and timeline["shards_s"] > 0 and min(timeline[k] for k in parts) >= 0
    assert sum(timeline[k] for k in parts) == pytest.approx(wall, abs=0.5)
    ref = build("demo", [str(ckpt)], tmp_path / "ref", release="r", settings=BuildSettings(atoms_per_shard=30), progress=None)
    assert ref["shards"] == flow["shards"]
    q = "SELECT material_id, frequencies_cm1 FROM gamma ORDER BY material_id"
    a = connect(tmp_path / "flow").execute(q).fetchall()
    b = connect(tmp_path / "ref").execute(q).fetchall()
    assert [r[0] for r in a] == [r[0] for r in b]
    for (_, x), (_, y) in zip(a, b):
        assert max(abs(u - v) for u, v in zip(x, y)) < 0.05  # float32 batching round-off only
    again = run_build("demo", [str(ckpt)], str(tmp_path / "flow"), release="r", n_workers=2, atoms_per_shard=30)
    assert again["skipped_shards"] == again["shards"] and again["timeline"] == {}  # no shard ran


def _tiny_checkpoint(path, kind="mvn"):
    import torch

    torch.manual_seed(0)
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind=kind, **TINY), path)
    return path


def test_fifty_zeolites_on_local_cluster_equal_direct_prediction(tmp_path):
    """50 IZA frameworks (reduced to primitive cells) through the flow on 2 worker processes."""
    import shutil

    import numpy as np

    from flows.build_flow import run_build
    from flows.sources import zeolite_source
    from storage.catalog import connect
    from vgnn_core.settings import shared_data_dir

    root = shared_data_dir()
    cifs = None if root is None else root / "iza_zeolites" / "cifs"
    if cifs is None or not cifs.is_dir():
        if os.environ.get("CI"):
            pytest.fail("iza_zeolites missing in CI")
        pytest.skip("iza_zeolites not found (set VGNN_DATA_DIR)")
    picked = tmp_path / "cifs"
    picked.mkdir()
    for f in sorted(cifs.glob("*.cif"), key=lambda f: (f.stat().st_size, f.name))[:50]:
        shutil.copy(f, picked / f.name)
    ckpt = _tiny_checkpoint(tmp_path / "mvn.pt")
    summary = run_build(f"zeolites:{picked}", [str(ckpt)], str(tmp_path / "db"), release="z", n_workers=2,
                        atoms_per_shard=400)
    assert summary["written"] == 50 and summary["failed"] == 0
    con = connect(tmp_path / "db")
    got = dict(con.execute("SELECT material_id, frequencies_cm1 FROM gamma WHERE source = 'zeolites'").fetchall())
    sizes = dict(con.execute("SELECT material_id, nsites FROM structures").fetchall())
    items = {item.material_id: item.read().structure for item in zeolite_source(picked)}
    assert set(got) == set(items)
    predictor = vgnn_core.Predictor(vgnn_core.load_checkpoint(ckpt))
    for mid, w in zip(items, predictor.predict_gamma(list(items.values()))):
        assert sizes[mid] == len(items[mid])  # primitive cells were stored
        np.testing.assert_allclose(got[mid], w, rtol=1e-4, atol=0.05)


def test_build_survives_a_worker_killed_mid_shard(tmp_path):
    """SIGKILL one Dask worker while shards run: its shard is rescheduled, nothing is lost,
    and the rows equal those of an undisturbed in-process build."""
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    from flows.build_flow import run_build
    from flows.local import build
    from flows.plan import BuildSettings
    from storage.catalog import connect

    ckpt = _tiny_checkpoint(tmp_path / "kmvn.pt", "kmvn")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(run_build(
            "demo", [str(ckpt)], str(tmp_path / "db"), release="r", cluster=cluster.scheduler_address,
            atoms_per_shard=6)))
        runner.start()
        killed = None
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and runner.is_alive():
            busy = [addr for addr, tasks in client.processing().items() if tasks]
            if busy:
                pids = client.run(os.getpid, workers=[busy[0]])
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed = busy[0]
            time.sleep(0.02)
        runner.join(600)
    assert killed is not None, "no shard was ever seen running"
    assert result["written"] == 35 and result["failed"] == 0
    ref = build("demo", [str(ckpt)], tmp_path / "ref", release="r", settings=BuildSettings(atoms_per_shard=6), progress=None)
    assert ref["shards"] == result["shards"]
    import numpy as np

    for table, column in (("bands", "frequencies_cm1"), ("thermo", "heat_capacity_J_K_mol")):
        q = f"SELECT material_id, {column} FROM {table} ORDER BY material_id"
        a = connect(tmp_path / "db").execute(q).fetchall()
        b = connect(tmp_path / "ref").execute(q).fetchall()
        assert [r[0] for r in a] == [r[0] for r in b] and len(a) == 35, table
        for (_, x), (_, y) in zip(a, b):  # equal up to float32 round-off of different thread counts
            np.testing.assert_allclose(np.array(x, dtype=float), np.array(y, dtype=float), rtol=1e-3, atol=0.05)


def test_workers_share_the_flows_prefect_api_and_keep_glibc_malloc_defaults(monkeypatch):
    """Workers started for a build report to the flow's one ephemeral Prefect server (not one
    each) and run without Dask's MALLOC_TRIM_THRESHOLD_ (which made shards 1.5× slower), still
    with one BLAS/OpenMP thread; also after an earlier nanny copied Dask's value into this
    process's environment."""
    import httpx
    from distributed import Client, LocalCluster

    from flows.build_flow import shared_prefect_api
    from flows.clusters import worker_dask_config

    def worker_env():
        return {k: os.environ.get(k) for k in ("PREFECT_API_URL", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}

    assert "PREFECT_API_URL" not in os.environ
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what any earlier Dask nanny leaves behind
    with shared_prefect_api(), worker_dask_config():
        url = os.environ["PREFECT_API_URL"]
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            (env,) = client.run(worker_env).values()
    assert env == {"PREFECT_API_URL": url, "MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
    assert "PREFECT_API_URL" not in os.environ  # restored for the rest of the process
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_the_ephemeral_server_starts_beside_the_cluster_at_the_url_the_workers_get(monkeypatch):
    """shared_prefect_api(wait=False) fixes a fresh server's URL first and starts it in the
    background: the Dask workers started meanwhile inherit that URL, and once ready() returns it
    answers there; a server that failed to start, or came up elsewhere, is one clear error from
    ready() and the environment is restored."""
    from types import SimpleNamespace

    import httpx
    from distributed import Client, LocalCluster
    from prefect.server.api.server import SubprocessASGIServer

    from flows.build_flow import PrefectAPI, shared_prefect_api

    assert "PREFECT_API_URL" not in os.environ
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})  # not the one earlier tests started
    try:
        with shared_prefect_api(wait=False) as api:
            server = SubprocessASGIServer()
            assert os.environ["PREFECT_API_URL"] == api.url == server.api_url
            with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                (url,) = client.run(os.environ.get, "PREFECT_API_URL").values()
            api.ready()
            assert url == api.url and httpx.get(f"{api.url}/health", timeout=30).status_code == 200
    finally:
        SubprocessASGIServer().stop()
    assert "PREFECT_API_URL" not in os.environ

    def refuse(self, timeout=None):
        raise OSError("boom")

    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})
    monkeypatch.setattr(SubprocessASGIServer, "start", refuse)
    with shared_prefect_api(wait=False) as api:
        with pytest.raises(RuntimeError, match="did not start: boom"):
            api.ready()
    assert "PREFECT_API_URL" not in os.environ
    with pytest.raises(RuntimeError, match="came up at http://127.0.0.1:1/api, not at"):
        PrefectAPI("http://127.0.0.1:2/api", SimpleNamespace(api_url="http://127.0.0.1:1/api")).ready()


def test_build_logs_are_quiet_here_and_in_the_workers_unless_verbose(monkeypatch):
    """Prefect and Dask at WARNING for a build, also for the worker processes it starts (through
    their environment); a level the user chose is kept; $VGNN_VERBOSE keeps everything."""
    import logging

    from flows.build_flow import quiet_logs

    monkeypatch.delenv("VGNN_VERBOSE", raising=False)
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "DEBUG")  # the user's choice
    dask_log = logging.getLogger("distributed")
    before = dask_log.level
    with quiet_logs():
        assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning"
        assert dask_log.getEffectiveLevel() == logging.WARNING
        assert os.environ["PREFECT_LOGGING_LEVEL"] == "DEBUG"
    assert "DASK_LOGGING__DISTRIBUTED" not in os.environ and dask_log.level == before
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL")
    with quiet_logs(dask=False):
        assert os.environ["PREFECT_LOGGING_LEVEL"] == "WARNING" and "DASK_LOGGING__DISTRIBUTED" not in os.environ
        assert logging.getLogger("prefect.flow_runs").getEffectiveLevel() == logging.WARNING
    monkeypatch.setenv("VGNN_VERBOSE", "1")
    with quiet_logs():
        assert "DASK_LOGGING__DISTRIBUTED" not in os.environ and "PREFECT_LOGGING_LEVEL" not in os.environ


def _stuck(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_a_stuck_build_fails_with_its_timeout_and_frees_the_cluster():
    """A flow whose shard never finishes ends in TimeoutError at the flow's timeout (not a hang),
    and the worker stuck in the task is stopped within the failure close timeout."""
    import time

    from prefect import flow, task

    from flows.build_flow import FAILED_CLOSE_TIMEOUT_S, build_environment, shared_prefect_api

    stuck = task(_stuck, name="stuck-shard")

    @flow(name="stuck-build")
    def stuck_build() -> float:
        return stuck.submit(600).result()

    with shared_prefect_api():
        with pytest.raises(TimeoutError), build_environment("local", 1) as runner:
            start = time.perf_counter()
            try:
                stuck_build.with_options(task_runner=runner, timeout_seconds=4)()
            finally:
                ended = time.perf_counter()
                waited = ended - start
        closed = time.perf_counter() - ended
    assert 4 <= waited < 60
    assert closed < 4 * FAILED_CLOSE_TIMEOUT_S + 10  # not the 600 s of the stuck shard


def _fresh_python(code: str) -> str:
    """What ``code`` prints, run by a new interpreter (which must exit cleanly)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_flows_process_plans_and_hands_out_shards_without_the_networks_stack():
    """The process that runs the flow reads, plans and submits; torch and e3nn (2.4 s of imports,
    while the workers load them anyway) are imported only where the shards run."""
    code = ("import pickle, sys\n"
            "import flows.build_flow\n"
            "from flows.plan import plan_build\n"
            "plan = plan_build('demo')\n"
            "shards = [pickle.dumps(plan.items(s)) for s in plan.shards_costliest_first()]\n"
            "print(len(plan.inputs), len(shards), [m for m in ('torch', 'e3nn') if m in sys.modules])\n")
    n_inputs, n_shards, loaded = _fresh_python(code).split(maxsplit=2)
    assert int(n_inputs) > 30 and int(n_shards) >= 1 and loaded.strip() == "[]"


def test_worker_dask_config_keeps_dasks_distributed_defaults():
    """Entered before `distributed` was ever imported, the workers' Dask setting must not take
    Dask's whole `distributed` configuration with it on exit (a second build then failed with
    KeyError: 'comm')."""
    code = ("import dask\n"
            "from flows.clusters import worker_dask_config\n"
            "with worker_dask_config():\n"
            "    pass\n"
            "print(dask.config.get('distributed.comm.timeouts.connect'),"
            " dask.config.get('distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_'))\n")
    assert _fresh_python(code).split() == ["30s", "65536"]


def test_a_killed_build_leaves_no_ephemeral_server_behind(tmp_path):
    """SIGKILL runs no atexit: the watchdog beside the ephemeral Prefect server stops it when the
    build process is gone (here a stand-in build that started a stand-in server)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "build.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from flows.build_flow import server_watchdog\n"
        "import os\n"
        "server = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "server_watchdog(os.getpid(), server.pid)\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(120)\n")
    build = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    server = psutil.Process(int(build.stdout.readline()))
    time.sleep(1.5)
    assert server.is_running() and server.status() != psutil.STATUS_ZOMBIE  # alive while the build is
    build.send_signal(signal.SIGKILL)
    build.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if server.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("the stand-in server outlived its killed build")


def test_local_workers_load_the_models_while_the_flow_plans(tmp_path):
    """A local cluster's workers load the build's models as soon as they are up, before any
    shard is submitted (the first shard then starts at once), with the band model's Born heads
    where heads fit it (the shipped pair), and a model that cannot be
    loaded leaves the workers usable: its shards fail with the error instead. Either way the
    preloaded worker exits without the interpreter's last collection (``flows.exit.fast_exit``)."""
    import time

    import torch
    from distributed import Client

    from flows.build_flow import dask_task_runner

    torch.manual_seed(0)
    ckpt = tmp_path / "kmvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="kmvn", **TINY), ckpt)
    specs = (str(ckpt), str(tmp_path / "missing.pt"))

    def loaded(dask_worker):
        return [list(k) for k in getattr(dask_worker, "_vgnn_models", {})]

    def leave_a_cycle(marker):  # garbage that only a collection at the worker's exit would free
        import atexit
        import gc
        import os

        fd, write = os.open(marker, os.O_WRONLY | os.O_CREAT), os.write  # open() is gone by then

        class Cycle:
            def __del__(self):
                write(fd, b" collected")

        atexit.register(write, fd, b"exited")  # a normal exit (not a kill after the close timeout)
        gc.disable()
        c = Cycle()
        c.me = c

    def preload_state(dask_scheduler):
        task = dask_scheduler.tasks.get("preload-models-0")
        return None if task is None else task.state

    def born_heads(dask_worker):  # whether each preloaded band model's Born heads are loaded
        return [m.bands.predictor._born_model is not None for m in getattr(dask_worker, "_vgnn_models", {}).values()]

    # a k-MVN of its own (no Born heads fit it), one that cannot load, the shipped pair (heads loaded)
    cases = (((str(ckpt),), [[str(ckpt)]], [False]), (specs, [], []), (("mvn", "kmvn"), [["mvn", "kmvn"]], [True]))
    for k, (models, expected, heads) in enumerate(cases):
        with dask_task_runner("local", 1, models=models) as runner, Client(runner.address) as client:
            deadline = time.monotonic() + 120
            while client.run_on_scheduler(preload_state) != "memory" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.run_on_scheduler(preload_state) == "memory"  # it ran, before any task of ours
            assert list(client.run(loaded).values()) == [expected]
            assert list(client.run(born_heads).values()) == [heads]
            # the worker still takes tasks (queued behind a preload that failed, in the second case)
            assert client.submit(lambda: 1 + 1, pure=False).result(timeout=120) == 2
            assert list(client.run(loaded).values()) == [expected]
            client.run(leave_a_cycle, str(tmp_path / f"collected-{k}"))
    markers = sorted(tmp_path.glob("collected-*"))
    assert [m.read_bytes() for m in markers] == [b"exited"] * 3  # every one exited without a last collection


def test_cuda_layout_runs_the_flow(tmp_path, monkeypatch):
    """``--cluster cuda`` starts the node layout's LocalCluster through the same path as ``local``
    (models preloaded, orderly close). Here a two-worker layout stands in for a GPU node's (the
    workers find no GPU and run on the CPU); every demo structure is written."""
    from flows import clusters
    from flows.build_flow import run_build
    from storage.catalog import connect

    monkeypatch.setattr(clusters, "gpu_node_layout",
                        lambda: clusters.GpuNodeLayout(gpus=1, cores=2, workers=2, cpu_threads=1))
    ckpt = _tiny_checkpoint(tmp_path / "mvn.pt")
    summary = run_build("demo", [str(ckpt)], str(tmp_path / "db"), release="c", cluster="cuda", atoms_per_shard=30)
    assert summary["written"] == 35 and summary["failed"] == 0 and 1 <= summary["timeline"]["workers"] <= 2
    rows = connect(tmp_path / "db").execute("SELECT count(*), min(len(frequencies_cm1)) FROM gamma").fetchone()
    assert rows[0] == 35 and rows[1] >= 3


def test_a_shards_inputs_go_to_its_task_as_one_object_tokenized_by_their_digests(si_primitive):
    """A shard task gets its inputs as one ShardInputs: Dask tokenizes it by the plan digests (the
    same content gives the same token, any change of name, species, lattice or position another
    one), Prefect does not walk into it looking for futures, and it pickles to the same crystals."""
    import pickle

    from dask.base import tokenize
    from prefect.utilities.collections import visit_collection

    from flows.plan import InputFailure, ShardInputs, input_digest
    from vgnn_core.crystal.crystal import as_crystal

    def inputs(*xs):
        return ShardInputs(xs, [input_digest(x) for x in xs])

    crystal = as_crystal(si_primitive, name="si")
    failure = InputFailure("bad", "InvalidStructureError", "bad: structure has no atoms")
    shard = inputs(crystal, failure)
    assert len(shard) == 2 and list(shard) == [crystal, failure] and shard[0] is crystal
    assert tokenize(shard) == tokenize(inputs(as_crystal(si_primitive.copy(), name="si"), failure))
    moved, other = si_primitive.copy(), si_primitive.copy()
    moved.translate_sites([0], [1e-6, 0, 0], frac_coords=True)
    other.replace(0, "Ge")
    tokens = {tokenize(inputs(c)) for c in (crystal, as_crystal(si_primitive, name="si-2"), as_crystal(moved, name="si"),
                                            as_crystal(other, name="si"))}
    assert len(tokens) == 4

    visited = []
    visit_collection([shard], visit_fn=lambda x: visited.append(x) or x)
    assert not any(x is crystal for x in visited), "Prefect walked into the shard's inputs"

    back = pickle.loads(pickle.dumps(shard))
    assert isinstance(back, ShardInputs) and back.digests == shard.digests
    assert back[0].name == "si" and back[0].structure == crystal.structure and back[1] == failure
    np.testing.assert_array_equal(back[0].structure.cart_coords, crystal.structure.cart_coords)
    with pytest.raises(ValueError, match="2 inputs with 1 digests"):
        ShardInputs([crystal, failure], ["x"])
