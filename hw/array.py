"""Output-stationary systolic array of :class:`hw.pe.MacPE` cells with an in-place drain."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.pe import MacPE


class SystolicArray(wiring.Component):
    """``rows x cols`` int8 MAC array computing one output tile per pass.

    Each cycle the feeder presents one k-step of a tile: ``a[i] = A[i, k]`` (a column of the
    A tile), ``b[j] = B[k, j]`` (a row of the B tile), with ``valid``, ``first`` (k = 0) and
    ``last`` (k = K-1). Internally row ``i`` is delayed by ``i`` cycles and column ``j`` by
    ``j`` cycles, so PE(i, j) sees the step entering at cycle ``t`` at ``t + i + j``. Tiles may
    follow each other without gaps (the ``first`` flag restarts the accumulators).

    Drain: PE(i, j) captures its finished sum in its result register. If the last step of a
    tile entered at cycle ``t``, row ``i`` of the result is presented on ``out_data`` with
    ``out_valid`` and ``out_row = i`` during cycle ``t + cols + i`` (``pre_valid``/``pre_row``
    announce it one cycle earlier, for a read-modify-write). The result registers are read in
    place, so the last steps of consecutive tiles must enter at least ``max(rows, cols)``
    cycles apart (the controller enforces it; see ``AccelParams.drain_gap``).
    """

    def __init__(self, rows: int, cols: int, in_bits: int = 8, acc_bits: int = 32):
        self.rows, self.cols = rows, cols
        self.in_bits, self.acc_bits = in_bits, acc_bits
        super().__init__({
            "a": In(data.ArrayLayout(signed(in_bits), rows)),
            "b": In(data.ArrayLayout(signed(in_bits), cols)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "pre_valid": Out(1),
            "pre_row": Out(range(rows)),
            "out_valid": Out(1),
            "out_row": Out(range(rows)),
            "out_data": Out(data.ArrayLayout(signed(acc_bits), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        def delayed(sig, n, name, reset_less=False):
            """``sig`` through ``n`` registers (data: no reset; control: reset)."""
            for s in range(n):
                reg = Signal.like(sig, name=f"{name}_d{s}", reset_less=reset_less)
                m.d.sync += reg.eq(sig)
                sig = reg
            return sig

        pes = [[MacPE(self.in_bits, self.acc_bits, drain=True) for _ in range(C)]
               for _ in range(R)]
        for i in range(R):
            for j in range(C):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]
        for i in range(R):
            row_in = (delayed(self.a[i], i, f"a{i}", True), delayed(self.valid, i, f"v{i}"),
                      delayed(self.first, i, f"f{i}"), delayed(self.last, i, f"l{i}"))
            for j in range(C):
                pe = pes[i][j]
                if j == 0:
                    a, v, f, last = row_in
                else:
                    left = pes[i][j - 1]
                    a, v, f, last = left.a_out, left.valid_out, left.clear_out, left.last_out
                m.d.comb += [pe.a.eq(a), pe.valid.eq(v), pe.clear.eq(f), pe.last.eq(last)]
        for j in range(C):
            top = delayed(self.b[j], j, f"b{j}", True)
            for i in range(R):
                m.d.comb += pes[i][j].b.eq(top if i == 0 else pes[i - 1][j].b_out)

        # Row i is complete when the last step has passed PE(i, C-1); it is about to be when
        # the last step is at PE(i, C-1)'s inputs. At most one row of each kind per cycle.
        ends = [pes[i][C - 1] for i in range(R)]
        pre = [pe.valid & pe.last for pe in ends]
        fin = [pe.valid_out & pe.last_out for pe in ends]
        for i in range(R):
            with m.If(pre[i]):
                m.d.comb += self.pre_row.eq(i)
            with m.If(fin[i]):
                m.d.comb += self.out_row.eq(i)
        m.d.comb += [self.pre_valid.eq(Cat(*pre).any()), self.out_valid.eq(Cat(*fin).any())]
        rows = Array(Signal(C * self.acc_bits, name=f"res_row{i}") for i in range(R))
        for i in range(R):
            m.d.comb += rows[i].eq(Cat(*(pes[i][j].res for j in range(C))))
        m.d.comb += self.out_data.as_value().eq(rows[self.out_row])
        return m
