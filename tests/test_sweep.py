"""`foldaccel sweep`: grid, process pool, cache, CSV/JSON/PNG outputs, Pareto front, errors."""

import csv
import json

import pytest

from model.config import CONFIG_DIR, load_config
from sim.cli import main
from sim.perf.energy import HOROWITZ_45NM
from sim.perf.estimate import estimate_model
from sim.perf.sweep import (
    SweepError,
    grid_configs,
    pareto_front,
    parse_values,
    run_sweep,
)

TINY = str(CONFIG_DIR / "tiny.toml")
OUTPUTS = ("sweep.csv", "sweep.json", "pareto_energy_cycles.png", "pareto_sram_cycles.png")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path_factory.getbasetemp() / "build"))


def _brute_front(points):
    """Indices not dominated by any other point (<= in both, < in one), sorted by x."""
    keep = [i for i, (x, y) in enumerate(points)
            if not any((a <= x and b <= y) and (a < x or b < y) for a, b in points)]
    # duplicates: keep the first of identical points
    out = []
    for i in keep:
        if all(points[j] != points[i] for j in out):
            out.append(i)
    return sorted(out, key=lambda i: points[i])


@pytest.mark.parametrize("points", [
    [(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5)],
    [(3, 3)],
    [(1, 1), (1, 2), (2, 1)],
    [(i % 7, (i * 5) % 11) for i in range(30)],
])
def test_pareto_front_matches_brute_force(points):
    assert pareto_front(points) == _brute_front(points)


def test_small_sweep_end_to_end(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--config", TINY, "--rows", "8,16", "--cols", "16", "--fold", "1,2",
            "--out", str(out), "--jobs", "2", "--json", "--no-area"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["points"] == 4 and res["cached"] == 0
    assert all((out / f).is_file() for f in OUTPUTS)
    for png in OUTPUTS[2:]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(int(r["rows"]), int(r["fold"])) for r in rows] == [(8, 1), (8, 2), (16, 1),
                                                                (16, 2)]
    # each row equals a direct estimate of that grid point
    base = load_config(TINY)
    for r in rows:
        cfg = base.replace(rows=int(r["rows"]), cols=16, fold_factor=int(r["fold"]))
        est = estimate_model(cfg)
        assert int(r["cycles"]) == est["cycles"]
        assert float(r["energy_uj"]) == pytest.approx(est["energy_pj"] / 1e6, rel=1e-5)
        assert r["feasible"] == "True"
    doc = json.loads((out / "sweep.json").read_text())
    pts = [(p["cycles"], p["energy_uj"]) for p in doc["points"]]
    assert doc["pareto"]["energy_cycles"] == _brute_front(pts) == res["pareto"]["energy_cycles"]
    flags = [r["pareto_energy_cycles"] == "True" for r in rows]
    assert [i for i, f in enumerate(flags) if f] == sorted(doc["pareto"]["energy_cycles"])
    # a second run answers from the cache and writes identical data
    before = (out / "sweep.csv").read_bytes()
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] == 4
    assert (out / "sweep.csv").read_bytes() == before
    assert not list(out.glob(".*.tmp"))


def test_sweep_sram_axis_and_infeasible_point(tmp_path):
    # a 1 KiB ACC bank cannot hold one 16x16 int32 tile: that point is reported infeasible
    # (with the config error as its reason), not a crash
    base = load_config(TINY)
    res = run_sweep(base, {"sram_kib": [1, 64]}, tmp_path / "o", table=HOROWITZ_45NM,
                    jobs=1, progress=False, area=False)
    small, big = res.rows
    assert (small["act_kib"], small["wgt_kib"], small["acc_kib"]) == (1, 1, 1)
    assert small["feasible"] is False and "acc_sram_kib" in small["error"]
    assert big["feasible"] is True
    assert res.pareto["energy_cycles"] == [1]
    # a VMEM bank too small for one step's tensors: the layer compiler names the bank
    res = run_sweep(base, {"vmem_kib": [2, 64]}, tmp_path / "v", table=HOROWITZ_45NM,
                    jobs=1, progress=False, area=False)
    small, big = res.rows
    assert small["feasible"] is False and "VMEM bank is too small" in small["error"]
    assert big["feasible"] is True and big["state"] == "on chip"
    assert big["sram_kib"] == 64 * 4 + 32                # act + wgt + acc + vmem + pmem


def test_progress_bar_on_stderr(tmp_path, capsys):
    run_sweep(load_config(TINY), {"fold": [1, 2]}, tmp_path / "o", table=HOROWITZ_45NM,
              jobs=1, area=False)
    err = capsys.readouterr().err
    assert "sweep [" in err and "2/2" in err


@pytest.mark.parametrize("argv,needle", [
    (["--rows", "8,x"], "comma-separated list of integers"),
    (["--rows", "8,8"], "repeats a value"),
    (["--fold", "1,3"], "fold_factor"),
    (["--rows", "100"], "rows"),
    ([], "no sweep axis"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "never"
    assert main(["sweep", "--config", TINY, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "error:" in err
    assert not out.exists()


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["sweep", "--config", TINY, "--fold", "1", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert f.read_text() == "x"


def test_grid_and_values_helpers():
    assert parse_values("rows", "8, 16,32") == [8, 16, 32]
    with pytest.raises(SweepError, match="unknown sweep axis"):
        parse_values("banana", "1")
    cfgs = grid_configs(load_config(TINY), {"rows": [8, 16], "sram_kib": [32]})
    assert [(c.hardware.rows, c.hardware.act_sram_kib, c.hardware.wgt_sram_kib,
             c.hardware.acc_sram_kib) for c in cfgs] == [(8, 32, 32, 32), (16, 32, 32, 32)]


def _run(base, out, **kw):
    return run_sweep(base, {"rows": [8, 16], "fold": [1, 2]}, out, table=HOROWITZ_45NM,
                     jobs=1, progress=False, area=False, **kw)


def test_interrupted_sweep_resumes_with_only_the_missing_points(tmp_path, monkeypatch):
    from sim.perf import sweep_points

    base = load_config(TINY)
    fresh = _run(base, tmp_path / "fresh")
    real, calls = sweep_points.TASKS["estimate"], []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setitem(sweep_points.TASKS, "estimate", interrupted)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        _run(base, out)
    assert len(list((out / "cache").glob("*.json"))) == 2    # the two finished points
    assert not (out / "sweep.csv").exists() and not list(out.glob(".*.tmp"))
    calls.clear()
    res = _run(base, out)
    assert res.cached == 2 and len(calls) == 2               # only the missing two ran
    assert (out / "sweep.csv").read_bytes() == (tmp_path / "fresh" / "sweep.csv").read_bytes()
    assert [r["cycles"] for r in res.rows] == [r["cycles"] for r in fresh.rows]


def test_a_failing_point_is_reported_and_the_others_kept(tmp_path, monkeypatch, capsys):
    from sim.perf import sweep_points

    real = sweep_points.TASKS["estimate"]

    def flaky(cfg_dict, table_dict):
        if cfg_dict["hardware"]["rows"] == 16 and cfg_dict["model"]["fold_factor"] == 2:
            raise RuntimeError("worker ran out of memory")
        return real(cfg_dict, table_dict)

    monkeypatch.setitem(sweep_points.TASKS, "estimate", flaky)
    out = tmp_path / "o"
    argv = ["sweep", "--config", TINY, "--rows", "8,16", "--fold", "1,2", "--out", str(out),
            "--jobs", "1", "--no-area", "--no-progress", "--json"]
    assert main(argv) == 1                                    # a failed point: exit 1
    res = json.loads(capsys.readouterr().out)
    assert res["failed"] == 1 and res["points"] == 4
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    bad = [r for r in rows if r["error"]]
    assert [(r["rows"], r["fold"]) for r in bad] == [("16", "2")]
    assert "failed" in bad[0]["error"] and "out of memory" in bad[0]["error"]
    assert all(r["cycles"] for r in rows if not r["error"])
    # the failure was not cached: a re-run without the fault computes that point only
    monkeypatch.setitem(sweep_points.TASKS, "estimate", real)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] == 3 and again["failed"] == 0


def test_pareto_set_in_three_objectives():
    from sim.perf.sweep import pareto_set

    # hand-checked: (2,2,2) is dominated by (1,2,2); (3,0,9) and (0,3,9) trade off
    assert pareto_set([(1, 2, 2), (2, 2, 2), (3, 0, 9), (0, 3, 9), (1, 2, 2)]) == [0, 2, 3]
    assert pareto_set([(1, 1, 1), (2, 2, 2)]) == [0]
    pts = [((i * 7) % 5, (i * 3) % 7, (i * 5) % 4) for i in range(40)]
    front = pareto_set(pts)

    def dominates(q, p):
        return all(a <= b for a, b in zip(q, p, strict=True)) and q != p

    assert not any(dominates(pts[j], pts[i]) for i in front for j in range(len(pts)))
    for i in set(range(len(pts))) - set(front):        # every other point is beaten or a copy
        assert any(dominates(pts[j], pts[i]) or pts[j] == pts[i] for j in front)
