"""The one configuration that drives the model, the RTL, the compiler and the estimator.

A config file is TOML with two tables, ``[model]`` and ``[hardware]`` (fields: see
:class:`ModelConfig` and :class:`HardwareConfig`). A config file must be complete: it states
every field of both tables, or it names the config it builds on with a top-level
``extends = "demo.toml"`` (a path relative to the file's own directory, else the name of a file
in ``configs/``); the base is loaded first (bases may extend further bases; a cycle is an
error) and the file's tables override its fields. A field missing from the file and its bases is
a :class:`ConfigError`, never a silent default. The dataclass defaults only serve code that
builds configs directly (``Config()``, ``config_from_dict(..., complete=False)``).

The loaded object is frozen, validated and hashable; :meth:`Config.digest` keys caches and
names generated artefacts.

This module must stay free of torch/amaranth imports: the estimator and the CLI load it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "demo.toml"


class ConfigError(ValueError):
    """An invalid configuration. The message names the field and the fix."""


def _fail(where: str, name: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{where}: field '{name}' {problem}; fix: {fix}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the streaming augmented-memory encoder with folding attention."""

    d_model: int = 64
    n_heads: int = 4
    ffn_dim: int = 128
    n_layers: int = 2
    segment_length: int = 4
    right_context: int = 1
    left_context: int = 4
    max_memory: int = 2
    fold_factor: int = 2
    # "attn": fold only the attention block; "attn+ffn": the FFN runs on folded sub-tokens too.
    fold_scope: str = "attn"
    # "shrink": H/N heads of head dim D/H after folding (paper); "keep": H heads of D/(N*H).
    head_mode: str = "shrink"
    # Squash applied to the summary's attention output before it enters the memory bank.
    memory_squash: str = "clamp"
    memory_clamp: float = 10.0
    # Duration of one encoder frame (after any front-end subsampling), for real-time factors.
    frame_ms: float = 40.0
    # Speech head and tail, both GEMMs on the accelerator (0: absent). ``n_features`` > 0: the
    # host sends int8 feature rows (e.g. stacked log-mels) that an input projection maps to
    # d_model; 0: the host sends int16 d_model rows. ``vocab`` > 0: a classifier maps the last
    # layer's output to ``vocab`` int8 logits (CTC: blank + tokens); 0: the output is the last
    # layer's int16 rows.
    n_features: int = 0
    vocab: int = 0

    @property
    def input_dim(self) -> int:
        """Width of the rows the host sends: ``n_features``, or ``d_model`` without a front."""
        return self.n_features or self.d_model

    @property
    def output_dim(self) -> int:
        """Width of a step's output rows: ``vocab``, or ``d_model`` without a classifier."""
        return self.vocab or self.d_model

    @property
    def folded_dim(self) -> int:
        """Width of one sub-token, D/N."""
        return self.d_model // self.fold_factor

    @property
    def ffn_fold(self) -> int:
        """Fold factor of the FFN: ``fold_factor`` with ``fold_scope='attn+ffn'``, else 1."""
        return self.fold_factor if self.fold_scope == "attn+ffn" else 1

    @property
    def attn_heads(self) -> int:
        """Number of attention heads over the folded sequence."""
        if self.head_mode == "shrink":
            return self.n_heads // self.fold_factor
        return self.n_heads

    @property
    def head_dim(self) -> int:
        """Per-head width over the folded sequence."""
        return self.folded_dim // self.attn_heads

    def validate(self, where: str = "[model]") -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                raise _fail(where, f.name, f"must be an integer, got {v!r}", "write a whole number")
        positive = ("d_model", "n_heads", "ffn_dim", "n_layers", "segment_length",
                    "max_memory", "fold_factor")
        for name in positive:
            if getattr(self, name) < 1:
                raise _fail(where, name, f"must be >= 1, got {getattr(self, name)}",
                            f"set {name} to a positive integer")
        for name in ("right_context", "left_context", "n_features", "vocab"):
            if getattr(self, name) < 0:
                raise _fail(where, name, f"must be >= 0, got {getattr(self, name)}",
                            f"set {name} to 0 or more")
        if self.fold_scope not in ("attn", "attn+ffn"):
            raise _fail(where, "fold_scope", f"is {self.fold_scope!r}", "use 'attn' or 'attn+ffn'")
        if self.head_mode not in ("shrink", "keep"):
            raise _fail(where, "head_mode", f"is {self.head_mode!r}", "use 'shrink' or 'keep'")
        if self.memory_squash not in ("clamp", "tanh"):
            raise _fail(where, "memory_squash", f"is {self.memory_squash!r}",
                        "use 'clamp' or 'tanh'")
        if not self.memory_clamp > 0:
            raise _fail(where, "memory_clamp", "must be > 0", "set a positive clamp bound")
        if not self.frame_ms > 0:
            raise _fail(where, "frame_ms", "must be > 0", "set the frame duration in ms")
        if self.vocab == 1:
            raise _fail(where, "vocab", "=1 leaves no token besides the CTC blank",
                        "set vocab to 0 (no classifier) or to blank + tokens (>= 2)")
        n = self.fold_factor
        if self.d_model % n:
            raise _fail(where, "fold_factor",
                        f"={n} does not divide d_model={self.d_model}",
                        "choose a fold_factor that divides d_model")
        if self.d_model % self.n_heads:
            raise _fail(where, "n_heads", f"={self.n_heads} does not divide d_model={self.d_model}",
                        "choose n_heads that divides d_model")
        if self.head_mode == "shrink" and self.n_heads % n:
            raise _fail(where, "fold_factor",
                        f"={n} does not divide n_heads={self.n_heads} (head_mode='shrink' keeps "
                        "the head dim and uses n_heads/fold_factor heads)",
                        "choose a fold_factor that divides n_heads, or head_mode='keep'")
        if self.head_mode == "keep" and self.folded_dim % self.n_heads:
            raise _fail(where, "n_heads",
                        f"={self.n_heads} does not divide the folded width "
                        f"d_model/fold_factor={self.folded_dim} (head_mode='keep')",
                        "choose fewer heads, a smaller fold_factor, or head_mode='shrink'")
        if self.fold_scope == "attn+ffn" and self.ffn_dim % n:
            raise _fail(where, "ffn_dim", f"={self.ffn_dim} is not divisible by fold_factor={n} "
                        "(fold_scope='attn+ffn' folds the FFN too)",
                        "choose ffn_dim divisible by fold_factor, or fold_scope='attn'")


@dataclass(frozen=True)
class HardwareConfig:
    """Shape of the accelerator: array, SRAM banks, host interface, clock."""

    rows: int = 16
    cols: int = 16
    in_bits: int = 8
    acc_bits: int = 32
    act_sram_kib: int = 64
    wgt_sram_kib: int = 64
    acc_sram_kib: int = 64
    # vector memory (int8/int16 tensors in 16-bit lanes) and vector-parameter memory
    vmem_kib: int = 64
    pmem_kib: int = 32
    host_bytes_per_cycle: int = 16
    dram_bytes_per_cycle: int = 16
    clock_mhz: float = 500.0
    dataflow: str = "os"

    def validate(self, where: str = "[hardware]") -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                raise _fail(where, f.name, f"must be an integer, got {v!r}", "write a whole number")
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if not 1 <= v <= 64:
                raise _fail(where, name, f"={v} is outside 1..64", f"set {name} between 1 and 64")
        if self.in_bits != 8:
            raise _fail(where, "in_bits", f"={self.in_bits} is not supported",
                        "use in_bits = 8 (int8 operands)")
        if self.acc_bits != 32:
            raise _fail(where, "acc_bits", f"={self.acc_bits} is not supported",
                        "use acc_bits = 32 (int32 accumulators)")
        for name in ("act_sram_kib", "wgt_sram_kib", "acc_sram_kib", "vmem_kib", "pmem_kib"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise _fail(where, name, f"={v} is not a power of two >= 1",
                            f"set {name} to 1, 2, 4, ... KiB")
        for name in ("host_bytes_per_cycle", "dram_bytes_per_cycle"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise _fail(where, name, f"={v} is not a power of two >= 1",
                            f"set {name} to 1, 2, 4, 8, 16, ...")
        if not self.clock_mhz > 0:
            raise _fail(where, "clock_mhz", "must be > 0", "set the clock in MHz")
        if self.dataflow not in ("os",):
            raise _fail(where, "dataflow", f"={self.dataflow!r} is not supported",
                        "use 'os' (output-stationary)")


@dataclass(frozen=True)
class Config:
    """Model + hardware: the single object every component reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    source: str = field(default="<defaults>", compare=False)

    def validate(self) -> None:
        self.model.validate(f"{self.source} [model]")
        self.hardware.validate(f"{self.source} [hardware]")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the model and hardware tables (no source path)."""
        return {"model": dataclasses.asdict(self.model),
                "hardware": dataclasses.asdict(self.hardware)}

    def to_toml(self) -> str:
        """TOML text that :func:`load_config` reads back to an equal config."""
        lines = []
        for table, values in self.to_dict().items():
            lines.append(f"[{table}]")
            for k, v in values.items():
                lines.append(f"{k} = {json.dumps(v)}")
            lines.append("")
        return "\n".join(lines)

    def digest(self) -> str:
        """sha256 hex of the canonical JSON of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def replace(self, **changes: Any) -> Config:
        """Copy with ``model``/``hardware`` field overrides, e.g. ``fold_factor=4, rows=8``."""
        mnames = {f.name for f in fields(ModelConfig)}
        hnames = {f.name for f in fields(HardwareConfig)}
        mch = {k: v for k, v in changes.items() if k in mnames}
        hch = {k: v for k, v in changes.items() if k in hnames}
        unknown = set(changes) - mnames - hnames
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; known model fields: "
                              f"{sorted(mnames)}, hardware fields: {sorted(hnames)}")
        cfg = Config(dataclasses.replace(self.model, **mch),
                     dataclasses.replace(self.hardware, **hch), self.source)
        cfg.validate()
        return cfg


def model_config(cfg: ModelConfig | Config) -> ModelConfig:
    """The model part of ``cfg`` (APIs that need only the model shape accept either)."""
    return cfg.model if isinstance(cfg, Config) else cfg


TABLES: dict[str, type] = {"model": ModelConfig, "hardware": HardwareConfig}
#: The top-level key of a config file naming the base config it extends.
EXTENDS = "extends"


def _check_tables(data: dict[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    """Unknown top-level keys, non-table tables and unknown fields -> :class:`ConfigError`."""
    for key in data:
        if key not in allowed:
            what = " or a top-level `extends = \"<base>.toml\"`" if EXTENDS in allowed else ""
            raise ConfigError(f"{where}: unknown table [{key}]; fix: use [model] and "
                              f"[hardware]{what}")
    for table, cls in TABLES.items():
        values = data.get(table, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: '{table}' must be a table, got {values!r}; fix: write "
                              f"a [{table}] section with one `name = value` line per field")
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{where} [{table}]: unknown field '{key}'; fix: remove it or "
                                  f"use one of {sorted(known)}")


def _missing_fields(data: dict[str, Any]) -> dict[str, list[str]]:
    """``{table: [field, ...]}`` of the fields ``data`` does not state (in declaration order)."""
    out = {}
    for table, cls in TABLES.items():
        values = data.get(table, {})
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            out[table] = missing
    return out


def _name_list(names: list[str], first: int = 6) -> str:
    shown = ", ".join(names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def _missing_error(data: dict[str, Any], source: str, file: bool) -> ConfigError | None:
    missing = _missing_fields(data)
    if not missing:
        return None
    parts = []
    for table, names in missing.items():
        total = len(fields(TABLES[table]))
        count = f"all {total}" if len(names) == total else f"{len(names)} of {total}"
        parts.append(f"[{table}] {_name_list(names)} ({count} fields)")
    table, names = next(iter(missing.items()))
    if file:
        fix = (f"add `{names[0]} = ...` to [{table}] (and the other missing fields) or add "
               f"`{EXTENDS} = \"demo.toml\"` at the top of the file to take them from a base "
               "config")
        rule = "a config file must state every field of [model] and [hardware] or extend a base"
    else:
        fix = f"add '{names[0]}' (and the other missing fields) to the '{table}' table"
        rule = "the config must state every field"
    return ConfigError(f"{source}: missing field(s) {'; '.join(parts)}; {rule}; fix: {fix}")


def _build(cls, table: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown field '{key}'; fix: remove it or use one of "
                              f"{sorted(known)}")
    kwargs = {}
    for key, value in table.items():
        ftype = known[key].type
        if ftype == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif ftype == "float" and not isinstance(value, float):
            raise _fail(where, key, f"must be a number, got {value!r}", "write a number")
        elif ftype == "str" and not isinstance(value, str):
            raise _fail(where, key, f"must be a string, got {value!r}", "quote the value")
        kwargs[key] = value
    return cls(**kwargs)


def _unvalidated(data: dict[str, Any], source: str) -> Config:
    return Config(_build(ModelConfig, data.get("model", {}), f"{source} [model]"),
                  _build(HardwareConfig, data.get("hardware", {}), f"{source} [hardware]"),
                  source)


def config_from_dict(data: dict[str, Any], source: str = "<dict>",
                     complete: bool = False) -> Config:
    """Build and validate a config from ``{"model": {...}, "hardware": {...}}``.

    With ``complete=True`` every field of both tables must be present (export manifests,
    config files); otherwise a missing field takes the dataclass default (code that builds
    configs from :meth:`Config.to_dict` or from its own partial dicts).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: config must be a mapping with 'model' and 'hardware' "
                          f"tables, got {type(data).__name__}; fix: pass Config.to_dict()")
    _check_tables(data, source, tuple(TABLES))
    if complete:
        err = _missing_error(data, source, file=False)
        if err:
            raise err
    cfg = _unvalidated(data, source)
    cfg.validate()
    return cfg


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file '{p}' cannot be read ({e}); fix: pass a readable "
                          "UTF-8 TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file '{p}' is not valid TOML: {e}; "
                          "fix: correct the syntax") from None


def _resolve_base(name: Any, p: Path) -> Path:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{p}: '{EXTENDS}' must be a file name string, got {name!r}; fix: "
                          f"write `{EXTENDS} = \"demo.toml\"` (relative to {p.parent} or a "
                          f"file in {CONFIG_DIR})")
    local = p.parent / name
    if local.is_file():
        return local
    shipped = CONFIG_DIR / name
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{p}: {EXTENDS} = {name!r} not found (looked for {local} and "
                      f"{shipped}); fix: name an existing config file, relative to {p.parent} "
                      f"or in {CONFIG_DIR}")


def _load_tables(p: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The merged ``{"model": ..., "hardware": ...}`` of ``p`` and the bases it extends."""
    key = p.resolve()
    seen = [c.resolve() for c in chain]
    if key in seen:
        cycle = " -> ".join(str(c) for c in (*chain[seen.index(key):], p))
        raise ConfigError(f"config files extend each other in a cycle: {cycle}; fix: remove "
                          f"the `{EXTENDS}` line from one of them")
    data = _read_toml(p)
    _check_tables(data, str(p), (*TABLES, EXTENDS))
    merged: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
    if EXTENDS in data:
        base = _load_tables(_resolve_base(data[EXTENDS], p), (*chain, p))
        for t in TABLES:
            merged[t].update(base[t])
    for t in TABLES:
        merged[t].update(data.get(t, {}))
    return merged


def load_config(path: str | Path | None = None, fold: int | None = None) -> Config:
    """Load and validate a complete TOML config; ``fold`` (``--fold`` on the command line)
    overrides ``model.fold_factor``.

    ``path=None`` loads the embedded default (``configs/demo.toml``). The file must state every
    field or ``extends`` a base config (module docstring). An error caused by ``fold`` says the
    value came from the command line.
    """
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found; fix: pass an existing TOML file "
                          f"(see {CONFIG_DIR})")
    source = str(p)
    data = _load_tables(p)
    err = _missing_error(data, source, file=True)
    if err:
        raise err
    cfg = _unvalidated(data, source)
    if fold is None:
        cfg.validate()
        return cfg
    try:
        file_error = None
        cfg.validate()
    except ConfigError as e:
        file_error = e
    folded = Config(dataclasses.replace(cfg.model, fold_factor=fold), cfg.hardware, source)
    try:
        folded.validate()
    except ConfigError as e:
        if file_error is not None and str(file_error) == str(e):
            raise  # the file's own error, which --fold does not change
        try:
            folded.model.validate(f"--fold {fold} (command line) with {source} [model]")
        except ConfigError as cl:
            raise ConfigError(f"{cl}; --fold overrides fold_factor of the config file, so pass "
                              "a --fold that fits it, or drop --fold") from None
        raise
    return folded
