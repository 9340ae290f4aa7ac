"""The fast GEMM counts (sim/perf/fastgemm.py, periodic-state extrapolation) equal the full
compile + timing simulation (gemm_counts_reference) in every field."""

from __future__ import annotations

import random

import pytest

from hw.compiler import CompileError, _Compiler
from hw.uarch import as_params
from model.config import ConfigError, HardwareConfig
from sim.perf import fastgemm
from sim.perf.gemm import gemm_counts_reference, gemm_counts_uncached

ARRAYS = [(4, 3), (8, 8), (16, 16), (32, 32)]


def _case(rng: random.Random, top: int) -> tuple:
    rows, cols = rng.choice(ARRAYS)
    hw = HardwareConfig(rows=rows, cols=cols, host_bytes_per_cycle=rng.choice([4, 16, 64]),
                        act_sram_kib=rng.choice([1, 2, 4, 16, 64]),
                        wgt_sram_kib=rng.choice([1, 2, 4, 16, 64]),
                        acc_sram_kib=rng.choice([1, 2, 4, 16, 64]))
    m, k, n = (rng.randint(1, top) for _ in range(3))
    requant = rng.random() < 0.7
    kw = {"bias": rng.random() < 0.5, "requant": requant,
          "relu": requant and rng.random() < 0.5, "weight": rng.random() < 0.7}
    return m, k, n, hw, kw


def _same(m, k, n, hw, kw) -> None:
    try:
        ref = gemm_counts_reference(m, k, n, hw, **kw)
    except (CompileError, ConfigError) as e:
        with pytest.raises(type(e)) as got:
            gemm_counts_uncached(m, k, n, hw, **kw)
        assert str(got.value) == str(e)
        return
    fast = gemm_counts_uncached(m, k, n, hw, **kw)
    assert fast.to_dict() == ref.to_dict(), (m, k, n, hw, kw)


def _check_seeded(seed: int, count: int, top: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        _same(*_case(rng, top))


@pytest.fixture(params=["default", "every boundary"])
def jump_policy(request, monkeypatch):
    """Run with the engine's thresholds, and with signatures at every boundary of every
    program (small random programs then exercise the jumps too)."""
    if request.param == "every boundary":
        monkeypatch.setattr(fastgemm, "MIN_BLOCKS", 0)
        monkeypatch.setattr(fastgemm, "WARMUP", 0)
    return request.param


@pytest.mark.parametrize("seed", range(4))
def test_random_shapes_match_reference(seed, jump_policy):
    _check_seeded(seed, 6, 160)


@pytest.mark.parametrize("m,k,n,kw", [
    (128, 128, 128, {"bias": True}),
    (256, 200, 96, {"bias": False, "requant": False}),
    (300, 64, 300, {"bias": True, "relu": True}),
    (200, 3000, 40, {"bias": True, "weight": False}),     # K chunked: blocks of tiles
])
def test_default_hardware_matches_reference(m, k, n, kw):
    _same(m, k, n, HardwareConfig(), kw)


def test_extrapolation_happens_and_small_banks():
    """A long program really jumps over repeated periods (and stays exact)."""
    hw = HardwareConfig(rows=8, cols=8, act_sram_kib=1, wgt_sram_kib=1, acc_sram_kib=1)
    p = as_params(hw)
    eng = fastgemm._Stream(p, 300, 40, 300, True, True, False, 1)
    eng.count()
    assert eng.jumps >= 1
    _same(300, 40, 300, hw, {"bias": True})


@pytest.mark.parametrize("m,k,n,hw_kw,nk", [
    (512, 512, 512, {}, 1),                                         # rows of single tiles
    (200, 1000, 400, {"act_sram_kib": 4, "wgt_sram_kib": 4}, 4),    # blocks, K chunked
    (333, 90, 250, {"rows": 8, "cols": 8, "acc_sram_kib": 2}, 1),   # small ring, consts evicted
])
def test_long_programs_jump_and_stay_exact(m, k, n, hw_kw, nk):
    hw = HardwareConfig(**hw_kw)
    eng = fastgemm._Stream(as_params(hw), m, k, n, True, True, False, nk)
    eng.count()
    assert eng.jumps >= 1 and eng.simulated < len(eng.blocks()[2])
    _same(m, k, n, hw, {"bias": True})


def test_block_order_is_the_compilers():
    rng = random.Random(7)
    for _ in range(40):
        m, k, n, hw, kw = _case(rng, 200)
        try:
            p = as_params(hw)
        except ConfigError:
            continue
        kmax = min(p.act_depth, p.wgt_depth) // 2
        nk = -(-k // kmax)
        for chunks in {nk, min(k, 2 * nk)}:
            try:
                ref = _Compiler(p, m, k, n, kw["bias"], kw["requant"], kw["relu"], chunks)
            except CompileError:
                continue
            eng = fastgemm._Stream(p, m, k, n, kw["bias"], kw["requant"], kw["relu"], chunks)
            blocks, _, _ = ref.tiles()
            count, at, desc = eng.blocks()
            assert count == len(blocks) == len(desc)
            assert [at(x) for x in range(count)] == blocks


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 140))
def test_random_shapes_match_reference_sweep(seed, jump_policy):
    _check_seeded(seed, 10, 400)


@pytest.mark.parametrize("m,k,n,hw_kw,nk", [
    (256, 256, 256, {"rows": 32, "cols": 32}, 1),
    (200, 300, 150, {"rows": 32, "cols": 32}, 4),
    (37, 100, 23, {}, 4),
    (50, 70, 13, {"rows": 4, "cols": 3, "host_bytes_per_cycle": 4}, 2),
])
def test_shell_order_blocks_and_counts_are_the_compilers(m, k, n, hw_kw, nk):
    """The ``"shells"`` order: the same blocks as the compiler's, the same counts as the
    full timing of the program the compiler emits in that order."""
    from hw.timing import program_cycles
    p = as_params(HardwareConfig(**hw_kw))
    ref = _Compiler(p, m, k, n, True, True, False, nk, "shells")
    eng = fastgemm._Stream(p, m, k, n, True, True, False, nk, "shells")
    count, at, desc = eng.blocks()
    assert [at(x) for x in range(count)] == ref.tiles()[0]
    counts = eng.count()
    timing = program_cycles(ref.run(), p)
    assert counts.cycles == timing["total"] and counts.stall == timing["stall"]
    _same(m, k, n, HardwareConfig(**hw_kw), {"bias": True, "requant": True})


def test_pruned_plan_search_is_within_its_slack_of_timing_every_candidate():
    """compile_gemm and the fast counts skip candidates whose array floor exceeds the best
    so far, give up on ones that fall behind, and stop at a program within SEARCH_SLACK of
    the GEMM's lower bound: the program they pick is the fastest of all candidates unless
    one within the slack of the bound was found, every floor and the bound are below every
    candidate's cycles, and the fast counts equal the full timing of the pick."""
    from hw.bounds import array_floor, gemm_fill_drain_bound
    from hw.compiler import SEARCH_SLACK, compile_gemm, plan_candidates
    from hw.timing import program_cycles
    rng = random.Random(11)
    checked = 0
    while checked < 25:
        m, k, n, hw, kw = _case(rng, 120)
        try:
            p = as_params(hw)
            cands = plan_candidates(m, k, n, p)
            got = compile_gemm(m, k, n, hw, bias=kw["bias"], requant=kw["requant"],
                               relu=kw["relu"])
        except (CompileError, ConfigError):
            continue
        bound = gemm_fill_drain_bound(m, k, n, p, bias=kw["bias"], requant=kw["requant"])
        every = []
        for nk, order in cands:
            prog = _Compiler(p, m, k, n, kw["bias"], kw["requant"], kw["relu"], nk,
                             order).run()
            cycles = program_cycles(prog, p)["total"]
            assert array_floor(m, k, n, p, nk) <= cycles and bound <= cycles
            every.append(cycles)
        picked = program_cycles(got, p)["total"]
        assert picked <= min(every) * (1 + SEARCH_SLACK)
        if min(every) > bound * (1 + SEARCH_SLACK):
            assert picked == min(every), (m, k, n, hw, kw)
        fast, _ = fastgemm.fast_program_counts(m, k, n, hw, bias=kw["bias"],
                                               requant=kw["requant"], relu=kw["relu"])
        assert fast.cycles == picked
        checked += 1


@pytest.mark.parametrize("m,k,n,hw_kw,nk,bias", [
    (512, 4096, 512, {}, 2, False),          # the dependency state repeats every 2 blocks
    (320, 300, 320, {"act_sram_kib": 4, "wgt_sram_kib": 4}, 3, False),
    (320, 300, 320, {"act_sram_kib": 4, "wgt_sram_kib": 4}, 3, True),
])
def test_dependency_period_a_multiple_of_the_cheap_one(m, k, n, hw_kw, nk, bias):
    """Blocks of single tiles without a bias: the cheap signature repeats every block, the
    dependency state every other one; the engine still finds the period and jumps."""
    hw = HardwareConfig(**hw_kw)
    eng = fastgemm._Stream(as_params(hw), m, k, n, bias, False, False, nk)
    eng.count()
    assert eng.jumps >= 1 and eng.simulated < len(eng.blocks()[2]) // 2
    _same(m, k, n, hw, {"bias": bias, "requant": False})
