"""A memory port shared by several units (``hw.uarch.SHARED_PORTS``).

The dependency tracker orders the instructions of different units that use the same shared
port, so in a legal program at most one user enables it in any cycle; the multiplexer is
therefore the OR of the users' signals, each masked by its own enable, and ``conflict`` flags
a cycle in which two users enable it (the accelerator stops with ERR_PORT: the program broke
the contract, the hardware did not arbitrate).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal


class PortUser:
    """One user's view of a shared port, shaped like a memory port: it drives ``addr`` and
    ``en``, and ``data`` (the write data of a write port; the read data of a read port)."""

    def __init__(self, name: str, addr_bits: int, en_bits: int, data_bits: int):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.en = Signal(en_bits, name=f"{name}_en")
        self.data = Signal(data_bits, name=f"{name}_data")


class SharedPort:
    """Multiplexes :class:`PortUser` s onto one ``amaranth.lib.memory`` read or write port."""

    def __init__(self, name: str, port, write: bool):
        self.name, self.port, self.write = name, port, write
        self.users: list[PortUser] = []
        self.conflict = Signal(name=f"{name.replace('.', '_')}_conflict")

    def user(self, who: str) -> PortUser:
        port = self.port
        en_bits = len(port.en)
        u = PortUser(f"{self.name.replace('.', '_')}_{who}", len(port.addr), en_bits,
                     len(port.data))
        self.users.append(u)
        return u

    def elaborate(self, m: Module) -> None:
        port = self.port
        addr = Const(0, len(port.addr))
        en = Const(0, len(port.en))
        wdata = Const(0, len(port.data))
        active = []
        for u in self.users:
            on = u.en.any()
            active.append(on)
            addr = addr | Mux(on, u.addr, 0)
            en = en | u.en
            if self.write:
                wdata = wdata | Mux(on, u.data, 0)
            else:
                m.d.comb += u.data.eq(port.data)
        m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
        if self.write:
            m.d.comb += port.data.eq(wdata)
        # two or more users in one cycle
        pairs = [a & b for i, a in enumerate(active) for b in active[i + 1:]]
        m.d.comb += self.conflict.eq(Cat(*pairs).any() if pairs else 0)


__all__ = ["PortUser", "SharedPort"]
