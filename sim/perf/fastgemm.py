"""Exact GEMM counts without timing every instruction: periodic-state extrapolation.

The GEMM compiler (:mod:`hw.compiler`) emits its program block by block (blocks of output
tiles in serpentine order, :meth:`hw.compiler._Compiler.emit_block`) and the timing model
(:func:`hw.timing.schedule`) keeps a small state. :func:`fast_program_counts` streams the
blocks through the real compiler code and the real dependency tracker
(:class:`hw.deps.DepTracker`), times each instruction with the timing model's own
:class:`hw.timing.Scheduler` (the loop of :func:`hw.timing.schedule`, one instruction at a
time) and sums every counter as it goes
(traffic from the opcode table's ``traffic`` rules, as :mod:`sim.perf.program` does).

At each block boundary it takes a *normalised* signature of the whole state, such that two
boundaries with equal signatures behave identically from there on, up to a translation of
the tiles (the next block's first tile is the origin), of time (the fetch cycle is the
origin), of the per-unit instruction indices, and a relabelling of equal-sized SRAM slots:

* compiler: each LRU cache's keys relative to the origin, in recency order (its slots are
  interchangeable, so they are named by recency); a cache holding every key it can be asked
  for never misses again, and only its slots' contents matter. The accumulator ring is
  read from the next slot on (rotation);
* timing: recent queue pops and completions relative to the fetch cycle (times at or before
  it can no longer delay anything and collapse to one value), the last pop exactly, the
  previous instruction's opcode and ``k`` (the spacing rule), host transfers not yet merged
  into the ``dma_busy`` union (the part no later transfer can touch is added as it goes);
* dependencies (the costly part, :meth:`_Stream.dep_sig`, taken only where the cheap parts
  repeat, and only after a cheaper necessary condition, :meth:`_Stream.coarse_dep_sig`):
  per unit, an index at or below every used unit's latest "surely complete" index can no
  longer cause a dependency (-2); otherwise its exact age when at most 64 (a dependency
  field reaches 63 back) and beyond that its rank among the older ones (the tracker only
  compares such indices and takes maxima); never-touched words stay distinct (-1, for the
  SRAM footprint); readers of the words of fully resident caches are irrelevant (those
  words are never written again); of MATMUL writers, the mode and the (ring-relative)
  accumulator address (the only fields the ``ordered_raw`` rule reads).

When the signature at block ``b`` equals the one at block ``a`` and the block sequence from
``a`` on repeats one period ``P = b - a`` later translated by the same tile offset (same
block shapes, same partial last tile row), the state ``K`` periods later is the state at
``b`` shifted by ``K`` times the per-period offsets, and every counter -- cycles, busy,
stall, traffic, instruction count, touched words per bank -- grows by ``K`` times its
per-period delta (they are functions of the state trajectory). The engine jumps there and
goes on simulating (the transient, the ends of block rows, the tail and DONE are
simulated). Jumps never permute the real slots: the state reached equals the real one up to
a relabelling, which changes no counter.

``(k_chunks, order)`` candidates are evaluated the same way and chosen as
:func:`hw.compiler.compile_gemm` does (:func:`hw.compiler.pick_plan`: fewest cycles, then
fewest instructions; pruned by lower bounds, and a candidate gives up once it is sure to
lose). ``tests/test_fast_gemm.py`` checks every field against the full compile + timing
(``sim.perf.gemm.gemm_counts_reference``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from hw import isa
from hw.bounds import gemm_fill_drain_bound
from hw.compiler import (
    _cdiv,
    _Compiler,
    check_gemm,
    orders,
    pick_plan,
    plan_candidates,
    shell_order,
)
from hw.isa import DEP_MAX
from hw.timing import HISTORY, Scheduler, union_length
from hw.uarch import ACC, ACT, BANK_KEYS, BANKS, QUEUE_DEPTH, UNITS, WGT, as_params
from sim.perf.counts import OP_CLASSES, RTL_BUSY, Counts

#: Per unit, how many recent instruction indices / times matter exactly.
HIST = HISTORY
#: Boundaries with the same cheap signature kept for the dependency-state comparison.
KEEP = 4
#: Programs of at most this many blocks are simulated block by block: the signatures would
#: cost more than a jump could save (the state settles after ~64-130 blocks).
MIN_BLOCKS = 256
#: No signatures before this block (the dependency fields reach 63 instructions back: the
#: state before it cannot repeat later).
WARMUP = 16
_NU = len(UNITS)


ACT_B, WGT_B = ACT, WGT
_GEMM_BANKS = (ACT, WGT, ACC)


def _rel(key: tuple, origin: int) -> tuple:
    """An LRU key with its tile index relative to ``origin``."""
    return (key[0], key[1] - origin, *key[2:])


def _prev_key(ins) -> tuple:
    """What the timing model reads of a unit's previous instruction: its opcode, and the
    ``k`` of a MATMUL (the spacing rule, hw/opcodes.py)."""
    return ins.op, ins.args.get("k")


class _Unsupported(Exception):
    """A jump the engine cannot carry out (never seen; the caller then simulates every
    block)."""


class _Beaten(Exception):
    """The candidate being counted is already slower than the best one (it gives up)."""


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


class _Sched(Scheduler):
    """:class:`hw.timing.Scheduler` with the normalised signature, counter snapshots and
    time shifts the periodic extrapolation needs."""

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
    """Per-instruction traffic sums (the ``traffic`` rules, as :mod:`sim.perf.program`),
    one cached increment vector per distinct (opcode, fields)."""

    def __init__(self, p):
        self.p = p
        self._sum = np.zeros(3 * len(BANK_KEYS) + 3 + len(OP_CLASSES), np.int64)
        self._inc: dict = {}

    def add(self, ins) -> None:
        key = (ins.op, tuple(ins.args.values()))
        inc = self._inc.get(key)
        if inc is None:
            t = ins.spec.need("traffic")(ins.args, self.p)
            inc = self._inc[key] = np.array([
                *(t.reads[b] for b in BANK_KEYS), *(t.writes[b] for b in BANK_KEYS),
                *(t.host_in[b] for b in BANK_KEYS), t.host_out, t.mac_slots, 1,
                *(t.ops.get(k, 0) for k in OP_CLASSES)], np.int64)
        self._sum += inc

    @property
    def vals(self) -> list[int]:
        return self._sum.tolist()

    @vals.setter
    def vals(self, values: list[int]) -> None:
        self._sum = np.array(values, np.int64)


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
        self.used_units = [UNITS.index(u) for u in ("LOAD", "MATMUL", "STORE")] \
            + ([UNITS.index("REQUANT")] if self.prog.requant else [])

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
        if order == "shells":     # not translation-periodic: every block is simulated
            tiles = shell_order(Mt, Nt)
            n = len(tiles)

            def at(x):
                return [tiles[x][0]], [tiles[x][1]]
            i0, j0 = (np.array(v, dtype=np.int64) for v in zip(*tiles, strict=True))
            i1, j1 = i0 + 1, j0 + 1
        elif order == "rows":
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
    def compiler_sig(self, i0: int, j0: int) -> tuple:
        """The LRU caches, tile indices relative to the next block's first tile ``(i0, j0)``
        (slots: by recency, see :meth:`dep_sig`); a cache that holds every key it can be
        asked for never misses again, so only its contents (in :meth:`dep_sig`) matter."""
        out = []
        for cache, total, origin in self._caches():
            if len(cache.keys) == total:
                out.append("all")
            else:
                out.append(tuple(_rel(k, origin(i0, j0)) for k in cache.keys))
        return tuple(out)

    def _caches(self):
        return ((self.act, self.Mt * self.nk, lambda i0, j0: i0),
                (self.wgt, self.Nt * self.nk, lambda i0, j0: j0),
                (self.const, self.Nt, lambda i0, j0: j0))

    def _slot_parts(self, E: np.ndarray, cache, total: int, origin: int) -> tuple:
        """Canonical form of the slots of one LRU cache in encoded tracker state ``E``."""
        used = [s for s in cache.keys.values()]
        blocks = [E[cache.base - self._bank_base(cache) + s * cache.words:
                    cache.base - self._bank_base(cache) + (s + 1) * cache.words]
                  for s in used]
        if len(cache.keys) != total:
            return tuple(b.tobytes() for b in blocks)
        # every key resident: slots whose words hold no live index are interchangeable
        inert, live, live_keys = [], [], []
        for k, b in zip(cache.keys, blocks, strict=True):
            if bool((b < 0).all()):
                inert.append((_rel(k, origin), b.tobytes()))
            else:
                live.append((_rel(k, origin), b.tobytes()))
                live_keys.append(k)
        if len({c for _, c in inert}) <= 1:
            self._live[id(cache)] = live_keys
            return ("all", len(inert), inert[0][1] if inert else None,
                    tuple(sorted(live)))
        self._live[id(cache)] = list(cache.keys)
        return ("all", tuple(sorted(inert + live)))

    def _bank_base(self, cache) -> int:
        return self.const.base if cache is self.const else 0

    def coarse_dep_sig(self) -> tuple:
        """Part of what :meth:`dep_sig` encodes (the recent "surely complete" vectors and the
        shared ports, old indices not ranked): equal whenever :meth:`dep_sig` is."""
        dt = self.deps
        recent = [[w[i] for i in range(max(0, w.n - HIST), w.n)] for w in dt.after]
        ports = [dt.port_last[k] for k in sorted(dt.port_last)]
        out = []
        for v in self.used_units:
            c = dt.count[v]
            fl = min((dt.after[u][-1][v] if dt.count[u] else -1) for u in self.used_units)
            vals = [pl[v] for pl in ports] + [dt.fence[v]] + [vec[v] for r in recent
                                                              for vec in r]
            out.append((min(c, HIST), tuple(len(r) for r in recent),
                        tuple(-2 if x <= fl else min(c - x, HIST + 1) for x in vals)))
        return tuple(out)

    def dep_sig(self, i0: int, j0: int) -> tuple:
        """The dependency tracker's state, normalised (module docstring): per unit, indices
        no later instruction can wait for (at or below every used unit's latest "surely
        complete" index) as one token (-2), untouched words as -1, others by exact age up to
        ``HIST`` and by rank beyond; slots in canonical order (LRU recency, accumulator ring
        from the next slot, fully resident caches by key relative to the next block)."""
        dt = self.deps
        used = self.used_units
        self._live = {}
        recent = [[w[i] for i in range(max(0, w.n - HIST), w.n)] for w in dt.after]
        ports = [dt.port_last[k] for k in sorted(dt.port_last)]
        # a GEMM program touches ACT, WGT and ACC only, with the units in ``used`` only
        lasts = [dt.last[b] for b in _GEMM_BANKS]
        enc_last = [np.full(L.shape, -1, np.int64) for L in lasts]
        # the words of a fully resident cache are never written again: their readers are
        # irrelevant (only a write waits for readers)
        irr = [np.zeros(L.shape[0], bool) for L in lasts]
        for cache, total, _ in self._caches():
            if cache.n and len(cache.keys) == total:
                bank = _GEMM_BANKS.index(ACC if cache is self.const else
                                         (ACT_B if cache is self.act else WGT_B))
                irr[bank][cache.base:cache.base + len(cache.keys) * cache.words] = True
        extras = []
        matmul = UNITS.index("MATMUL")
        mm_refs = None
        for v in used:
            c = dt.count[v]
            fl = min((dt.after[u][-1][v] if dt.count[u] else -1) for u in used)
            cols = [L[:, :, v] for L in lasts]
            extra = np.array([pl[v] for pl in ports] + [dt.fence[v]]
                             + [vec[v] for u in range(_NU) for vec in recent[u]], np.int64)
            pool = np.concatenate([*(x[:, 0][x[:, 0] > fl] for x in cols),
                                   *(x[:, 1][(x[:, 1] > fl) & ~m] for x, m in zip(cols, irr,
                                                                                 strict=True)),
                                   extra[extra > fl]])
            old = np.unique(pool[c - pool > HIST])

            def enc(x, c=c, old=old, fl=fl):
                e = np.where(c - x <= HIST, c - x,
                             HIST + 1 + (len(old) - 1 - np.searchsorted(old, x)))
                return np.where(x < 0, -1, np.where(x <= fl, -2, e))
            for k, col in enumerate(cols):
                e = enc(col)
                if irr[k].any():
                    r = e[:, 1]
                    r[irr[k]] = np.where(r[irr[k]] == -1, -1, -3)
                enc_last[k][:, :, v] = e
            # outside the words' footprint, "none" and "surely complete" act alike
            extras.append((min(c, HIST), len(recent[v]),
                           np.where(extra <= fl, -2, enc(extra)).tobytes()))
            if v == matmul:
                # the tracker reads the instruction of a writer only (ordered_raw)
                vals = np.unique(np.concatenate([x[:, 0][x[:, 0] > fl] for x in cols]))
                region, sw, ns = self.region, self.slot_words, self.next_slot
                refs = []
                for x, code in zip(vals.tolist(), enc(vals).tolist(), strict=True):
                    ins = dt.instrs[v][x]
                    acc = ins.args["acc"]
                    acc = (acc // sw - ns) % self.n_slots * sw + acc % sw if acc < region \
                        else acc
                    refs.append((code, ins.args["mode"], acc))
                mm_refs = tuple(refs)
        parts = [tuple(extras), mm_refs]
        E_act, E_wgt, E_acc = enc_last
        for E, cache, total, origin in ((E_act, self.act, self.Mt * self.nk, i0),
                                        (E_wgt, self.wgt, self.Nt * self.nk, j0)):
            parts.append(self._slot_parts(E, cache, total, origin))
            parts.append(E[len(cache.keys) * cache.words:].tobytes())
        region = self.region
        ring = np.roll(E_acc[:region], -self.next_slot * self.slot_words, axis=0)
        parts.append(ring.tobytes())
        cw = self.const_words
        if self.const.n:
            parts.append(self._slot_parts(E_acc[region:], self.const, self.Nt, j0))
            parts.append(E_acc[region + len(self.const.keys) * cw:].tobytes())
        else:
            parts.append(E_acc[region:].tobytes())
        return tuple(parts)

    def touched(self) -> list[int]:
        return [int(np.count_nonzero((L >= 0).any(axis=(1, 2)))) for L in self.deps.last]

    def shift_state(self, K: int, dn: list[int], dtime: int, di: int, dj: int) -> None:
        """Jump ``K`` periods: instruction counts by ``dn``, times by ``dtime``, tiles by
        ``(di, dj)`` (all already times K). Slots are not permuted: the state reached is
        equivalent to the real one up to a relabelling of slots."""
        dt = self.deps
        for b in BANKS:
            arr = dt.last[b]
            for v in range(_NU):
                if dn[v]:
                    sl = arr[:, :, v]
                    sl[sl >= 0] += dn[v]
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
            new_ins = {}
            for i in range(max(0, n - HIST), n):
                vec = w_after[i]
                new_after[i + dn[u]] = [x + dn[v] if x >= 0 else x for v, x in enumerate(vec)]
                new_ins[i + dn[u]] = w_ins[i]
            for x in refs[u]:
                if x not in new_ins:
                    new_ins[x] = w_ins[x - dn[u]]
            dt.after[u] = _Window(new_after, n + dn[u])
            dt.instrs[u] = _Window(new_ins, n + dn[u])
            dt.count[u] = n + dn[u]
        dt.pc += sum(dn)
        self.sched.shift(dtime, dn, lambda ins: ins)
        for cache, total, d in ((self.act, self.Mt * self.nk, di),
                                (self.wgt, self.Nt * self.nk, dj),
                                (self.const, self.Nt, dj)):
            def moved(k, d=d):
                return (k[0], k[1] + d, *k[2:])
            if len(cache.keys) != total or not d:
                cache.keys = OrderedDict((moved(k), s) for k, s in cache.keys.items())
                continue
            # fully resident: the slots with live words move with the tiles, the others
            # (interchangeable) take the remaining keys
            keys = OrderedDict()
            for k in self._live[id(cache)]:
                keys[moved(k)] = cache.keys[k]
            taken = set(keys.values())
            rest = [s for s in cache.keys.values() if s not in taken]
            free = [k for k in cache.keys if k not in keys]
            if len(free) != len(rest) or len(keys) + len(free) != total:
                raise _Unsupported("resident cache relabelling out of range")
            keys.update(zip(free, rest, strict=True))
            cache.keys = keys

    def snapshot(self) -> list[int]:
        return [*self.sched.counters(), *self.traffic.vals]

    def restore(self, vals: list[int]) -> None:
        ns = len(self.sched.counters())
        self.sched.set_counters(vals[:ns])
        self.traffic.vals = list(vals[ns:])

    # ------------------------------------------------------------------ driver
    def count(self, extrapolate: bool = True, give_up_after: int | None = None) -> Counts:
        """Counts of the whole program (``extrapolate=False``: simulate every block).
        Afterwards ``jumps``/``jump_log`` (``(a, b, K)`` per jump) and ``simulated`` (blocks
        emitted) say how much was skipped. With ``give_up_after``, raises :class:`_Beaten`
        as soon as the total is sure to exceed it: DONE dispatches after the fetch cycle, and
        the remaining MATMULs' k-steps follow the last one's at their array floor."""
        n_blocks, at, desc = self.blocks()
        extrapolate = extrapolate and n_blocks > MIN_BLOCKS
        # where a new row (column, in "cols" order) of blocks starts: the whole state repeats
        # there every row or two, so its signatures are taken at the first visit
        outer = 2 if self.block_plan()[0] == "cols" else 0
        starts = np.zeros(n_blocks, bool)
        starts[1:] = desc[1:, outer] != desc[:-1, outer]
        if give_up_after is not None:
            # array floor of the blocks after each one: its MATMULs' last k-steps come at
            # least max(k, drain gap) apart (hw.compiler.array_floor)
            g = self.p.drain_gap
            last_k = self.chunks[-1][1] - self.chunks[-1][0]
            per_tile = (self.nk - 1) * max(self.kc, g) + max(last_k, g)
            tiles = (desc[:, 1] - desc[:, 0]) * (desc[:, 3] - desc[:, 2]) * per_tile
            after = np.concatenate([np.cumsum(tiles[::-1])[::-1][1:], [0]]).tolist()
            mm = UNITS.index("MATMUL")
        p = self.p
        self.emit(isa.config(0, p.rows, p.cols))
        hist: dict = {}
        x = 0
        self.jumps = self.simulated = 0
        self.jump_log = []
        self._armed: dict[int, int] = {}
        self._landed = 0
        self.extra_touched = [0] * len(BANKS)
        while x < n_blocks:
            rows, cols = at(x)
            if extrapolate and x >= WARMUP:
                # a jump lands on a boundary too (often a row start): look again there
                landed = self._maybe_jump(x, rows[0], cols[0], hist, n_blocks, desc,
                                          bool(starts[x]))
                if landed != x:
                    x = landed
                    continue
            self.emit_block(rows, cols)
            if give_up_after is not None:
                sc = self.sched
                k_end = sc.pops[mm][-1] + sc.prev[mm].args["k"]  # its last k-step + 1
                if sc.fetch + 2 > give_up_after or k_end + after[x] > give_up_after:
                    raise _Beaten
            self.simulated += 1
            self.prog.loads.clear()
            self.prog.stores.clear()
            x += 1
        self.emit(isa.done())
        return self._counts()

    def _maybe_jump(self, x, i0, j0, hist, n_blocks, desc, eager: bool = False) -> int:
        """At the boundary before block ``x`` (first tile ``(i0, j0)``): the block to emit
        next, after jumping over repeated periods if the state repeats. ``eager``: take every
        signature at the first visit of this cheap signature (row starts: a repeat there is
        two rows away, and waiting for three visits would simulate two more)."""
        s = self.sched
        s.settle()
        key = (self.compiler_sig(i0, j0), s.signature(_prev_key))
        entries = hist.setdefault(key, [])
        if entries and not eager and entries[-1][0][0] < self._landed:
            entries.clear()     # from before the last jump: start this key's history again
        state = (x, self.snapshot(), s.fetch, list(self.deps.count), i0, j0)
        if not entries:
            if eager:
                entries.append([state, self.coarse_dep_sig(), self.dep_sig(i0, j0),
                                self.touched()])
            else:
                entries.append([state, None, None, None])
            return x
        # the (costly) dependency signature is taken at one boundary per candidate period
        # and compared one period later
        period = x - entries[-1][0][0]
        pending = {t: q for t, q in self._armed.items() if t >= x}
        self._armed = pending
        if not eager and pending and x not in pending and period >= min(pending.values()):
            if entries[-1][1] is None:
                entries[-1] = [state, None, None, None]
            return x
        pending[x + period] = period
        # a cheap necessary condition first (recent dependency state, old indices unranked),
        # against the last few boundaries with this key: the dependency state may repeat
        # with a multiple of the key's period
        coarse = self.coarse_dep_sig()
        same = [e for e in reversed(entries) if e[1] == coarse]
        new = [state, coarse, None, None]
        entries.append(new)
        del entries[:-KEEP]
        if not same:
            return x
        dsig = self.dep_sig(i0, j0)
        new[2], new[3] = dsig, self.touched()
        touched = new[3]
        # the most recent equal state whose period the block sequence repeats, translated
        for old, _, old_dsig, touched_a in same:
            if old_dsig != dsig:
                continue
            old_touched = touched_a
            a, snap_a, f_a, cnt_a, ia, ja = old
            P = x - a
            di, dj = i0 - ia, j0 - ja
            if a + P >= n_blocks:
                continue
            dvec = np.array([di, di, dj, dj, 0])
            bad = np.any(desc[a + P:] != desc[a:n_blocks - P] + dvec, axis=1)
            K = (int(np.argmax(bad)) if bad.any() else len(bad)) // P
            if K >= 1:
                break
        else:
            return x
        snap_b = self.snapshot()
        self.restore([b + K * (b - a_) for a_, b in zip(snap_a, snap_b, strict=True)])
        self.extra_touched = [e + K * (t - t0) for e, t, t0 in
                              zip(self.extra_touched, touched, old_touched, strict=True)]
        self.shift_state(K, [K * (c - ca) for c, ca in zip(self.deps.count, cnt_a, strict=True)],
                         K * (s.fetch - f_a), K * di, K * dj)
        self.jumps += 1
        self.jump_log.append((a, x, K))
        self._armed = {}
        x += K * P
        self._landed = x
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
        c.sram_peak = {key: (int(np.count_nonzero(fp[b])) + self.extra_touched[b])
                       * p.word_bytes(b)
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
    if k_chunks is not None:
        cands = [(k_chunks, order) for order in orders(M, K, N, p, k_chunks)]
    else:
        cands = plan_candidates(M, K, N, p)

    def run(nk: int, order: str, best: int | None):
        # shells never repeat translated (SHELL_LIMIT bounds them): no signatures
        ex = extrapolate and order != "shells"
        try:
            try:
                eng = _Stream(p, M, K, N, bias, requant, relu, nk, order)
                c = eng.count(ex, give_up_after=best)
            except _Unsupported:      # a state the jump cannot relabel: simulate it all
                eng = _Stream(p, M, K, N, bias, requant, relu, nk, order)
                c = eng.count(False, give_up_after=best)
        except _Beaten:
            return None
        return c.cycles, c.instructions, (c, eng.loads_by_bank)
    return pick_plan(cands, M, K, N, p, run,
                     gemm_fill_drain_bound(M, K, N, p, bias=bias, requant=requant))


__all__ = ["fast_program_counts"]
