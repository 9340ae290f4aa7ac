"""The opcode table (hw/opcodes.py): complete for every opcode, and its consumers raise for an
opcode without a rule instead of treating it like another one."""

import numpy as np
import pytest

from hw import isa
from hw.deps import DepTracker
from hw.opcodes import TABLE, OpcodeError, OpSpec
from hw.timing import program_cycles, watchdog_budget
from hw.uarch import UNITS, AccelParams
from model.config import HardwareConfig
from sim.isa_sim import simulate
from sim.perf.program import traffic_counts

P = AccelParams.from_hw(HardwareConfig(rows=4, cols=3, act_sram_kib=1, wgt_sram_kib=1,
                                       acc_sram_kib=1, host_bytes_per_cycle=8))
UNIT_RULES = ("regions", "ports", "ordered_raw", "cost", "traffic", "execute")


def test_every_opcode_has_every_rule_it_needs():
    codes = [s.code for s in TABLE.values()]
    assert len(set(codes)) == len(codes) and 0 not in codes
    for name, spec in TABLE.items():
        assert spec.name == name
        if spec.unit is not None:
            assert spec.unit in UNITS and spec.control is None
            for rule in UNIT_RULES:
                assert callable(spec.need(rule)), (name, rule)
        else:
            assert spec.control in ("immediate", "barrier"), name
            for rule in ("regions", "ports", "traffic", "execute"):
                assert callable(spec.need(rule)), (name, rule)


def test_rules_evaluate_on_ints_like_problems():
    ins = isa.load(0, P.act_depth - 1, 2)
    assert isa.problems(ins, P) == [
        f"'addr'={P.act_depth - 1} + 2 words runs past the ACT bank ({P.act_depth} words)"]
    assert isa.problems(isa.load(7, 0, 0), P) == [
        "'bank'=7 is not ACT(0), WGT(1), ACC(2), VMEM(3), PMEM(4)", "'count'=0 (must be >= 1)"]


@pytest.fixture
def dummy_opcode(monkeypatch):
    """Opcode 20 on the LOAD unit, with regions but no timing or traffic rule."""
    spec = OpSpec("DUMMY", 20, (("addr", 16),), unit="LOAD",
                  regions=lambda a, p: ([], [(0, a.addr, a.addr + 1)]),
                  ports=lambda a, p: [], ordered_raw=lambda ins, other: True,
                  execute=lambda m, a, where: None)
    monkeypatch.setitem(TABLE, "DUMMY", spec)
    return [isa.config(0, P.rows, P.cols), isa.Instr("DUMMY", {"addr": 3}), isa.done()]


def test_timing_model_raises_for_an_opcode_without_a_timing_rule(dummy_opcode):
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'cost' rule"):
        program_cycles(dummy_opcode, P)
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'cost' rule"):
        watchdog_budget(dummy_opcode, P)


def test_traffic_counts_raise_for_an_opcode_without_a_traffic_rule(dummy_opcode):
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'traffic' rule"):
        traffic_counts(dummy_opcode, P)


def test_dependency_tracker_raises_for_an_opcode_without_regions(monkeypatch):
    monkeypatch.setitem(TABLE, "DUMMY", OpSpec("DUMMY", 20, (), unit="STORE"))
    tracker = DepTracker(P)
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'regions' rule"):
        tracker.add(isa.Instr("DUMMY"))


def test_isa_simulator_raises_for_an_opcode_without_semantics(monkeypatch):
    monkeypatch.setitem(TABLE, "DUMMY", OpSpec("DUMMY", 20, (), unit="STORE",
                                               regions=lambda a, p: ([], []),
                                               ports=lambda a, p: [],
                                               ordered_raw=lambda ins, other: True))
    prog = [isa.config(0, P.rows, P.cols), isa.Instr("DUMMY"), isa.done()]
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'execute' rule"):
        simulate(prog, P, np.zeros((0, P.host_bytes), np.uint8))


def test_a_control_opcode_needs_a_control_kind(monkeypatch):
    monkeypatch.setitem(TABLE, "DUMMY", OpSpec("DUMMY", 20, ()))
    with pytest.raises(OpcodeError, match="opcode DUMMY has no 'control' rule"):
        program_cycles([isa.config(0, P.rows, P.cols), isa.Instr("DUMMY"), isa.done()], P)


def test_the_rtl_refuses_an_opcode_its_units_do_not_implement(monkeypatch):
    from hw.accel import Accelerator

    monkeypatch.setitem(TABLE, "DUMMY", OpSpec("DUMMY", 20, (), unit="STORE"))
    from amaranth.back import rtlil
    with pytest.raises(OpcodeError, match="opcode DUMMY runs on unit STORE, whose RTL"):
        rtlil.convert(Accelerator(P))

