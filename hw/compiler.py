"""GEMM compiler: ``(M, K, N, hardware config) -> program`` plus the host data layout.

``C = A @ B (+ bias)`` with int8 ``A`` (M, K), int8 ``B`` (K, N), optional int32 ``bias`` (N,),
optionally requantized to int8 with per-column ``(m, s)`` and ReLU (docs/NUMERICS.md).

Tiling (docs/ISA.md, "Compiler"): output tiles are ``rows x cols``; K is cut into equal
chunks that let at least two operand tiles sit in each of ACT and WGT. Operand tiles live in
LRU caches of tile-sized slots, accumulator tiles in a ring of slots, and bias/param words in
a small LRU cache, so operands that fit stay resident and larger ones stream through.
With one K chunk, tiles go row by row (or column by column, whichever moves fewer bytes) in
serpentine order; with several chunks, blocks of ``mb x nb`` tiles accumulate over all chunks
before their results leave. Every instruction gets its dependency fields from
:class:`hw.deps.DepTracker`, so loads, compute and stores of different tiles overlap.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw import isa
from hw.bounds import array_floor, gemm_fill_drain_bound
from hw.deps import DepTracker
from hw.hostio import beats_to_words, int32_words, words_to_beats
from hw.isa import Instr
from hw.timing import program_cycles, watchdog_budget
from hw.uarch import ACC, ACT, ROWS_PER_ACC_WORD, WGT, AccelParams, as_params
from model.config import HardwareConfig
from model.intops import M_MAX, S_MAX, S_MIN, max_safe_k

#: Extra K-chunkings are only tried while tiles x chunks (MATMULs) stays below this.
SEARCH_LIMIT = 4096
#: The plan search stops at a program within this fraction of the GEMM's lower bound.
SEARCH_SLACK = 0.02
#: The ``"shells"`` order is only tried while tiles x chunks (MATMULs) stays below this.
SHELL_LIMIT = 256
#: Most instructions one GEMM program may have: bounds the memory of compiling it.
MAX_INSTRUCTIONS = 2_000_000


class CompileError(ValueError):
    """A GEMM the hardware cannot run as asked; the message names the cause and the fix."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _Lru:
    """Tile-sized slots of one bank, least recently used evicted first."""

    def __init__(self, n_slots: int, slot_words: int, base: int = 0):
        self.n, self.words, self.base = n_slots, slot_words, base
        self.keys: OrderedDict[Any, int] = OrderedDict()

    def get(self, key: Any) -> tuple[int, bool]:
        """(word address, hit) for ``key``; a miss takes a free or the LRU slot."""
        if key in self.keys:
            self.keys.move_to_end(key)
            return self.base + self.keys[key] * self.words, True
        if len(self.keys) < self.n:
            slot = len(self.keys)
        else:
            _, slot = self.keys.popitem(last=False)
        self.keys[key] = slot
        return self.base + slot * self.words, False


@dataclass
class GemmProgram:
    """A compiled GEMM: instructions, where its host data comes from and goes to."""

    params: AccelParams
    M: int
    K: int
    N: int
    bias: bool
    requant: bool
    relu: bool
    instrs: list[Instr] = field(default_factory=list)
    loads: list[tuple] = field(default_factory=list)   # one per LOAD, program order
    stores: list[tuple] = field(default_factory=list)  # one per STORE, program order
    plan: dict[str, Any] = field(default_factory=dict)

    def words(self) -> list[int]:
        return isa.encode_program(self.instrs)

    @property
    def macs(self) -> int:
        return self.M * self.K * self.N

    @property
    def n_in_beats(self) -> int:
        p = self.params
        return sum(ins["count"] * p.beats(ins["bank"]) for ins in self.instrs
                   if ins.op == "LOAD")

    @property
    def n_out_beats(self) -> int:
        words = sum(ins["count"] for ins in self.instrs if ins.op == "STORE")
        return words * self.params.beats(ACC)

    # ------------------------------------------------------------------ host data
    def pack_inputs(self, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
                    mult: np.ndarray | None = None, shift: np.ndarray | None = None
                    ) -> np.ndarray:
        """The data-in stream, ``(n_in_beats, host_bytes)`` uint8, for these operands."""
        p = self.params
        R, C = p.rows, p.cols
        a, b = _int_array(a, "a", (self.M, self.K), -128, 127), \
            _int_array(b, "b", (self.K, self.N), -128, 127)
        lanes_bias = np.zeros(self.N, np.int64)
        if self.bias:
            if bias is None:
                raise CompileError("the program adds a bias: pass bias=(N,) int32")
            lanes_bias = _int_array(bias, "bias", (self.N,), -(2**31), 2**31 - 1)
        params = np.zeros(self.N, np.int64)
        if self.requant:
            if mult is None or shift is None:
                raise CompileError("the program requantizes: pass mult=(N,) and shift=(N,)")
            mm = _int_array(mult, "mult", (self.N,), 0, M_MAX)
            ss = _int_array(shift, "shift", (self.N,), S_MIN, S_MAX)
            params = mm | (ss << isa.PARAM_S_SHIFT)
        pieces = []
        for kind, *idx in self.loads:
            if kind == "A":
                i, k0, k1 = idx
                words = np.zeros((k1 - k0, R), np.int8)
                rows = a[i * R:(i + 1) * R, k0:k1]
                words[:, :rows.shape[0]] = rows.T
                pieces.append(words_to_beats(words.view(np.uint8), p.host_bytes))
            elif kind == "B":
                j, k0, k1 = idx
                words = np.zeros((k1 - k0, C), np.int8)
                cols = b[k0:k1, j * C:(j + 1) * C]
                words[:, :cols.shape[1]] = cols
                pieces.append(words_to_beats(words.view(np.uint8), p.host_bytes))
            else:  # CONST: [bias word][param word] of column tile j
                (j,) = idx
                lanes = []
                # padding lanes (columns >= N): bias 0, params (m=0, s=1) -> output 0
                for on, vals, pad in ((self.bias, lanes_bias, 0),
                                      (self.requant, params, isa.pack_param(0, 1))):
                    if on:
                        row = np.full(C, pad, np.int64)
                        seg = vals[j * C:(j + 1) * C]
                        row[:len(seg)] = seg
                        lanes.append(row.astype(np.uint32).view(np.int32))
                pieces.append(words_to_beats(int32_words(np.array(lanes)), p.host_bytes))
        if not pieces:
            return np.zeros((0, p.host_bytes), np.uint8)
        return np.concatenate(pieces)

    def unpack_output(self, beats: np.ndarray) -> np.ndarray:
        """The data-out stream -> ``C`` (M, N): int8 if requantized, else int32."""
        p = self.params
        R, C = p.rows, p.cols
        beats = np.asarray(beats, np.uint8)
        if beats.shape != (self.n_out_beats, p.host_bytes):
            raise CompileError(f"output stream has shape {beats.shape}, the program stores "
                               f"{(self.n_out_beats, p.host_bytes)}")
        out = np.zeros((self.M, self.N), np.int8 if self.requant else np.int32)
        pos = 0
        per = p.beats(ACC)
        for i, j, m_t in self.stores:
            n_t = min(C, self.N - j * C)
            nwords = _cdiv(m_t, ROWS_PER_ACC_WORD) if self.requant else m_t
            words = beats_to_words(beats[pos:pos + nwords * per], p.word_bytes(ACC))
            pos += nwords * per
            if self.requant:
                rows = words.reshape(nwords * ROWS_PER_ACC_WORD, C).view(np.int8)[:m_t]
            else:
                rows = words.view("<i4")
            out[i * R:i * R + m_t, j * C:j * C + n_t] = rows[:m_t, :n_t]
        return out

    def describe(self) -> str:
        return (f"GEMM {self.M}x{self.K}x{self.N} on {self.params.rows}x{self.params.cols}: "
                f"{len(self.instrs)} instructions, {self.n_in_beats} beats in, "
                f"{self.n_out_beats} beats out; plan {self.plan}")


def _serpentine(n: int, parity: int) -> list[int]:
    return list(range(n)) if parity % 2 == 0 else list(range(n - 1, -1, -1))


def _int_array(x, name: str, shape: tuple, lo: int, hi: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise CompileError(f"{name} has shape {arr.shape}, the program expects {shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise CompileError(f"{name} must be an integer array, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise CompileError(f"{name} holds values outside [{lo}, {hi}]")
    return arr


def check_gemm(M: int, K: int, N: int, hw: HardwareConfig | AccelParams, *,
               bias: bool = False, requant: bool = False, relu: bool = False,
               bias_abs_max: int | None = None) -> None:
    """Raise :class:`CompileError` for a GEMM request the hardware cannot run (cheap: no
    compilation). :func:`compile_gemm` calls it first."""
    p = as_params(hw)
    for name, v in (("M", M), ("K", K), ("N", N)):
        if not isinstance(v, int) or v < 1:
            raise CompileError(f"{name}={v!r} must be a positive integer")
    if relu and not requant:
        raise CompileError("relu=True needs requant=True (ReLU is part of requantization)")
    bmax = (2**30 if bias else 0) if bias_abs_max is None else bias_abs_max
    if bias_abs_max is not None and not bias and bias_abs_max:
        raise CompileError("bias_abs_max given without bias=True")
    kmax = max(1, min(p.act_depth, p.wgt_depth) // 2)
    tiles = _cdiv(M, p.rows) * _cdiv(N, p.cols)
    least = tiles * (_cdiv(K, kmax) + 1)  # a MATMUL per tile and K chunk, a STORE per tile
    if least > MAX_INSTRUCTIONS:
        raise CompileError(
            f"the GEMM {M}x{K}x{N} needs at least {least:,} instructions on a {p.rows}x"
            f"{p.cols} array, more than the {MAX_INSTRUCTIONS:,} a program may hold (about "
            "1 KB of memory each while compiling); fix: split it into smaller GEMMs or use a "
            "larger array")
    safe = max_safe_k(bmax)
    if safe < K:
        raise CompileError(
            f"K={K} can overflow the int32 accumulator: with |bias| <= {bmax}, K must be <= "
            f"{safe} (K * 128 * 128 + |bias| < 2**31); fix: split K into partial GEMMs and add "
            "them in software, or lower the bias bound")


def compile_gemm(M: int, K: int, N: int, hw: HardwareConfig | AccelParams, *,
                 bias: bool = False, requant: bool = False, relu: bool = False,
                 bias_abs_max: int | None = None, k_chunks: int | None = None) -> GemmProgram:
    """Compile ``C = A @ B (+ bias)`` (optionally requantized) for hardware ``hw``.

    ``bias_abs_max`` bounds ``|bias|`` for the accumulator overflow check (default 2**30
    with a bias). ``k_chunks`` fixes how many pieces K is cut into; by default the compiler
    tries the fewest that fit and 2, 4 and 8 times as many (smaller pieces start the array
    sooner and leave room for more resident tiles) and keeps the program the timing model
    (hw/timing.py) finds fastest. Raises :class:`CompileError` for shapes the hardware
    cannot run.
    """
    p = as_params(hw)
    check_gemm(M, K, N, p, bias=bias, requant=requant, relu=relu, bias_abs_max=bias_abs_max)
    kmax = min(p.act_depth, p.wgt_depth) // 2
    if kmax < 1:
        raise CompileError("ACT and WGT banks must hold at least 2 words each; fix: raise "
                           "act_sram_kib / wgt_sram_kib")
    nk_min = _cdiv(K, kmax)
    if k_chunks is not None:
        if not nk_min <= k_chunks <= K:
            raise CompileError(f"k_chunks={k_chunks} must be in [{nk_min}, K={K}] (the "
                               f"fewest chunks whose operand tiles fit twice in ACT/WGT)")
        cands = [(k_chunks, order) for order in orders(M, K, N, p, k_chunks)]
    else:
        cands = plan_candidates(M, K, N, p)

    def run(nk: int, order: str, _best: int | None) -> tuple[int, int, GemmProgram]:
        prog = _Compiler(p, M, K, N, bias, requant, relu, nk, order).run()
        return program_cycles(prog, p)["total"], len(prog.instrs), prog
    return pick_plan(cands, M, K, N, p, run,
                     gemm_fill_drain_bound(M, K, N, p, bias=bias, requant=requant))


def k_chunk_candidates(M: int, K: int, N: int, p: AccelParams) -> list[int]:
    """The K-chunk counts :func:`compile_gemm` tries (``p``'s banks must hold 2 words)."""
    nk_min = _cdiv(K, min(p.act_depth, p.wgt_depth) // 2)
    # distinct chunk sizes only; skip the search for very large programs (compile time)
    cands = sorted({_cdiv(K, _cdiv(K, nk)) for nk in (nk_min, 2 * nk_min, 4 * nk_min,
                                                      8 * nk_min) if nk <= K})
    tiles = _cdiv(M, p.rows) * _cdiv(N, p.cols)
    return [nk for nk in cands if nk == cands[0] or tiles * nk <= SEARCH_LIMIT]


def shells_fit(M: int, K: int, N: int, p: AccelParams, k_chunks: int) -> bool:
    """Whether :func:`compile_gemm` tries the ``"shells"`` tile order: at least 2 output
    tiles, and at most :data:`SHELL_LIMIT` MATMULs (its compile and timing cost; the order
    has no periodic structure for the fast estimator to extrapolate)."""
    Mt, Nt = _cdiv(M, p.rows), _cdiv(N, p.cols)
    nk = _cdiv(K, _cdiv(K, k_chunks))
    return Mt * Nt >= 2 and Mt * Nt * nk <= SHELL_LIMIT


def orders(M: int, K: int, N: int, p: AccelParams, k_chunks: int) -> list[str]:
    """The tile orders :func:`compile_gemm` tries with ``k_chunks`` chunks: ``"auto"``
    (serpentine rows, columns or blocks: :meth:`_Compiler.block_plan`) and, where it
    applies (:func:`shells_fit`), ``"shells"``."""
    return ["auto", "shells"] if shells_fit(M, K, N, p, k_chunks) else ["auto"]


def plan_candidates(M: int, K: int, N: int, p: AccelParams) -> list[tuple[int, str]]:
    """``(k_chunks, order)`` pairs :func:`compile_gemm` compiles, times and picks from (in
    this order: the first of equally fast, equally long programs wins)."""
    return [(nk, order) for nk in k_chunk_candidates(M, K, N, p)
            for order in orders(M, K, N, p, nk)]


def pick_plan(cands: list[tuple[int, str]], M: int, K: int, N: int, p: AccelParams,
              run: Any, bound: int = 0) -> Any:
    """The best of ``cands`` by ``run(nk, order, best_cycles) -> (cycles, instructions,
    result)`` or ``None`` (gave up: it cannot beat ``best_cycles``): fewest cycles, then
    fewest instructions, then the first candidate. Candidates go in order of
    :func:`hw.bounds.array_floor`; one whose floor exceeds the best cycles so far cannot win
    and is not run, and the search stops once a program is within :data:`SEARCH_SLACK` of
    ``bound`` (a lower bound for every candidate: none could be faster by more)."""
    floors = [array_floor(M, K, N, p, nk) for nk, _ in cands]
    best = None
    for idx in sorted(range(len(cands)), key=floors.__getitem__):
        if best is not None and (floors[idx] > best[0][0]
                                 or best[0][0] <= bound * (1 + SEARCH_SLACK)):
            break                        # every later floor is higher still / good enough
        nk, order = cands[idx]
        got = run(nk, order, None if best is None else best[0][0])
        if got is None:
            continue
        key = (got[0], got[1], idx)
        if best is None or key < best[0]:
            best = (key, got[2])
    return best[1]


def shell_order(Mt: int, Nt: int) -> list[tuple[int, int]]:
    """Output tiles in growing square shells: shell ``s`` is the tiles ``(s, j < s)`` (A tile
    ``s`` with the B tiles already loaded), then ``(i <= s, s)`` (B tile ``s`` with every A
    tile loaded). Each new operand tile brings ``s`` or ``s + 1`` tiles of work, so once
    ``s`` is past the first shells the array, not the host link, sets the pace (in serpentine
    rows, every tile of the first row waits for its own B tile)."""
    out = []
    for s in range(max(Mt, Nt)):
        if s < Mt:
            out += [(s, j) for j in range(min(s, Nt))]
        if s < Nt:
            out += [(i, s) for i in range(min(s + 1, Mt))]
    return out


class _Compiler:
    def __init__(self, p: AccelParams, M: int, K: int, N: int, bias: bool, requant: bool,
                 relu: bool, k_chunks: int, order: str = "auto"):
        if order not in ("auto", "shells"):
            raise ValueError(f"order={order!r}: 'auto' or 'shells'")
        self.p = p
        self.order = order
        self.prog = GemmProgram(p, M, K, N, bias, requant, relu)
        self.deps = DepTracker(p)
        R, C = p.rows, p.cols
        self.Mt, self.Nt = _cdiv(M, R), _cdiv(N, C)
        self.kc = _cdiv(K, k_chunks)
        self.nk = _cdiv(K, self.kc)
        self.chunks = [(c * self.kc, min(K, (c + 1) * self.kc)) for c in range(self.nk)]
        self.n_act = p.act_depth // self.kc
        self.n_wgt = p.wgt_depth // self.kc
        self.const_words = int(bias) + int(requant)
        self.slot_words = R + (_cdiv(R, ROWS_PER_ACC_WORD) if requant else 0)
        n_const = 0
        if self.const_words:
            n_const = min(self.Nt, max(1, p.acc_depth // 4 // self.const_words))
        self.n_slots = (p.acc_depth - n_const * self.const_words) // self.slot_words
        if self.n_slots < 1:
            need = self.slot_words + self.const_words
            raise CompileError(
                f"the ACC bank ({p.acc_depth} words) cannot hold one output tile ({need} words "
                f"with bias/params); fix: raise acc_sram_kib")
        self.act = _Lru(self.n_act, self.kc)
        self.wgt = _Lru(self.n_wgt, self.kc)
        self.const = _Lru(n_const, self.const_words, base=self.n_slots * self.slot_words)
        self.next_slot = 0

    # ------------------------------------------------------------------ emission
    def emit(self, ins: Instr) -> None:
        self.prog.instrs.append(self.deps.add(ins))

    def operand(self, cache: _Lru, bank: int, key: tuple, k0: int, k1: int) -> int:
        addr, hit = cache.get(key)
        if not hit:
            self.emit(isa.load(bank, addr, k1 - k0))
            self.prog.loads.append((key[0], key[1], k0, k1))
        return addr

    def const_addr(self, j: int) -> int:
        addr, hit = self.const.get(("CONST", j))
        if not hit:
            self.emit(isa.load(ACC, addr, self.const_words))
            self.prog.loads.append(("CONST", j))
        return addr

    def tiles(self) -> tuple[list[tuple[list[int], list[int]]], int, int]:
        """Blocks of output tiles in execution order, and the block shape (mb, nb)."""
        Mt, Nt = self.Mt, self.Nt
        order, mb, nb = self.block_plan()
        if order == "shells":
            return [([i], [j]) for i, j in shell_order(Mt, Nt)], 1, 1
        if order == "cols":
            return [([i], [j]) for j in range(Nt) for i in _serpentine(Mt, j)], Mt, 1
        if order == "rows":
            return [([i], [j]) for i in range(Mt) for j in _serpentine(Nt, i)], 1, Nt
        blocks = []
        for bi in range(_cdiv(Mt, mb)):
            col_blocks = list(range(_cdiv(Nt, nb)))
            if bi % 2:
                col_blocks.reverse()
            for bj in col_blocks:
                blocks.append((list(range(bi * mb, min(Mt, (bi + 1) * mb))),
                               list(range(bj * nb, min(Nt, (bj + 1) * nb)))))
        return blocks, mb, nb

    def block_plan(self) -> tuple[str, int, int]:
        """How :meth:`tiles` orders the tiles: ``("cols", Mt, 1)`` or ``("rows", 1, Nt)``
        (one K chunk: single tiles, serpentine), or ``("blocks", mb, nb)`` (serpentine rows
        of ``mb x nb`` blocks), or ``("shells", 1, 1)`` when asked for (:func:`shell_order`)."""
        Mt, Nt, p = self.Mt, self.Nt, self.p
        if self.order == "shells":
            return "shells", 1, 1
        if self.nk == 1:
            cost_row, cost_col = self._one_chunk_costs()
            if cost_col < cost_row:
                return "cols", Mt, 1
            return "rows", 1, Nt
        best = None
        for mb in range(1, min(Mt, max(1, self.n_act // 2)) + 1):
            for nb in range(1, min(Nt, max(1, self.n_wgt // 2)) + 1):
                if mb * nb > max(1, self.n_slots // 2):
                    continue
                cost = (Mt * _cdiv(Nt, nb) * p.beats(ACT) + Nt * _cdiv(Mt, mb) * p.beats(WGT))
                key = (cost, -mb * nb)
                if best is None or key < best[0]:
                    best = (key, mb, nb)
        _, mb, nb = best
        return "blocks", mb, nb

    def _one_chunk_costs(self) -> tuple[int, int]:
        """Operand beats for row-major vs column-major serpentine order (one K chunk)."""
        Mt, Nt, kc, p = self.Mt, self.Nt, self.kc, self.p

        def reloads(outer: int, inner: int, slots: int) -> int:
            resident = min(inner, slots - 1)
            return inner if inner <= slots - 1 else inner + (outer - 1) * (inner - resident)

        row = Mt * kc * p.beats(ACT) + reloads(Mt, Nt, self.n_wgt) * kc * p.beats(WGT)
        col = Nt * kc * p.beats(WGT) + reloads(Nt, Mt, self.n_act) * kc * p.beats(ACT)
        return row, col

    def run(self) -> GemmProgram:
        p, prog = self.p, self.prog
        blocks, mb, nb = self.tiles()
        self.emit(isa.config(0, p.rows, p.cols))  # budget patched below
        for rows, cols in blocks:
            self.emit_block(rows, cols)
        self.emit(isa.done())
        budget = watchdog_budget(prog.instrs, p)
        prog.instrs[0] = isa.config(budget, p.rows, p.cols)
        prog.plan = {"k_chunk": self.kc, "k_chunks": self.nk, "order": self.order,
                     "block": (mb, nb),
                     "act_slots": self.n_act, "wgt_slots": self.n_wgt,
                     "acc_slots": self.n_slots, "budget": budget}
        return prog

    def emit_block(self, rows: list[int], cols: list[int]) -> None:
        """The instructions of one block of output tiles: all K chunks, then the results."""
        last = len(self.chunks) - 1
        slots = {}
        for c, (k0, k1) in enumerate(self.chunks):
            for i in rows:
                for j in cols:
                    a_addr = self.operand(self.act, ACT, ("A", i, c), k0, k1)
                    b_addr = self.operand(self.wgt, WGT, ("B", j, c), k0, k1)
                    if c == 0:
                        slots[i, j] = self.next_slot * self.slot_words
                        self.next_slot = (self.next_slot + 1) % self.n_slots
                    acc = slots[i, j]
                    if c > 0:
                        mode, bias_addr = "ACCUMULATE", 0
                    elif self.prog.bias:
                        mode, bias_addr = "BIAS", self.const_addr(j)
                    else:
                        mode, bias_addr = "OVERWRITE", 0
                    self.emit(isa.matmul(a_addr, b_addr, acc, k1 - k0, mode, bias_addr))
                    if c == last:
                        self.finish_tile(i, j, acc)

    def finish_tile(self, i: int, j: int, acc: int) -> None:
        p, prog = self.p, self.prog
        m_t = min(p.rows, prog.M - i * p.rows)
        if prog.requant:
            param = self.const_addr(j) + int(prog.bias)
            dst = acc + p.rows
            self.emit(isa.requant(acc, dst, param, m_t, prog.relu))
            self.emit(isa.store(dst, _cdiv(m_t, ROWS_PER_ACC_WORD)))
        else:
            self.emit(isa.store(acc, m_t))
        prog.stores.append((i, j, m_t))


__all__ = ["CompileError", "GemmProgram", "check_gemm", "compile_gemm",
           "k_chunk_candidates", "orders", "pick_plan", "plan_candidates",
           "shell_order", "shells_fit"]
