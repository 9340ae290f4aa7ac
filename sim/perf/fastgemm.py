"""Exact GEMM counts without timing every instruction: periodic-state extrapolation.

The GEMM compiler (:mod:`hw.compiler`) emits its program block by block (blocks of output
tiles in serpentine order, :meth:`_Compiler.emit_block`), and the timing model
(:func:`hw.timing.schedule`) keeps a small state. :func:`fast_gemm_counts` streams the blocks
through the real compiler code and the real dependency tracker (:class:`hw.deps.DepTracker`),
times each instruction with :class:`_Sched` (the loop of :func:`hw.timing.schedule`, one
instruction at a time) and sums every counter as it goes. At each block boundary it takes
a *normalised* signature of the whole state:

* compiler: LRU operand caches with tile indices relative to the next block's first tile,
  accumulator ring position;
* timing: queue/completion times relative to the fetch time (times that can no longer
  matter, i.e. at or before the fetch cycle, collapse to one value), previous instruction of
  each unit, host transfer intervals not yet merged into the ``dma_busy`` union;
* dependencies: per unit, every instruction index the tracker holds, as the exact age when
  at most 64 (a dependency field reaches 63 back) and otherwise as its rank among the older
  ones (the tracker only compares and takes maxima of those), never-touched words as such,
  and the instructions referenced (ordered read-after-write checks read their fields).
  The accumulator slot region is rotated so the next ring slot is at 0 (slot rotation
  symmetry).

When the signature at block ``b`` equals the one at block ``a``, and the block sequence
after ``a`` is translated by the same tile offset ``d`` one period ``P = b - a`` later (same
shapes, same partial tiles), the state after ``K`` more periods is the state at ``b``
shifted by ``K`` times the per-period time, instruction-count, tile and slot offsets, and
every counter grows by ``K`` times its per-period delta (the counters are functions of the
state trajectory). The engine jumps there and goes on simulating; the tail and DONE are
simulated. SRAM peaks: the signature distinguishes never-touched words, so a period touches
no new word (for the ACC slot region, no new word up to the rotation), the footprint at the
end is the tracker's.

``tests/test_fast_gemm.py`` checks every field against the full compile + timing
(``sim.perf.gemm.gemm_counts_reference``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from hw import isa
from hw.compiler import _cdiv, _Compiler, check_gemm, k_chunk_candidates
from hw.deps import PORT_BANK
from hw.isa import DEP_MAX
from hw.timing import union_length
from hw.uarch import ACC, BANK_KEYS, BANKS, COUNTERS, QUEUE_DEPTH, UNITS, as_params
from sim.perf.counts import OP_CLASSES, RTL_BUSY, Counts

#: Per unit, how many recent instruction indices / times matter exactly.
HIST = DEP_MAX + 1
_NU = len(UNITS)
#: ACC word-address fields per opcode (rotated with the accumulator slot ring).
_ACC_FIELDS = {"MATMUL": ("acc",), "REQUANT": ("src", "dst"), "STORE": ("addr",)}


class _Window:
    """A list of which only the entries from some index on are kept (a dict by index)."""

    __slots__ = ("d", "n")

    def __init__(self, items: dict | None = None, n: int = 0):
        self.d = items if items is not None else {}
        self.n = n

    def __getitem__(self, i: int):
        return self.d[i + self.n if i < 0 else i]

    def append(self, x) -> None:
        self.d[self.n] = x
        self.n += 1

    def __len__(self) -> int:
        return self.n


class _Sched:
    """:func:`hw.timing.schedule`, one instruction at a time, with a compact state."""

    def __init__(self, p):
        self.p = p
        self.n = [0] * _NU
        self.pops: list[list[int]] = [[] for _ in range(_NU)]   # recent starts
        self.dones: list[list[int]] = [[] for _ in range(_NU)]  # recent completions
        self.prev: list = [None] * _NU
        self.unit_free = [0] * _NU
        self.last_done = -1
        self.fetch = 0
        self.end = None
        self.cnt = dict.fromkeys(COUNTERS, 0)
        self.pending: list[tuple[int, int]] = []
        self.union = 0
        self._cost: dict = {}

    def step(self, ins) -> None:
        spec = ins.spec
        t = self.fetch + 1
        u = ins.unit
        if u is not None:
            key = (ins.op, tuple(ins.args.values()))
            cost = self._cost.get(key)
            if cost is None:
                cost = self._cost[key] = spec.need("cost")(ins.args, self.p)
            if self.n[u] >= QUEUE_DEPTH:
                t = max(t, self.pops[u][-QUEUE_DEPTH] + 1)
        elif spec.need("control") == "barrier":
            t = max(t, self.last_done + 1)
        elif spec.control != "immediate":
            raise isa.OpcodeError(f"opcode {ins.op}: unknown control kind {spec.control!r}")
        self.fetch = t
        if spec.ends:
            self.end = t
            return
        if u is None:
            return
        pops = self.pops[u]
        visible = t + 1
        if self.n[u]:
            visible = max(visible, pops[-1] + 1)
        structural = self.unit_free[u]
        prev = self.prev[u]
        if spec.spacing is not None and prev is not None and prev.op == ins.op:
            structural = max(structural, pops[-1] + spec.spacing(prev.args, ins.args, self.p))
        dep_ready = 0
        for v, d in enumerate(ins.deps):
            if d and self.n[v] - d >= 0:
                dep_ready = max(dep_ready, self.dones[v][-d] + 1)
        ready = max(visible, structural)
        start = max(ready, dep_ready)
        if spec.stall_counter is not None and dep_ready > ready:
            self.cnt[spec.stall_counter] += dep_ready - ready
        done = start + cost.done
        self.unit_free[u] = start + cost.free
        for name, value in cost.busy.items():
            self.cnt[name] += value
        if cost.host_beats:
            self.pending.append((start + 1, start + cost.host_beats))
        pops.append(start)
        dones = self.dones[u]
        dones.append(done)
        if len(pops) > 2 * HIST:
            del pops[:HIST]
            del dones[:HIST]
        self.prev[u] = ins
        self.last_done = max(self.last_done, done)
        self.n[u] += 1

    def settle(self) -> None:
        """Add the host intervals no later transfer can touch to the ``dma_busy`` union."""
        if not self.pending:
            return
        # any later transfer starts at >= fetch + 2 (moves beats from fetch + 3 on)
        limit = self.fetch + 1
        keep, segs = [], []
        for lo, hi in sorted(self.pending):
            if segs and lo <= segs[-1][1] + 1:
                segs[-1][1] = max(segs[-1][1], hi)
                segs[-1][2].append((lo, hi))
            else:
                segs.append([lo, hi, [(lo, hi)]])
        for lo, hi, parts in segs:
            if hi <= limit:
                self.union += hi - lo + 1
            else:
                keep.extend(parts)
        self.pending = keep

    def signature(self, norm) -> tuple:
        f = self.fetch

        def c(x: int) -> int:
            return x - f if x > f else 0

        out = []
        for u in range(_NU):
            pops, dones = self.pops[u], self.dones[u]
            prev = self.prev[u]
            out.append((min(self.n[u], HIST), tuple(c(x) for x in pops[-QUEUE_DEPTH:]),
                        pops[-1] - f if pops else None, tuple(c(x) for x in dones[-DEP_MAX:]),
                        c(self.unit_free[u]), None if prev is None else norm(prev)))
        out.append(c(self.last_done))
        out.append(tuple(sorted((lo - f, hi - f) for lo, hi in self.pending)))
        return tuple(out)

    def counters(self) -> list[int]:
        return [*self.cnt.values(), self.union]

    def set_counters(self, vals: list[int]) -> None:
        for k, v in zip(list(self.cnt), vals, strict=False):
            self.cnt[k] = v
        self.union = vals[len(self.cnt)]

    def shift(self, dt: int, dn: list[int], rot) -> None:
        self.fetch += dt
        self.last_done += dt
        for u in range(_NU):
            self.pops[u] = [x + dt for x in self.pops[u]]
            self.dones[u] = [x + dt for x in self.dones[u]]
            self.unit_free[u] += dt
            self.n[u] += dn[u]
            if self.prev[u] is not None:
                self.prev[u] = rot(self.prev[u])
        self.pending = [(lo + dt, hi + dt) for lo, hi in self.pending]


class _Traffic:
    """Per-instruction traffic sums (the ``traffic`` rules, as :mod:`sim.perf.program`)."""

    def __init__(self, p):
        self.p = p
        self.vals = [0] * (3 * len(BANK_KEYS) + 3 + len(OP_CLASSES))
        self._cache: dict = {}

    def add(self, ins) -> None:
        key = (ins.op, tuple(ins.args.values()))
        inc = self._cache.get(key)
        if inc is None:
            t = ins.spec.need("traffic")(ins.args, self.p)
            inc = [*(t.reads[b] for b in BANK_KEYS), *(t.writes[b] for b in BANK_KEYS),
                   *(t.host_in[b] for b in BANK_KEYS), t.host_out, t.mac_slots, 1,
                   *(t.ops.get(k, 0) for k in OP_CLASSES)]
            self._cache[key] = inc
        self.vals = [a + b for a, b in zip(self.vals, inc, strict=True)]


class _Stream(_Compiler):
    """The GEMM compiler, feeding each instruction to the timing and traffic sums instead of
    keeping the program."""

    def __init__(self, *args):
        super().__init__(*args)
        self.sched = _Sched(self.p)
        self.traffic = _Traffic(self.p)
        dt = self.deps
        dt.after = [_Window() for _ in range(_NU)]
        dt.instrs = [_Window() for _ in range(_NU)]
        self.region = self.n_slots * self.slot_words

    def emit(self, ins) -> None:
        ins = self.deps.add(ins)
        self.sched.step(ins)
        self.traffic.add(ins)

    # ------------------------------------------------------------------ blocks
    def blocks(self) -> tuple[int, object, np.ndarray]:
        """(number of blocks, block_at(x) -> (rows, cols), descriptor array) of
        :meth:`tiles`' order (the same sequence, computed per index)."""
        Mt, Nt = self.Mt, self.Nt
        order, mb, nb = self.block_plan()
        partial_m = self.prog.M % self.p.rows != 0
        if order == "rows":
            n = Mt * Nt

            def at(x):
                i, q = divmod(x, Nt)
                return [i], [q if i % 2 == 0 else Nt - 1 - q]
            xs = np.arange(n)
            i0, q = np.divmod(xs, Nt)
            j0 = np.where(i0 % 2 == 0, q, Nt - 1 - q)
            i1, j1 = i0 + 1, j0 + 1
        elif order == "cols":
            n = Mt * Nt

            def at(x):
                j, q = divmod(x, Mt)
                return [q if j % 2 == 0 else Mt - 1 - q], [j]
            xs = np.arange(n)
            j0, q = np.divmod(xs, Mt)
            i0 = np.where(j0 % 2 == 0, q, Mt - 1 - q)
            i1, j1 = i0 + 1, j0 + 1
        else:
            nbr, nbc = _cdiv(Mt, mb), _cdiv(Nt, nb)
            n = nbr * nbc

            def at(x):
                bi, q = divmod(x, nbc)
                bj = q if bi % 2 == 0 else nbc - 1 - q
                return (list(range(bi * mb, min(Mt, (bi + 1) * mb))),
                        list(range(bj * nb, min(Nt, (bj + 1) * nb))))
            xs = np.arange(n)
            bi, q = np.divmod(xs, nbc)
            bj = np.where(bi % 2 == 0, q, nbc - 1 - q)
            i0, j0 = bi * mb, bj * nb
            i1, j1 = np.minimum(Mt, i0 + mb), np.minimum(Nt, j0 + nb)
        part = (i1 == Mt) & partial_m
        return n, at, np.stack([i0, i1, j0, j1, part.astype(np.int64)], axis=1)

    # ------------------------------------------------------------------ state
    def norm_instr(self, shift_words: int):
        """Instruction -> hashable with ACC slot addresses rotated by ``-shift_words``."""
        region = self.region

        def norm(ins):
            f = _ACC_FIELDS.get(ins.op)
            args = dict(ins.args)
            if f is not None and not (ins.op == "STORE" and args.get("bank", 0) != 0):
                for name in f:
                    a = args[name]
                    if a < region:
                        args[name] = (a - shift_words) % region
            return ins.op, tuple(args.items()), ins.deps
        return norm

    def rotate_instr(self, shift_words: int):
        region = self.region

        def rot(ins):
            f = _ACC_FIELDS.get(ins.op)
            if f is None or shift_words % region == 0 or (
                    ins.op == "STORE" and ins.args.get("bank", 0) != 0):
                return ins
            args = dict(ins.args)
            for name in f:
                if args[name] < region:
                    args[name] = (args[name] + shift_words) % region
            return isa.Instr(ins.op, args, ins.deps)
        return rot

    def compiler_sig(self, i0: int, j0: int) -> tuple:
        return (tuple(((k[1] - i0, k[2]), s) for k, s in self.act.keys.items()),
                tuple(((k[1] - j0, k[2]), s) for k, s in self.wgt.keys.items()),
                tuple((k[1] - j0, s) for k, s in self.const.keys.items()))

    def _rolled_last(self) -> list[np.ndarray]:
        dt, shift = self.deps, self.next_slot * self.slot_words
        out = []
        for b in BANKS:
            arr = dt.last[b]
            if b == ACC and shift:
                arr = arr.copy()
                arr[:self.region] = np.roll(arr[:self.region], -shift, axis=0)
            out.append(arr)
        return out

    def dep_sig(self) -> tuple:
        dt = self.deps
        lasts = self._rolled_last()
        norm = self.norm_instr(self.next_slot * self.slot_words)
        ports = [dt.port_last[k] for k in sorted(dt.port_last)]
        recent = []
        for u in range(_NU):
            w = dt.after[u]
            recent.append([w[i] for i in range(max(0, w.n - HIST), w.n)])
        out = []
        for v in range(_NU):
            c = dt.count[v]
            pieces = [L[:, :, v].ravel() for L in lasts]
            extra = np.array([pl[v] for pl in ports] + [dt.fence[v]]
                             + [vec[v] for u in range(_NU) for vec in recent[u]], np.int64)
            allv = np.concatenate([*pieces, extra])
            old = np.unique(allv[(c - allv > HIST) & (allv >= 0)])

            def enc(x, c=c, old=old):
                e = np.where(c - x <= HIST, c - x,
                             HIST + 1 + (len(old) - 1 - np.searchsorted(old, x)))
                return np.where(x < 0, -1, e)
            out.append((min(c, HIST), len(recent[v]), enc(allv).tobytes()))
            refs = np.unique(np.concatenate([*pieces, np.array([pl[v] for pl in ports],
                                                                np.int64)]))
            refs = refs[refs >= 0]
            out.append(tuple(zip(enc(refs).tolist(),
                                 [norm(dt.instrs[v][x]) for x in refs.tolist()],
                                 strict=True)))
        return tuple(out)

    def shift_state(self, K: int, dn: list[int], dtime: int, di: int, dj: int,
                    dslot: int) -> None:
        """Jump ``K`` periods: instruction counts by ``dn``, times by ``dtime``, tiles by
        ``(di, dj)``, accumulator ring by ``dslot`` slots (all already times K)."""
        dt = self.deps
        shift_words = (dslot % self.n_slots) * self.slot_words
        rot = self.rotate_instr(shift_words)
        for b in BANKS:
            arr = dt.last[b]
            for v in range(_NU):
                if dn[v]:
                    sl = arr[:, :, v]
                    sl[sl >= 0] += dn[v]
            if b == ACC and shift_words:
                arr[:self.region] = np.roll(arr[:self.region], shift_words, axis=0)
        for k in dt.port_last:
            dt.port_last[k] = [x + dn[v] if x >= 0 else x for v, x in enumerate(dt.port_last[k])]
        dt.fence = [x + dn[v] if x >= 0 else x for v, x in enumerate(dt.fence)]
        refs = []
        for v in range(_NU):
            vals = np.unique(np.concatenate([dt.last[b][:, :, v].ravel() for b in BANKS]
                                            + [np.array([dt.port_last[k][v]
                                                         for k in dt.port_last], np.int64)]))
            refs.append(vals[vals >= 0].tolist())     # already shifted
        for u in range(_NU):
            w_after, w_ins, n = dt.after[u], dt.instrs[u], dt.count[u]
            new_after = {}
            for i in range(max(0, n - HIST), n):
                vec = w_after[i]
                new_after[i + dn[u]] = [x + dn[v] if x >= 0 else x for v, x in enumerate(vec)]
            new_ins = {}
            for i in range(max(0, n - HIST), n):
                new_ins[i + dn[u]] = rot(w_ins[i])
            for x in refs[u]:
                if x not in new_ins:
                    new_ins[x] = rot(w_ins[x - dn[u]])
            dt.after[u] = _Window(new_after, n + dn[u])
            dt.instrs[u] = _Window(new_ins, n + dn[u])
            dt.count[u] = n + dn[u]
        dt.pc += sum(dn)
        self.sched.shift(dtime, dn, rot)
        for cache, d, tag in ((self.act, di, "A"), (self.wgt, dj, "B"), (self.const, dj, None)):
            if tag is None:
                cache.keys = OrderedDict(((k[0], k[1] + d), s) for k, s in cache.keys.items())
            else:
                cache.keys = OrderedDict(((k[0], k[1] + d, k[2]), s)
                                         for k, s in cache.keys.items())
        self.next_slot = (self.next_slot + dslot) % self.n_slots

    def snapshot(self) -> list[int]:
        return [*self.sched.counters(), *self.traffic.vals]

    def restore(self, vals: list[int]) -> None:
        ns = len(self.sched.counters())
        self.sched.set_counters(vals[:ns])
        self.traffic.vals = list(vals[ns:])

    # ------------------------------------------------------------------ driver
    def count(self, extrapolate: bool = True) -> Counts:
        n_blocks, at, desc = self.blocks()
        p = self.p
        self.emit(isa.config(0, p.rows, p.cols))
        hist: dict = {}
        x = 0
        self.jumps = 0
        self._armed = None
        while x < n_blocks:
            rows, cols = at(x)
            if extrapolate:
                x = self._maybe_jump(x, rows[0], cols[0], hist, n_blocks, desc)
                if x >= n_blocks:
                    break
                rows, cols = at(x)
            self.emit_block(rows, cols)
            self.prog.loads.clear()
            self.prog.stores.clear()
            x += 1
        self.emit(isa.done())
        return self._counts()

    def _maybe_jump(self, x, i0, j0, hist, n_blocks, desc) -> int:
        s = self.sched
        s.settle()
        norm = self.norm_instr(self.next_slot * self.slot_words)
        key = (self.compiler_sig(i0, j0), s.signature(norm))
        entry = hist.get(key)
        state = (x, self.snapshot(), s.fetch, list(self.deps.count), i0, j0, self.next_slot)
        if entry is None:
            hist[key] = (state, None)
            return x
        # the (costly) dependency signature is taken at one boundary per candidate period
        # and compared one period later
        armed = self._armed
        if armed is not None and x < armed:
            if entry[1] is None:
                hist[key] = (state, None)
            return x
        dsig = self.dep_sig()
        old, old_dsig = entry
        hist[key] = (state, dsig)
        self._armed = x + (x - old[0])
        if old_dsig is None or old_dsig != dsig:
            return x
        a, snap_a, f_a, cnt_a, ia, ja, slot_a = old
        P = x - a
        di, dj = i0 - ia, j0 - ja
        dvec = np.array([di, di, dj, dj, 0])
        if a + P >= n_blocks:
            return x
        bad = np.any(desc[a + P:] != desc[a:n_blocks - P] + dvec, axis=1)
        m = int(np.argmax(bad)) if bad.any() else len(bad)
        K = m // P
        if K < 1:
            return x
        snap_b = self.snapshot()
        self.restore([b + K * (b - a_) for a_, b in zip(snap_a, snap_b, strict=True)])
        self.shift_state(K, [K * (c - ca) for c, ca in zip(self.deps.count, cnt_a, strict=True)],
                         K * (s.fetch - f_a), K * di, K * dj,
                         K * ((self.next_slot - slot_a) % self.n_slots))
        self.jumps += 1
        self._armed = None
        x += K * P
        return x

    def _counts(self) -> Counts:
        p, s = self.p, self.sched
        if s.end is None:
            raise isa.IsaError("program ends without DONE")
        c = Counts()
        cnt = dict(s.cnt)
        cnt["total"] = s.end + 1
        cnt["dma_busy"] = s.union + union_length(s.pending)
        c.cycles = cnt["total"]
        c.stall = cnt["stall"]
        for key, unit in RTL_BUSY.items():
            c.busy[unit] = cnt[key]
        v = self.traffic.vals
        nb = len(BANK_KEYS)
        loads = {}
        for k, b in enumerate(BANK_KEYS):
            c.sram_reads[b] = v[k]
            c.sram_writes[b] = v[nb + k]
            loads[b] = v[2 * nb + k]
        c.host_out_bytes = v[3 * nb]
        c.mac_slots = v[3 * nb + 1]
        c.instructions = v[3 * nb + 2]
        for k, name in enumerate(OP_CLASSES):
            c.ops[name] = v[3 * nb + 3 + k]
        c.host_in_bytes = sum(loads.values())
        fp = self.deps.footprint()
        c.sram_peak = {key: int(np.count_nonzero(fp[b])) * p.word_bytes(b)
                       for b, key in enumerate(BANK_KEYS)}
        self.loads_by_bank = loads
        return c


def fast_program_counts(M: int, K: int, N: int, hw, *, bias: bool, requant: bool,
                        relu: bool, k_chunks: int | None = None,
                        extrapolate: bool = True) -> tuple[Counts, dict[str, int]]:
    """(Counts, LOAD bytes per bank) of the program :func:`hw.compiler.compile_gemm` would
    return, as :func:`sim.perf.program.timed_counts` would count it (``macs``, weight split
    left to the caller)."""
    p = as_params(hw)
    check_gemm(M, K, N, p, bias=bias, requant=requant, relu=relu)
    kmax = min(p.act_depth, p.wgt_depth) // 2
    if kmax < 1:
        from hw.compiler import CompileError
        raise CompileError("ACT and WGT banks must hold at least 2 words each; fix: raise "
                           "act_sram_kib / wgt_sram_kib")
    cands = [k_chunks] if k_chunks is not None else k_chunk_candidates(M, K, N, p)
    best = None
    for nk in cands:
        eng = _Stream(p, M, K, N, bias, requant, relu, nk)
        c = eng.count(extrapolate)
        key = (c.cycles, c.instructions)
        if best is None or key < best[0]:
            best = (key, c, eng.loads_by_bank)
    return best[1], best[2]


__all__ = ["fast_program_counts", "PORT_BANK"]
