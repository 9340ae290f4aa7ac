"""Which report unit each part of the synthesized accelerator belongs to.

Submodules map by their Amaranth name (``accel.array.*``, ``accel.vector_*``, ...). The top
module ``accel`` holds the controller, the units' sequencers, the bank-port multiplexers and
the SRAM banks in one flat module; its cells are assigned by the names of the signals they
drive (the RTL prefixes each unit's signals: ``mm_``, ``rq_``, ``load_``, ...), and a cell
that drives only unnamed nets takes the unit of the cells it feeds (then of those feeding
it), so that every cell lands in exactly one unit. Memories are a unit of their own.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

#: Report units, in table order, with what each holds.
UNITS = {
    "array": "systolic array (PEs) and the MATMUL unit's feeder and drain",
    "requant": "requantizer lanes and the REQUANT unit",
    "vector": "vector unit: engines (LayerNorm, softmax, add, squash, sum, LUT load)",
    "mover_io": "mover engines (copy, transpose), LOAD/STORE host I/O",
    "controller": "fetch, decode/legality check, dependency counters, instruction queues, "
                  "status counters, bank-port multiplexers",
    "memories": "SRAM banks (ACT, WGT, ACC, VMEM, PMEM), LUTs and softmax buffers",
}
#: Bump when the attribution rules change (part of the synthesis cache key).
VERSION = "units-3"

_MODULE_RULES = (
    (r"accel\.array(\.|$)", "array"),
    (r"accel\.requantizer$", "requant"),
    (r"accel\.vector_", "vector"),
    (r"accel\.mover_", "mover_io"),
    (r"accel\.q_", "controller"),
    (r"accel_(\w+)$", None),  # the per-unit modules `submod` splits off the top (group 1)
)
#: Signal names of the top module -> unit (names with ``$``, i.e. Amaranth's copies of a
#: submodule's port names, are ambiguous and skipped).
_NET_RULES = (
    (r"(mm|matmul)_", "array"),
    (r"(rq|requant)_", "requant"),
    (r"(vector|vec)_|(elut|rlut)(_|$)", "vector"),
    (r"(load|store|mover|mov)_|din|dout", "mover_io"),
    (r"(ACT|WGT|ACC|VMEM)_[rw]_(load|store|mover)_", "mover_io"),
    (r"(ACT|WGT|ACC|VMEM)_[rw]_vector_", "vector"),
    (r"(ACT|WGT|ACC|VMEM)_[rw]_requant_", "requant"),
    (r"(ir|ir_valid|ir_pc|fetch_pc|go|consume|can_dispatch|entry|counters|done|error|err_pc|"
     r"last_pc|running|busy|unit_pc|waiting|head_pc|port_conflict|instr|bad_fields|illegal|"
     r"start)([._\[]|$)|(dispatched|completed|deps_ok|wd)_", "controller"),
)
#: Prefix of the attribute value ``submod`` turns into module ``accel_<value>``.
SUBMOD_PREFIX = "u_"


def module_unit(name: str) -> str:
    """Unit of a whole (sub)module, by name; the top's own cells: :func:`top_cell_units`."""
    name = name.lstrip("\\")
    for pattern, unit in _MODULE_RULES:
        m = re.match(pattern, name)
        if m:
            if unit is None:
                u = m.group(1).removeprefix(SUBMOD_PREFIX)
                return u if u in UNITS else "controller"
            return unit
    return "controller"


def net_unit(name: str) -> str | None:
    """Unit of a named signal of the top module, or None if the name does not say."""
    if "$" in name:
        return None
    for pattern, unit in _NET_RULES:
        if re.match(pattern, name):
            return unit
    return None


def top_cell_units(top: dict, how: dict | None = None) -> dict[str, str]:
    """Cell name -> unit for the cells of the top module (Yosys ``write_json`` module dict).

    ``how``, if given, receives how many cells were decided by each rule: ``fixed``
    (memories, submodule instances), ``named`` (the names of the nets a cell drives),
    ``neighbours`` (the units of the cells it feeds, then of those feeding it) and
    ``default`` (nothing said: the controller), ``top_cells`` and ``by_unit`` (unit -> rule
    -> cells). Memories do not vote: the address and data
    multiplexers in front of a bank belong to the units that drive them, else the controller.
    """
    cells = top["cells"]
    named: dict[int, str] = {}
    for net, w in top["netnames"].items():
        if w.get("hide_name"):
            continue
        unit = net_unit(net)
        if unit:
            for bit in w["bits"]:
                if isinstance(bit, int):
                    named.setdefault(bit, unit)
    drivers: dict[int, str] = {}
    readers: dict[int, list[str]] = defaultdict(list)
    unit: dict[str, str] = {}
    fixed: set[str] = set()
    for name, c in cells.items():
        if c["type"] == "$mem_v2":
            unit[name] = "memories"
            fixed.add(name)
        elif not c["type"].startswith("$"):
            unit[name] = module_unit(c["type"])
            fixed.add(name)
        for port, bits in c["connections"].items():
            out = c.get("port_directions", {}).get(port) == "output"
            for bit in bits:
                if isinstance(bit, int):
                    if out:
                        drivers[bit] = name
                    else:
                        readers[bit].append(name)
        if name not in unit:
            outs = [b for p, bs in c["connections"].items()
                    if c.get("port_directions", {}).get(p) == "output" for b in bs]
            votes = Counter(named[b] for b in outs if b in named)
            if votes:
                unit[name] = min(votes, key=lambda u: (-votes[u], u))
    n_named = len(unit) - len(fixed)
    outputs = {name: [b for p, bs in c["connections"].items()
                      if c.get("port_directions", {}).get(p) == "output" for b in bs]
               for name, c in cells.items()}
    inputs = {name: [b for p, bs in c["connections"].items()
                     if c.get("port_directions", {}).get(p) != "output" for b in bs]
              for name, c in cells.items()}
    for neighbours in (lambda n: (r for b in outputs[n] for r in readers.get(b, ())),
                       lambda n: (drivers[b] for b in inputs[n] if b in drivers)):
        changed = True
        while changed:
            changed = False
            for name in cells:
                if name in unit:
                    continue
                votes = Counter(unit[o] for o in neighbours(name)
                                if o in unit and unit[o] != "memories")
                if votes:
                    unit[name] = min(votes, key=lambda u: (-votes[u], u))
                    changed = True
    out = {name: unit.get(name, "controller") for name in cells}
    if how is not None:
        rule = {name: "fixed" if name in fixed else "named" if i < n_named + len(fixed)
                else "neighbours" for i, name in enumerate(unit)}
        by_unit: dict[str, Counter] = defaultdict(Counter)
        for name, u in out.items():
            by_unit[u][rule.get(name, "default")] += 1
        how.update(top_cells=len(cells), fixed=len(fixed), named=n_named,
                   neighbours=len(unit) - len(fixed) - n_named, default=len(cells) - len(unit),
                   by_unit={u: dict(sorted(c.items())) for u, c in sorted(by_unit.items())})
    return out


def annotate_rtlil(il: str, top: str, units: dict[str, str]) -> str:
    """``il`` with ``attribute \\submod "u_<unit>"`` before each cell of module ``top``
    that is not a memory or a submodule instance (so ``submod`` splits them off by unit)."""
    out, inside = [], False
    for line in il.split("\n"):
        if line.startswith("module "):
            inside = line.split()[1] == f"\\{top}"
        elif inside and line.startswith("  cell "):
            _, ctype, cname = line.split()
            key = cname[1:] if cname.startswith("\\") else cname
            if ctype.startswith("$") and ctype != "$mem_v2" and key in units:
                out.append(f'  attribute \\submod "{SUBMOD_PREFIX}{units[key]}"')
        out.append(line)
    return "\n".join(out)
