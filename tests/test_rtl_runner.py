"""The RTL runner's Verilog post-processing and build keys."""

import os

from sim.rtl.runner import RtlDesign, compact_memory_init
from sim.rtl.toolchain import find_toolchain

ZEROED = """module m(clk);
  reg [127:0] mem [3:0];
  initial begin
    mem[0] = 128'h00000000000000000000000000000000;
    mem[1] = 128'h00000000000000000000000000000000;
    mem[2] = 128'h00000000000000000000000000000000;
    mem[3] = 128'h00000000000000000000000000000000;
  end
  reg [7:0] \\lut.rom  [1:0];
  initial begin
    \\lut.rom [0] = 8'h00;
    \\lut.rom [1] = 8'h2a;
  end
  reg [7:0] gap [2:0];
  initial begin
    gap[0] = 8'h00;
    gap[2] = 8'h00;
  end
endmodule"""


def test_zero_init_becomes_one_loop():
    out = compact_memory_init(ZEROED)
    assert "for (i = 0; i < 4; i = i + 1) mem[i] = 128'h0;" in out
    assert "mem[0] = " not in out and "mem[3] = " not in out
    assert out.count("initial begin : foldaccel_zero_init_") == 1


def test_non_zero_or_sparse_init_is_kept():
    out = compact_memory_init(ZEROED)
    assert "\\lut.rom [1] = 8'h2a;" in out and "\\lut.rom [0] = 8'h00;" in out
    assert "gap[0] = 8'h00;" in out and "gap[2] = 8'h00;" in out


def test_text_without_zero_blocks_is_unchanged():
    text = ZEROED.split("  reg [7:0] \\lut.rom")[0].replace("128'h000", "128'h100") + "endmodule"
    assert compact_memory_init(text) == text


def test_build_key_covers_sources_flags_and_opt():
    tc = find_toolchain()
    base = RtlDesign("top", {"a.v": "module top; endmodule"})
    variants = [
        RtlDesign("top", {"a.v": "module top; endmodule // x"}),
        RtlDesign("top", {"a.v": "module top; endmodule"}, build_args=("-DX",)),
        RtlDesign("top", {"a.v": "module top; endmodule"}, timing=True),
        RtlDesign("top", {"a.v": "module top; endmodule"}, opt="-O0"),
    ]
    keys = {base.key(tc, "")} | {v.key(tc, "") for v in variants} | {base.key(tc, "fst")}
    assert len(keys) == 6
    assert base.key(tc, "") == RtlDesign("top", {"a.v": "module top; endmodule"}).key(tc, "")


def test_fresh_build_root_is_temporary_and_restores(monkeypatch, tmp_path):
    from sim.rtl.runner import build_root, fresh_build_root

    monkeypatch.setenv("FOLDACCEL_BUILD_DIR", str(tmp_path / "mine"))
    with fresh_build_root() as root:
        assert build_root() == root and root.is_dir() and root != tmp_path / "mine"
    assert build_root() == tmp_path / "mine"
    assert not root.exists()
    monkeypatch.delenv("FOLDACCEL_BUILD_DIR")
    with fresh_build_root():
        pass
    assert "FOLDACCEL_BUILD_DIR" not in os.environ


RESULTS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="all">
  <testcase name="good" classname="m"><property name="sim_time_duration" value="12.5"/></testcase>
  <testcase name="bad" classname="m"><failure message="mismatch at C[0,1]"/></testcase>
  <testcase name="later" classname="m"><skipped message="not this suite"/></testcase>
</testsuite></testsuites>
"""


def test_results_distinguish_passed_failed_and_skipped(tmp_path):
    from sim.rtl.runner import RunResult, parse_results

    xml = tmp_path / "results.xml"
    xml.write_text(RESULTS_XML)
    tests = parse_results(xml)
    assert [(t.name, t.status) for t in tests] == [("good", "passed"), ("bad", "failed"),
                                                   ("later", "skipped")]
    assert tests[0].sim_time_ns == 12.5 and tests[1].message == "mismatch at C[0,1]"
    assert not RunResult(tests).ok
    only_good = RunResult([tests[0]], expected=("good",))
    assert only_good.ok
    skipped = RunResult([tests[0], tests[2]])
    assert not skipped.ok and "SKIPPED later: not this suite" in skipped.summary()


def test_an_expected_test_that_did_not_run_fails_the_suite():
    from sim.rtl.runner import RunResult, TestOutcome

    result = RunResult([TestOutcome("corners", "passed")], expected=("corners", "watchdog"))
    assert result.missing == ["watchdog"]
    assert not result.ok
    assert "NOT RUN watchdog" in result.summary()
