"""Sweep backends: the process pool and a Ray cluster (a local head started on 127.0.0.1 by
the test) give the same results and the same sweep CSV; single failures stay per point;
bad backends and addresses are clear errors before any work."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.config import CONFIG_DIR, load_config
from sim.cli import main
from sim.perf.backends import BackendError, check_backend, parse_address, run_points
from sim.perf.energy import HOROWITZ_45NM
from sim.perf.sweep_points import estimate_point, run_task

TINY = str(CONFIG_DIR / "tiny.toml")
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path_factory.getbasetemp() / "build"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray cluster (2 CPUs) on 127.0.0.1, stopped after the module.

    ``ray start --block`` stays in the foreground and, on SIGTERM, stops exactly the
    processes it started (``ray stop`` would stop every Ray cluster on the machine)."""
    assert RAY, "the 'ray' CLI is installed with the package (pyproject: ray)"
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "FOLDACCEL_BUILD_DIR": str(tmp_path_factory.getbasetemp() / "build")}
    log = tmp_path_factory.mktemp("ray") / "head.log"
    cmd = [RAY, "start", "--head", "--block", "--port", str(port), "--node-ip-address",
           "127.0.0.1", "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"]
    with open(log, "w") as fh:
        head = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, f"ray start exited:\n{log.read_text()}"
            try:
                check_backend("ray", f"127.0.0.1:{port}")
                break
            except BackendError:
                assert time.monotonic() < deadline, f"no Ray head after 180 s:\n{log.read_text()}"
                time.sleep(0.5)
        time.sleep(2)  # the GCS answers before the raylet has registered
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def _args(folds):
    table = HOROWITZ_45NM.to_dict()
    base = load_config(TINY)
    out = []
    for f in folds:
        d = base.to_dict()
        d["model"]["fold_factor"] = f
        out.append(("estimate", d, table))
    return out


def test_pool_and_ray_run_the_same_tasks_and_keep_failures_per_point(ray_head):
    args = _args([1, 2])
    args.insert(1, ("no-such-task",))
    expected = [estimate_point(a[1], a[2]) if a[0] == "estimate" else None for a in args]
    for backend, address in (("pool", None), ("ray", ray_head)):
        got = {o.index: o for o in run_points(run_task, args, backend=backend, jobs=2,
                                              address=address)}
        assert sorted(got) == [0, 1, 2], backend
        assert got[1].result is None and "no-such-task" in got[1].error, (backend, got[1])
        for i in (0, 2):
            assert got[i].error is None, (backend, got[i].error)
            assert got[i].result == expected[i], backend
            assert ":" in got[i].worker
        if backend == "ray":  # the tasks ran in Ray worker processes, not here
            assert all(o.worker != f"{socket.gethostname()}:{os.getpid()}"
                       for o in got.values())


def test_sweep_on_ray_cluster_gives_the_pool_csv_and_resumes(ray_head, tmp_path, capsys):
    common = ["sweep", "--config", TINY, "--rows", "8,16", "--fold", "1,2", "--no-area",
              "--json", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "pool"), "--jobs", "2"]) == 0
    capsys.readouterr()
    ray_out = tmp_path / "ray"
    assert main([*common, "--out", str(ray_out), "--backend", "ray",
                 "--address", ray_head]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["points"] == 4 and res["cached"] == 0 and res["failed"] == 0
    assert (ray_out / "sweep.csv").read_bytes() == (tmp_path / "pool" / "sweep.csv").read_bytes()
    meta = json.loads((ray_out / "sweep.json").read_text())
    assert meta["options"]["backend"] == "ray"
    # resume: drop two cached points; only those are computed again, on the cluster
    cached = sorted((ray_out / "cache").glob("*.json"))
    assert len(cached) == 4
    for p in cached[:2]:
        p.unlink()
    assert main([*common, "--out", str(ray_out), "--backend", "ray",
                 "--address", ray_head]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cached"] == 2 and res["failed"] == 0
    assert (ray_out / "sweep.csv").read_bytes() == (tmp_path / "pool" / "sweep.csv").read_bytes()


def test_sweep_on_a_local_ray_cluster(tmp_path, capsys):
    """No --address: the sweep starts a local cluster and shuts it down after."""
    import ray
    out = tmp_path / "local"
    assert main(["sweep", "--config", TINY, "--fold", "1,2", "--no-area", "--json",
                 "--no-progress", "--backend", "ray", "--jobs", "2", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["points"] == 2 and res["failed"] == 0
    assert not ray.is_initialized()
    rows = json.loads((out / "sweep.json").read_text())["points"]
    assert all(r["feasible"] and r["worker"] != f"{socket.gethostname()}:{os.getpid()}"
               for r in rows)


@pytest.mark.parametrize("address, message", [
    ("nonsense", "is not HOST:PORT"),
    ("127.0.0.1:99999", "is not HOST:PORT"),
    ("127.0.0.1:{free}", "no Ray head answers"),
])
def test_bad_address_is_a_clear_error_before_any_output(tmp_path, capsys, address, message):
    address = address.format(free=_free_port())
    with pytest.raises(BackendError, match=message):
        check_backend("ray", address)
    out = tmp_path / "never"
    assert main(["sweep", "--config", TINY, "--fold", "1,2", "--no-area", "--backend", "ray",
                 "--address", address, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err and "Traceback" not in err
    assert not out.exists()


def test_backend_argument_errors():
    with pytest.raises(BackendError, match="unknown backend"):
        check_backend("slurm")
    with pytest.raises(BackendError, match="needs the ray backend"):
        check_backend("pool", "127.0.0.1:6379")
    with pytest.raises(BackendError, match="must be >= 1"):
        check_backend("pool", None, 0)
    assert parse_address("head.example:6379") == ("head.example", 6379)
    assert list(run_points(run_task, [], backend="pool")) == []
