"""VLN engine of the vector unit: LayerNorm of int16 rows (``model.intops.layernorm_i16``).

``VLN src, dst, rows, blocks, block, param``: a row is *block-padded*: ``blocks`` blocks of
``block`` elements, each block starting at a word boundary, so it takes ``bw = ceil(block /
cols)`` words per block and ``W = words = blocks * bw`` VMEM words (int16 lanes); element ``e``
of block ``b`` is lane ``e % cols`` of word ``b*bw + e // cols`` (``formats.block_lanes``). Row
``r`` is read from ``src + r*words``; its result (int8 or int16 values, sign-extended into the
lanes) goes to the words at ``dst + r*words``. The LayerNorm is over the ``D = blocks * block``
valid elements only: the *padding lanes* (lanes ``>= block - (bw - 1)*cols`` of the last word
of each block) are left out of ``S`` and ``Q`` (whatever they hold) and are written 0.
``PMEM[param]`` is the scalar parameter word (``PARAM_LAYOUTS["VLN"]``: ``eps``, ``m``, ``s``,
``out16``), ``PMEM[param + 1 + w]`` holds ``gamma_q``/``beta_q`` of the elements of row word
``w`` in the same lanes (``formats.pack_ln_features`` of the block-padded vectors; padding
lanes ignored). The rsqrt table is read from the RLUT port (entry ``i`` =
``intops.RSQRT_LUT[i]``). Per row, exactly as ``intops`` on the ``D`` valid elements:

* stats pass: ``S = sum x``, ``Q = sum x**2``; ``V = D*Q - S**2 + eps``;
* ``L = bit_length(V)``, ``k = floor((L - 7) / 2)``, ``u = V >> 2k`` (``V << -2k``),
  ``m_r = RLUT[u - 64]``, ``s_r = 9 + k``;
* normalize pass: ``c = D*x - S``; ``z = int32((c*m_r + 2**(s_r-1)) >> s_r)`` (0 if ``V == 0``);
  ``acc = z*gamma + beta``; ``y = sat8/sat16((acc*m + 2**(s-1)) >> s)`` (0 in padding lanes).

The start cycle computes ``bw``, ``W`` and ``D`` from the fields. With ``block`` a multiple of
``cols`` there is no padding and the result is that of one unpadded row of ``W`` words.

Each row is read twice (one stats pass and one normalize pass of ``W = words`` reads each,
one word per cycle). **Schedule** (``c`` = start cycle): cycle ``c`` latches the fields and
reads ``PMEM[param]``; the read passes follow back to back from cycle ``c + 1`` in the order

    S0, S1, gap, N0, S2, gap, N1, S3, gap, N2, ..., S(R-1), gap, N(R-2), N(R-1)

(``Sr`` / ``Nr``: the stats / normalize pass of row ``r``, ``W`` cycles each; ``gap``:
``G = max(0, 4 - W)`` idle cycles). With ``R = 1`` it is ``S0``, 4 idle cycles, ``N0``. So the
read phase lasts ``Lr = 2*W*R + (R - 1)*G`` cycles (``2*W + 4`` for ``R = 1``), the last read
is in cycle ``c + Lr``. The stats of the next row hide the per-row chain, whose timing is
(``t`` = cycle of the last stats read of row ``r``): ``t + 1`` last data, sums registered;
``t + 2`` ``V`` registered; ``t + 3`` bit length, ``u``, RLUT read; ``t + 4`` ``m_r`` arrives,
the row's context (``S``, ``m_r``, ``s_r``, ``V != 0``) is registered; pass ``Nr`` starts at or
after ``t + 5`` (the gap guarantees it) and no later than the next row's context register write
(``G <= 3``). A normalize read in cycle ``t`` (VMEM word and its gamma/beta PMEM word together)
goes through 4 stages: ``t + 1`` data, ``c`` registered; ``t + 2`` ``z`` registered; ``t + 3``
``acc`` registered; ``t + 4`` ``y`` (padding lanes 0) written to ``VMEM[dst + k]`` (``k``-th
normalized word). ``done`` = the last write = ``c + Lr + 4``: latency ``Lr + 4``
(``hw.vector.latency_arith.vln_latency``). ``rows == 0``, ``blocks == 0`` or ``block == 0``:
no-op, ``done`` at ``c + 1``.

In place (``dst == src``) is safe: every word is written after both of its reads.

Widths: exact for ``W`` up to 255 words (``D <= 255 * cols``; the ISA rejects longer rows),
``eps < 2**62`` (``V < 2**63``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned

from hw.opspec import cdiv
from hw.vector.elementwise import busy_logic, param_signals, round_const, saturate
from hw.vector.ports import ADDR_BITS, Engine

#: Idle cycles between a stats pass and the normalize pass that needs its result.
CHAIN = 4


class LayerNormEngine(Engine):
    """VLN: two-pass LayerNorm of int16 rows (see module docstring)."""

    OP = "VLN"
    PORTS = ("vmem_r", "vmem_w", "pmem_r", "rlut_r")

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        a = self.args
        d_max = 255 * C
        d_bits = d_max.bit_length()
        s_bits = (2**15 * d_max).bit_length() + 1            # signed sum
        q_bits = (2**30 * d_max).bit_length()                # unsigned sum of squares
        v_bits = max((2**30 * d_max * d_max).bit_length(), 62) + 1
        c_bits = (2**16 * d_max).bit_length() + 1            # signed D*x - S

        # ---- latched fields
        n_rows = Signal(8)
        n_words = Signal(8)          # W = blocks * bw
        bw_last = Signal(8)          # bw - 1: index of a block's last word
        tail_lanes = Signal(C)       # valid lanes of a block's last word
        d_val = Signal(d_bits)       # D = blocks * block
        feat0 = Signal(ADDR_BITS)
        go = self.start & (a.rows != 0) & (a.blocks != 0) & (a.block != 0)
        p_latch = Signal()
        m.d.sync += p_latch.eq(self.start)
        p = param_signals(m, "VLN", self.pmem_r.data, p_latch)
        bw = Signal(12)                                      # ceil(block / cols)
        m.d.comb += bw.eq(cdiv(a.block, C))
        last_n = a.block - (bw - 1) * C                       # 1 .. C valid lanes
        with m.If(go):
            m.d.sync += [n_rows.eq(a.rows), n_words.eq(a.blocks * bw), bw_last.eq(bw - 1),
                         d_val.eq(a.blocks * a.block), feat0.eq(a.param + 1),
                         tail_lanes.eq(Cat(*[last_n > j for j in range(C)]))]
        gap_len = Mux(n_words >= CHAIN, 0, CHAIN - n_words)   # G = max(0, 4 - W)

        # ---- read sequencer
        sp = Signal(ADDR_BITS)       # next stats read
        npt = Signal(ADDR_BITS)      # next normalize read
        fp = Signal(ADDR_BITS)       # next gamma/beta PMEM word
        wcnt = Signal(8)             # word within the pass
        bcnt = Signal(8)             # word within the block
        s_done = Signal(9)           # stats passes completed
        n_done = Signal(9)           # normalize passes completed
        gcnt = Signal(3)
        last_w = (wcnt + 1) == n_words

        is_stats = Signal()
        is_norm = Signal()
        is_final = Signal()          # the last normalize read of the instruction
        load_ctx = Signal()

        with m.FSM():
            with m.State("IDLE"), m.If(go):
                m.d.sync += [sp.eq(a.src), npt.eq(a.src), fp.eq(a.param + 1),
                             wcnt.eq(0), bcnt.eq(0), s_done.eq(0), n_done.eq(0)]
                m.next = "STATS"
            with m.State("STATS"):
                m.d.comb += is_stats.eq(1)
                m.d.sync += [sp.eq(sp + 1), wcnt.eq(wcnt + 1)]
                with m.If(last_w):
                    m.d.sync += [wcnt.eq(0), s_done.eq(s_done + 1)]
                    with m.If((s_done == 0) & (n_rows >= 2)):
                        m.next = "STATS"
                    with m.Else():
                        gap = Mux(n_rows == 1, CHAIN, gap_len)
                        m.d.sync += gcnt.eq(gap - 1)
                        with m.If(gap == 0):
                            m.next = "NORM"
                        with m.Else():
                            m.next = "GAP"
            with m.State("GAP"):
                m.d.sync += gcnt.eq(gcnt - 1)
                with m.If(gcnt == 0):
                    m.next = "NORM"
            with m.State("NORM"):
                m.d.comb += [is_norm.eq(1), load_ctx.eq(wcnt == 0)]
                m.d.sync += [npt.eq(npt + 1), fp.eq(fp + 1), wcnt.eq(wcnt + 1)]
                with m.If(last_w):
                    m.d.sync += [wcnt.eq(0), n_done.eq(n_done + 1), fp.eq(feat0)]
                    with m.If(s_done < n_rows):
                        m.next = "STATS"
                    with m.Elif(n_done + 1 < n_rows):
                        m.next = "NORM"
                    with m.Else():
                        m.d.comb += is_final.eq(1)
                        m.next = "IDLE"

        # a pass ends with a block's last word, so bcnt restarts with every pass
        with m.If(is_stats | is_norm):
            m.d.sync += bcnt.eq(Mux(bcnt == bw_last, 0, bcnt + 1))

        m.d.comb += [
            self.vmem_r.en.eq(is_stats | is_norm),
            self.vmem_r.addr.eq(Mux(is_stats, sp, npt)),
            self.pmem_r.en.eq(self.start | is_norm),
            self.pmem_r.addr.eq(Mux(self.start, a.param, fp)),
        ]

        # ---- data-stage tags (the read of the previous cycle)
        d_stats = Signal()
        d_first = Signal()
        d_last = Signal()
        d_norm = Signal()
        d_final = Signal()
        d_tail = Signal()            # the word is the last of its block: padding lanes
        m.d.sync += [d_stats.eq(is_stats), d_first.eq(wcnt == 0), d_last.eq(last_w),
                     d_norm.eq(is_norm), d_final.eq(is_final), d_tail.eq(bcnt == bw_last)]
        x = [self.vmem_r.data[j] for j in range(C)]
        valid = [~d_tail | tail_lanes[j] for j in range(C)]
        xs = [Mux(valid[j], x[j], 0) for j in range(C)]       # padding lanes out of S, Q

        # ---- stats accumulation and the per-row chain
        acc_s = Signal(signed(s_bits))
        acc_q = Signal(unsigned(q_bits))
        sum_x = sum(xs[1:], xs[0])
        sum_q = sum((xj * xj for xj in xs[1:]), xs[0] * xs[0])
        new_s = Mux(d_first, 0, acc_s) + sum_x
        new_q = Mux(d_first, 0, acc_q) + sum_q
        c1_v = Signal()
        c1_s = Signal(signed(s_bits))
        c1_q = Signal(unsigned(q_bits))
        with m.If(d_stats):
            m.d.sync += [acc_s.eq(new_s), acc_q.eq(new_q)]
        m.d.sync += c1_v.eq(d_stats & d_last)
        with m.If(d_stats & d_last):
            m.d.sync += [c1_s.eq(new_s), c1_q.eq(new_q)]

        c2_v = Signal()
        c2_s = Signal(signed(s_bits))
        v_reg = Signal(unsigned(v_bits))
        m.d.sync += c2_v.eq(c1_v)
        with m.If(c1_v):
            m.d.sync += [v_reg.eq(d_val * c1_q - c1_s * c1_s + p["eps"]), c2_s.eq(c1_s)]

        # bit length, k, u: u = ((V << 8) >> (2k + 8))[:8] covers both shift directions
        bitlen = Const(0, 7)
        for i in range(v_bits):
            bitlen = Mux(v_reg[i], i + 1, bitlen)
        k = Signal(signed(8))
        m.d.comb += k.eq((bitlen - 7) >> 1)
        sh = Signal(7)
        m.d.comb += sh.eq(2 * k + 8)
        u = Signal(8)
        m.d.comb += u.eq((Cat(Const(0, 8), v_reg) >> sh)[:8])
        m.d.comb += [self.rlut_r.en.eq(c2_v), self.rlut_r.addr.eq((u - 64)[:8])]
        c3_v = Signal()
        c3_s = Signal(signed(s_bits))
        c3_sr = Signal(6)
        c3_pos = Signal()
        m.d.sync += c3_v.eq(c2_v)
        with m.If(c2_v):
            m.d.sync += [c3_s.eq(c2_s), c3_sr.eq(k + 9), c3_pos.eq(v_reg != 0)]

        pend_s = Signal(signed(s_bits))
        pend_m = Signal(16)
        pend_sr = Signal(6)
        pend_pos = Signal()
        with m.If(c3_v):
            m.d.sync += [pend_s.eq(c3_s), pend_m.eq(self.rlut_r.data), pend_sr.eq(c3_sr),
                         pend_pos.eq(c3_pos)]
        act_s = Signal(signed(s_bits))
        act_m = Signal(16)
        act_sr = Signal(6)
        act_pos = Signal()
        with m.If(load_ctx):
            m.d.sync += [act_s.eq(pend_s), act_m.eq(pend_m), act_sr.eq(pend_sr),
                         act_pos.eq(pend_pos)]

        # ---- normalize pipeline
        n1_v, n1_last, n1_pos = Signal(), Signal(), Signal()
        n1_m = Signal(16)
        n1_sr = Signal(6)
        n1_c = [Signal(signed(c_bits), name=f"n1_c{j}") for j in range(C)]
        n1_g = [Signal(signed(8), name=f"n1_g{j}") for j in range(C)]
        n1_b = [Signal(signed(32), name=f"n1_b{j}") for j in range(C)]
        n1_ok = Signal(C)            # valid (non-padding) lanes of the word
        m.d.sync += [n1_v.eq(d_norm), n1_last.eq(d_final)]
        with m.If(d_norm):
            m.d.sync += [n1_m.eq(act_m), n1_sr.eq(act_sr), n1_pos.eq(act_pos),
                         n1_ok.eq(Cat(valid))]
            for j in range(C):
                lane = self.pmem_r.data[j]
                m.d.sync += [n1_c[j].eq(d_val * x[j] - act_s), n1_g[j].eq(lane[32:40]),
                             n1_b[j].eq(lane[0:32])]

        n2_v, n2_last = Signal(), Signal()
        n2_z = [Signal(signed(32), name=f"n2_z{j}") for j in range(C)]
        n2_g = [Signal(signed(8), name=f"n2_g{j}") for j in range(C)]
        n2_b = [Signal(signed(32), name=f"n2_b{j}") for j in range(C)]
        n2_ok = Signal(C)
        m.d.sync += [n2_v.eq(n1_v), n2_last.eq(n1_last)]
        rnd_r = round_const(n1_sr)
        with m.If(n1_v):
            m.d.sync += n2_ok.eq(n1_ok)
            for j in range(C):
                z = ((n1_c[j] * n1_m + rnd_r) >> n1_sr)[:32]
                m.d.sync += [n2_z[j].eq(Mux(n1_pos, z, 0)), n2_g[j].eq(n1_g[j]),
                             n2_b[j].eq(n1_b[j])]

        n3_v, n3_last = Signal(), Signal()
        n3_acc = [Signal(signed(41), name=f"n3_acc{j}") for j in range(C)]
        n3_ok = Signal(C)
        m.d.sync += [n3_v.eq(n2_v), n3_last.eq(n2_last)]
        with m.If(n2_v):
            m.d.sync += n3_ok.eq(n2_ok)
            for j in range(C):
                m.d.sync += n3_acc[j].eq(n2_z[j] * n2_g[j] + n2_b[j])

        wp = Signal(ADDR_BITS)
        with m.If(go):
            m.d.sync += wp.eq(a.dst)
        with m.Elif(n3_v):
            m.d.sync += wp.eq(wp + 1)
        rnd = round_const(p["s"])
        for j in range(C):
            y = (n3_acc[j] * p["m"] + rnd) >> p["s"]
            y_sat = Mux(p["out16"], saturate(y, 16), saturate(y, 8))
            m.d.comb += self.vmem_w.data[j].eq(Mux(n3_ok[j], y_sat, 0))
        zero_done = Signal()
        m.d.sync += zero_done.eq(self.start & ~go)
        m.d.comb += [self.vmem_w.addr.eq(wp), self.vmem_w.en.eq(n3_v),
                     self.done.eq((n3_v & n3_last) | zero_done)]
        busy_logic(m, self)
        return m


__all__ = ["CHAIN", "LayerNormEngine"]
