"""Merge structurally identical Verilog modules before synthesis.

Amaranth writes one module per instance: a 16x16 array has 256 PE modules, most of them
identical but for their name. :func:`dedupe` keeps the first module of each class of
identical bodies (name blanked), points every instantiation at it and repeats until nothing
changes, so Yosys synthesizes each distinct module once; the hierarchy's instance counts
carry the multiplicity into the report.
"""

from __future__ import annotations

import re

from sim.synth.verilog_out import modules, strip_zero_init

__all__ = ["dedupe", "strip_zero_init"]


#: A module's header: ``module name(port, port, ...);`` (names only; Amaranth declares the
#: directions and widths in the body). Instantiations connect by name, so the port order of
#: the header does not matter: :func:`_canonical` sorts it.
_HEAD = re.compile(r"^module \S+? ?\(([^)]*)\);", re.M)


#: Yosys's generated names (``\\$auto$verilog_backend.cc:2355:dump_module$8``): local to a
#: module, numbered across the file.
_AUTO = re.compile(r"\\\$auto\$\S+")


def _canonical(text: str) -> str:
    """``text`` (one module) without its name, its header's ports sorted and generated
    names renumbered in order of first appearance: equal for modules that differ only
    in those."""
    ids: dict[str, int] = {}
    text = _HEAD.sub(lambda m: "module <m>(" + ", ".join(
        sorted(p.strip() for p in m.group(1).split(","))) + ");", text, count=1)
    return _AUTO.sub(lambda m: f"<auto{ids.setdefault(m.group(0), len(ids))}>", text)


def _escaped(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][\w$]*", name) else f"\\{name} "


def dedupe(verilog: str, unit_of=lambda name: "") -> tuple[str, dict[str, str]]:
    """``(verilog with duplicates removed, {removed module: the module kept for it})``.
    Modules merge only when ``unit_of`` (module name -> report unit) agrees."""
    merged: dict[str, str] = {}
    while True:
        mods = modules(verilog)
        seen: dict[str, str] = {}
        rename: dict[str, str] = {}
        for name, text in mods.items():
            key = unit_of(name) + "\n" + _canonical(text)
            if key in seen:
                rename[name] = seen[key]
            else:
                seen[key] = name
        if not rename:
            return verilog, merged
        for name in rename:
            verilog = verilog.replace(mods[name], "")
        # an instantiation line starts with the module's (escaped) name; a plain name must
        # be followed by a space so that ``foo`` does not match ``foobar``
        names = sorted((_escaped(n) for n in rename), key=len, reverse=True)
        pattern = re.compile(r"^(\s+)(" + "|".join(
            re.escape(e) + ("" if e.endswith(" ") else r"(?=\s)") for e in names) + ")", re.M)
        back = {_escaped(n): _escaped(k) for n, k in rename.items()}
        verilog = pattern.sub(lambda m, back=back: m.group(1) + back[m.group(2)], verilog)
        for name, keep in rename.items():
            merged[name] = keep
        for name, keep in merged.items():
            merged[name] = rename.get(keep, keep)
