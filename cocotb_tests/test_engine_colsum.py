"""Runs the VSUM engine testbench (tb_engine_colsum.py) on a Verilated engine harness, and
checks ``latency_arith.mean_pool_params`` against ``intops.mean_pool_i8`` for every possible
column sum."""

import numpy as np
import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.colsum import ColSumEngine
from hw.vector.latency_arith import mean_pool_params
from model import intops


@pytest.mark.parametrize("n", range(1, 107))
def test_mean_pool_params_exact_for_every_sum(n):
    """VSUM's epilogue (``PARAM_LAYOUTS["VSUM"]``: ``sat8((((S + off)*m + 2**(s-1)) >> s) +
    post)``) with ``mean_pool_params(n)`` equals ``intops.mean_pool_i8`` on a column of ``n``
    int8 values, for each of the ``255n + 1`` possible sums (one column per sum)."""
    sums = np.arange(-128 * n, 127 * n + 1)
    q, r = np.divmod(sums, n)
    x = q[None, :] + (np.arange(n)[:, None] < r[None, :])          # (n, 255n + 1) int8
    assert (x.sum(axis=0) == sums).all()
    off, m, s, post = mean_pool_params(n)
    if n <= 54:                                   # the documented rule
        s_top = max(k for k in range(1, 48) if -(-(2**k) // n) <= 2**15 - 1)
        assert (off, m, s, post) == (128 * n, -(-(2**s_top) // n), s_top, -128)
    y = np.clip((((sums + off) * m + (1 << (s - 1))) >> s) + post, -128, 127)
    assert np.array_equal(y, intops.mean_pool_i8(x, axis=0))


def test_mean_pool_params_rejects_inexact_n():
    with pytest.raises(ValueError):
        mean_pool_params(107)


@pytest.mark.rtl
def test_colsum_engine_matches_intops():
    cols, rows = 4, 4
    result = run_engine_tb("eng_vsum", lambda: ColSumEngine(cols, rows), "VSUM", cols, rows,
                           "tb_engine_colsum", 20,
                           expect=["sum_requant", "zero_point", "mean_pool"])
    assert result.ok, result.summary()
