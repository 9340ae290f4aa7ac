"""The form of an opcode-table entry (:class:`OpSpec`) and the pieces its rules are built from.

The table itself is ``hw/opcodes.py`` (GEMM core, control) plus ``hw/vector/ops.py`` (vector
unit, mover); its module docstring says who reads which rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw.uarch import BANK_KEYS, BANK_NAMES, BANKS, AccelParams
from hw.vector.formats import ELUT_SIZE, RLUT_SIZE

#: SRAM words an instruction touches: ``(bank, first word, end word)``, or
#: ``(bank, first, end, step)`` for every ``step``-th word of ``[first, end)``.
Region = tuple[int, ...]


def strided(bank: int, first: Any, count: Any, step: Any) -> list[Region]:
    """The region of ``count`` words ``first, first + step, ...`` of ``bank``."""
    if step == 1:
        return [(bank, first, first + count)]
    return [(bank, first, first + (count - 1) * step + 1, step)]


def region_words(region: Region) -> slice:
    """The words of ``region`` as a slice of its bank (``region[0]``)."""
    return slice(region[1], region[2], region[3] if len(region) > 3 else None)


class OpcodeError(ValueError):
    """The opcode table has no rule for what a consumer asked (names opcode and rule)."""


class ExecutionError(RuntimeError):
    """An instruction cannot execute on the given machine state (names the instruction)."""


# ----------------------------------------------------------------------------- rule helpers


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer))


def pick(sel: Any, options: Mapping[int, Any], default: Any) -> Any:
    """``options[sel]`` (``default`` if absent), for a Python int or an Amaranth value."""
    if _is_int(sel):
        return options.get(int(sel), default)
    from amaranth.hdl import Mux
    out = default
    for key, value in options.items():
        out = Mux(sel == key, value, out)
    return out


def cdiv(a: Any, b: int) -> Any:
    """``ceil(a / b)`` for a non-negative Python int or an unsigned Amaranth value (a shift
    when ``b`` is a power of two, else a division by the constant)."""
    if _is_int(a):
        return -(-a // b)
    if b & (b - 1):
        return (a + (b - 1)) // b
    return (a + (b - 1)) >> (b.bit_length() - 1)


@dataclass(frozen=True)
class Rule:
    """One legality condition: the instruction is illegal where ``pred(a, p)`` holds.

    ``pred`` uses only ``+ - * == != < <= > >= & |`` and :func:`pick`/:func:`cdiv` on the
    fields ``a.<name>``, so it works on ints and on Amaranth values; ``message(a, p)`` (ints)
    explains the problem and names the field.
    """

    pred: Callable[[Any, AccelParams], Any]
    message: Callable[[Any, AccelParams], str]


_DEPTHS: dict[tuple[int, tuple[int, ...]], tuple[AccelParams, dict[int, int]]] = {}


def _depths(p: AccelParams, banks: tuple[int, ...]) -> dict[int, int]:
    """``{bank: depth}`` of ``p`` (cached per parameter object: rules run per instruction)."""
    hit = _DEPTHS.get((id(p), banks))
    if hit is None or hit[0] is not p:
        hit = (p, {b: p.depth(b) for b in banks})
        _DEPTHS[(id(p), banks)] = hit
    return hit[1]


def past_end(name: str, count: Callable, bank: Callable | int, guard: Callable | None = None,
             banks: tuple[int, ...] = BANKS) -> Rule:
    """``a.<name> + count(a, p)`` words run past the end of the bank ``bank(a)`` (one of
    ``banks``), unless ``guard(a)`` is false."""
    bank_of = bank if callable(bank) else (lambda a, b=bank: b)

    def depth(a, p):
        return pick(bank_of(a), _depths(p, banks), 0)

    def pred(a, p):
        over = getattr(a, name) + count(a, p) > depth(a, p)
        return over if guard is None else guard(a) & over

    def message(a, p):
        b = bank_of(a)
        return (f"'{name}'={getattr(a, name)} + {count(a, p)} words runs past the "
                f"{BANK_NAMES[b]} bank ({p.depth(b)} words)")

    return Rule(pred, message)


def overlap(dst: str, dst_len: Callable, src: str, src_len: Callable,
            guard: Callable | None = None) -> Rule:
    """The ranges ``[a.<dst>, +dst_len)`` and ``[a.<src>, +src_len)`` overlap without being
    the same start (an engine supports in place, ``dst == src``, and disjoint ranges)."""
    def pred(a, p):
        d, s = getattr(a, dst), getattr(a, src)
        cond = (d != s) & (d < s + src_len(a, p)) & (s < d + dst_len(a, p))
        return cond if guard is None else guard(a) & cond

    return Rule(pred, lambda a, p: f"'{dst}'={getattr(a, dst)} overlaps '{src}'="
                                   f"{getattr(a, src)} (in place or disjoint only)")


def zero(name: str) -> Rule:
    """The field ``name`` is 0 (it must be at least 1)."""
    return Rule(lambda a, p: getattr(a, name) == 0, lambda a, p: f"'{name}'=0 (must be >= 1)")


def above(name: str, limit: Callable[[AccelParams], int], why: str) -> Rule:
    """The field ``name`` exceeds ``limit(p)``."""
    return Rule(lambda a, p: getattr(a, name) > limit(p),
                lambda a, p: f"'{name}'={getattr(a, name)} exceeds {limit(p)} ({why})")


# ----------------------------------------------------------------------------- costs, traffic


@dataclass(frozen=True)
class Cost:
    """Timing of one instruction, in cycles after the cycle its unit starts it.

    ``free``: the unit may start its next instruction at ``start + free``; ``done``: it
    completes at ``start + done`` (its effects are visible from ``done + 1``); ``busy``: the
    RTL busy counters it adds to; ``host_beats``: it moves a host-stream beat in each cycle
    ``start+1 .. start+host_beats`` (``dma_busy`` is their union); ``serial``: cycles it can
    take when it runs alone (the watchdog budget adds these).
    """

    free: int
    done: int
    busy: Mapping[str, int]
    serial: int
    host_beats: int = 0


def engine_cost(latency: int, counter: str) -> Cost:
    """Cost of a vector-unit or mover instruction: its engine raises ``done`` ``latency``
    cycles after the start and accepts the next instruction one cycle later."""
    return Cost(free=latency + 1, done=latency, busy={counter: latency + 1},
                serial=latency + 1)


@dataclass
class Traffic:
    """SRAM and host bytes and datapath operations of one instruction (estimator keys)."""

    reads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    writes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    host_in: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANK_KEYS, 0))
    host_out: int = 0
    mac_slots: int = 0
    ops: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- machine state


@dataclass
class Machine:
    """Architectural state the functional semantics act on (``sim/isa_sim.py`` drives it):
    SRAM images (``(depth, word_bytes)`` uint8 per bank, in ``hw.uarch.BANKS`` order), the
    vector unit's tables (``elut`` 256 and ``rlut`` 192 raw 16-bit entries), the data-in
    stream and its read position, the data-out beats produced so far, the watchdog budget."""

    p: AccelParams
    banks: list[np.ndarray]
    din: np.ndarray
    elut: np.ndarray = field(default_factory=lambda: np.zeros(ELUT_SIZE, np.int64))
    rlut: np.ndarray = field(default_factory=lambda: np.zeros(RLUT_SIZE, np.int64))
    pos: int = 0
    dout: list[np.ndarray] = field(default_factory=list)
    budget: int = 0

    @classmethod
    def empty(cls, p: AccelParams, din: np.ndarray) -> Machine:
        banks = [np.zeros((p.depth(b), p.word_bytes(b)), np.uint8) for b in BANKS]
        return cls(p, banks, np.asarray(din, np.uint8).reshape(-1, p.host_bytes))

    def take_beats(self, n: int, what: str) -> np.ndarray:
        if self.pos + n > len(self.din):
            raise ExecutionError(f"{what} needs {n} data beats, only {len(self.din) - self.pos} "
                                 "are left in the input stream")
        out = self.din[self.pos:self.pos + n]
        self.pos += n
        return out

    def lanes(self, bank: int, lo: int, hi: int, dtype: str) -> np.ndarray:
        """Words ``lo..hi-1`` of ``bank`` as little-endian lanes of ``dtype`` (int64)."""
        return self.banks[bank][lo:hi].view(dtype).astype(np.int64)

    def put_lanes(self, bank: int, lo: int, values: np.ndarray, dtype: str) -> None:
        """Write rows of lanes (each row one word) to ``bank`` from word ``lo``."""
        words = np.ascontiguousarray(np.asarray(values).astype(dtype)).view(np.uint8)
        words = words.reshape(-1, self.p.word_bytes(bank))
        self.banks[bank][lo:lo + len(words)] = words


# ----------------------------------------------------------------------------- the entry


@dataclass(frozen=True)
class OpSpec:
    """One opcode (see ``hw/opcodes.py`` for what each rule is used for)."""

    name: str
    code: int
    fields: tuple[tuple[str, int], ...]
    unit: str | None = None
    #: dispatcher-level opcodes: "immediate" (dispatches at once) or "barrier" (waits until
    #: every earlier instruction completed); ``ends``: the program stops here
    control: str | None = None
    ends: bool = False
    rules: tuple[Rule, ...] = ()
    regions: Callable[[Any, AccelParams], tuple[list[Region], list[Region]]] | None = None
    #: shared bank ports it uses (``"VMEM.r"``, ``"ACT.w"``, ...; hw/deps.py orders users)
    ports: Callable[[Any, AccelParams], list[str]] | None = None
    ordered_raw: Callable[[Any, Any], bool] | None = None
    cost: Callable[[Any, AccelParams], Cost] | None = None
    spacing: Callable[[Any, Any, AccelParams], int] | None = None
    stall_counter: str | None = None
    traffic: Callable[[Any, AccelParams], Traffic] | None = None
    execute: Callable[[Machine, Any, str], None] | None = None
    #: field -> names of its values, for printing (e.g. LOAD bank=WGT)
    value_names: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def need(self, rule: str) -> Callable:
        """The rule ``rule`` (an attribute name); :class:`OpcodeError` if it is missing."""
        fn = getattr(self, rule)
        if fn is None:
            raise OpcodeError(f"opcode {self.name} has no '{rule}' rule in the opcode table "
                              "(hw/opcodes.py); add one before using it")
        return fn


def no_regions(a, p):
    return [], []


def no_ports(a, p):
    return []


def no_traffic(a, p):
    return Traffic()


def nothing(m: Machine, a, where: str) -> None:
    return None


def always_ordered(ins, other) -> bool:
    """Same-unit hazards this unit orders by itself (it finishes one instruction before it
    starts the next, or its pipeline keeps program order)."""
    return True


__all__ = ["Cost", "ExecutionError", "Machine", "OpSpec", "OpcodeError", "Region", "Rule",
           "Traffic", "above", "always_ordered", "cdiv", "engine_cost", "no_ports",
           "no_regions", "no_traffic", "nothing", "overlap", "past_end", "pick", "zero"]
