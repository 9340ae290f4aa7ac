"""Lower bounds on the cycles of GEMM programs: what no schedule on the hardware can beat.

* :func:`roofline`: the largest of the array-tile bound (``ceil(M/rows) * ceil(N/cols) * K``
  cycles per GEMM: one k-step per cycle per output tile of the output-stationary array), the
  input bytes over the host link once, and the output bytes over it once.
* :func:`gemm_fill_drain_bound`: also the pipeline's fill and drain, with the host traffic
  counted in whole words (:func:`gemm_word_beats`: the hardware moves ``rows``-byte ACT and
  ``cols``-byte WGT words, so a 23-column B on a 32-column array still takes 32 bytes per
  row). No result leaves before a first tile has all of its K words of A and B (``K *
  (beats per ACT word + beats per WGT word)``) and the array's latency, and then every output
  beat still has to leave; after the last input beat, its tile still needs the latency and
  its own STORE; and the array's k-steps cannot start before one word of A and one of B
  arrived, nor the last tile's STORE before the latency after them.
* :func:`array_floor`: one K chunking's MATMULs, at least ``max(k, drain_gap)`` apart.

The compiler's plan search (:func:`hw.compiler.pick_plan`) uses the last two; the
benchmarks (``sim/bench/roofline.py``) print the first two beside the cycles.
"""

from __future__ import annotations

from collections.abc import Iterable

from hw.uarch import ACC, ACT, ROWS_PER_ACC_WORD, WGT, AccelParams, as_params


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def array_bound(gemms: Iterable[tuple[int, int, int]], rows: int, cols: int) -> int:
    """Cycles the array needs for ``(M, K, N)`` GEMMs: one K-step per cycle per output tile."""
    return sum(cdiv(m, rows) * cdiv(n, cols) * k for m, k, n in gemms)


def roofline(array: int, bytes_in: int, bytes_out: int, host_bytes_per_cycle: int
             ) -> tuple[int, str]:
    """``(bound, which)``: the largest of the array bound and the host transfers."""
    bounds = {"array": array, "data in": cdiv(bytes_in, host_bytes_per_cycle),
              "data out": cdiv(bytes_out, host_bytes_per_cycle)}
    which = max(bounds, key=bounds.get)
    return bounds[which], which


def gemm_bytes(m: int, k: int, n: int, bias: bool, requant: bool) -> tuple[int, int]:
    """Host bytes ``(in, out)`` of one GEMM: A, B, bias and parameters in; C (int32, or int8
    when requantized) out."""
    return m * k + k * n + 4 * n * bias + 4 * n * requant, m * n * (1 if requant else 4)


def gemm_roofline(m: int, k: int, n: int, hw, *, bias: bool = False,
                  requant: bool = False) -> tuple[int, str]:
    """The roofline of one GEMM program on ``hw`` (module docstring)."""
    p = as_params(hw)
    bytes_in, bytes_out = gemm_bytes(m, k, n, bias, requant)
    return roofline(array_bound([(m, k, n)], p.rows, p.cols), bytes_in, bytes_out,
                    p.host_bytes)


def gemm_word_beats(m: int, k: int, n: int, hw, *, bias: bool = False,
                    requant: bool = False) -> tuple[int, int]:
    """Host beats ``(in, out)`` of one GEMM moved as whole words, each operand tile once:
    A as ``ceil(M/rows)`` tiles of K ACT words, B as ``ceil(N/cols)`` tiles of K WGT words,
    one bias and one parameter ACC word per column tile; out one ACC word per row of each
    column tile (four rows per word when requantized)."""
    p = as_params(hw)
    mt, nt = cdiv(m, p.rows), cdiv(n, p.cols)
    words_in = nt * (int(bias) + int(requant))
    beats_in = mt * k * p.beats(ACT) + nt * k * p.beats(WGT) + words_in * p.beats(ACC)
    rows = [min(p.rows, m - i * p.rows) for i in range(mt)]
    words_out = sum(cdiv(r, ROWS_PER_ACC_WORD) if requant else r for r in rows)
    return beats_in, nt * words_out * p.beats(ACC)


def gemm_fill_drain_bound(m: int, k: int, n: int, hw, *, bias: bool = False,
                          requant: bool = False) -> int:
    """The fill/drain lower bound of one GEMM program on ``hw`` (module docstring)."""
    p = as_params(hw)
    bound, _ = gemm_roofline(m, k, n, p, bias=bias, requant=requant)
    beats_in, beats_out = gemm_word_beats(m, k, n, p, bias=bias, requant=requant)
    lat = p.matmul_latency
    first = k * (p.beats(ACT) + p.beats(WGT)) + lat + beats_out
    m_min = min(m, m % p.rows or p.rows)
    words = cdiv(m_min, ROWS_PER_ACC_WORD) if requant else m_min
    store = words * p.beats(ACC)
    last = beats_in + lat + store
    array = (p.beats(ACT) + p.beats(WGT)
             + array_bound([(m, k, n)], p.rows, p.cols) + lat + store)
    return max(bound, first, last, array)


def array_floor(M: int, K: int, N: int, p: AccelParams, k_chunks: int) -> int:
    """A lower bound on the cycles of any program with ``k_chunks`` chunks (any order): its
    MATMULs (every tile x every chunk) feed the array one after another, and the timing rule
    (hw/opcodes.py) puts the last k-steps of consecutive ones at least ``max(k, drain_gap)``
    apart (the unit is busy ``k`` cycles; ``spacing`` adds the drain gap). The first MATMUL's
    k-steps alone take ``k`` cycles."""
    kc = cdiv(K, k_chunks)
    nk = cdiv(K, kc)
    tiles = cdiv(M, p.rows) * cdiv(N, p.cols)
    last = K - (nk - 1) * kc
    per_tile = (nk - 1) * max(kc, p.drain_gap) + max(last, p.drain_gap)
    return tiles * per_tile - max(last, p.drain_gap) + last


__all__ = ["array_bound", "array_floor", "cdiv", "gemm_bytes", "gemm_fill_drain_bound",
           "gemm_roofline", "gemm_word_beats", "roofline"]
