"""Deterministic export of a quantized model, and validated loading.

An export directory holds:

* ``weights.npz``: every integer tensor of :func:`model.quantize.tensor_specs` (``.npy``
  members in sorted name order, stored uncompressed, fixed 1980-01-01 timestamps: the same
  model gives the same bytes);
* ``manifest.json``: format/version, the config (``Config.to_dict``) and its digest, the seed,
  calibration settings, the activation scales and their storage formats (``int8``, ``int16``
  for the residual stream, ``uint8`` for softmax probabilities), the numeric constants and, per
  tensor, shape, dtype, sha256 (of the raw little-endian C-order array bytes), hex image path,
  ``hex_sha256`` (of the hex file's bytes) and, for weights, the per-channel scales;
* ``hex/<name>.hex``: one ``$readmemh`` image per tensor: a ``//`` comment line, then one
  element per line in C (row-major) order as two's-complement hex of the dtype's width (int8: 2
  digits, int32: 8, int64: 16), lowercase, no address markers.

The target is checked (:func:`check_export_target`) before anything is computed: it must be
new, an empty directory or an earlier export (a directory with ``manifest.json``), and writable.
A new target is written to a temporary directory beside it, renamed into place at the end. In
an existing directory only the files foldaccel owns change: every new file is first written in
full to a temporary directory inside it, then ``weights.npz`` and each ``hex/`` image are
replaced by an atomic rename, the hex images the old manifest lists but the new one does not
are removed, and ``manifest.json`` is renamed into place last. Any other file there (e.g.
``notes.txt``, ``hex/mine.txt``) is left alone. A failure before the renames changes nothing;
no temporary file is left behind in any case.

:func:`load_export` checks everything against the manifest, the hex images included;
:func:`export_config` reads only the config an export was made with.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from model import intops
from model.config import Config, ConfigError, config_from_dict
from model.quantize import (
    ACT_POINTS,
    HEAD,
    LINEARS,
    TAIL,
    QuantModel,
    is_int16,
    model_points,
    tensor_specs,
)

FORMAT = "foldaccel-weights"
#: 2: int16 residual stream, uint8 probabilities with zero point, ``input_mem.m``/``.s``.
#: 3: per-tensor ``hex_sha256`` of the ``hex/`` image.
VERSION = 3
WEIGHTS = "weights.npz"
MANIFEST = "manifest.json"
HEX_DIR = "hex"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ExportError(ValueError):
    """A bad export directory or export target; the message names the file/tensor and fix."""


def array_sha256(a: np.ndarray) -> str:
    """sha256 of the raw little-endian, C-order bytes of ``a``."""
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return hashlib.sha256(le.tobytes()).hexdigest()


def hex_image(name: str, a: np.ndarray) -> str:
    """``$readmemh`` text of ``a``: a comment, then one two's-complement word per line."""
    bits = a.dtype.itemsize * 8
    digits = bits // 4
    mask = (1 << bits) - 1
    shape = "x".join(str(n) for n in a.shape)
    head = (f"// {name} {a.dtype} shape {shape} row-major, two's complement, "
            f"{digits} hex digits per element\n")
    # vectorised: the two's-complement word's nibbles, most significant first, as ASCII
    words = a.reshape(-1).astype(np.int64).view(np.uint64) & np.uint64(mask)
    shifts = np.arange(4 * (digits - 1), -1, -4, dtype=np.uint64)
    nibbles = (words[:, None] >> shifts) & np.uint64(0xF)
    table = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.empty((words.size, digits + 1), np.uint8)
    text[:, :digits] = table[nibbles.astype(np.intp)]
    text[:, digits] = ord("\n")
    return head + text.tobytes().decode("ascii")


def _npz_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(tensors):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(tensors[name]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def numerics_constants() -> dict[str, int]:
    """The fixed-point constants of ``docs/NUMERICS.md`` the hardware must agree on."""
    return {"m_bits": intops.M_BITS, "s_min": intops.S_MIN, "s_max": intops.S_MAX,
            "prob_bits": intops.PROB_U8_BITS, "prob_zero_point": intops.PROB_ZERO_POINT,
            "exp_bits": intops.EXP_BITS, "ln_frac_bits": intops.LN_FRAC_BITS,
            "rsqrt_bits": intops.RSQRT_BITS, "rsqrt_lut_base": intops.RSQRT_LUT_BASE}


def scale_format(name: str, cfg: Config | None = None) -> str:
    """Storage format of the activation with scale ``name`` (of a model of ``cfg``): ``int16``
    (residual stream), ``uint8`` (softmax probabilities, zero point 128 in the array) or
    ``int8``."""
    if is_int16(name, cfg):
        return "int16"
    return "uint8" if name.endswith(".prob") else "int8"


def hex_path(name: str) -> str:
    """Path of the hex image of tensor ``name``, relative to the export directory."""
    return f"{HEX_DIR}/{name}.hex"


def manifest_dict(qm: QuantModel, hex_sha256: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest of ``qm`` (see the module docstring); ``hex_sha256`` maps tensor names to
    the sha256 of their hex images when the caller has already computed them."""
    if hex_sha256 is None:
        hex_sha256 = {name: hashlib.sha256(_hex_bytes(name, a)).hexdigest()
                      for name, a in qm.tensors.items()}
    tensors = {}
    for name in sorted(qm.tensors):
        a = qm.tensors[name]
        entry: dict[str, Any] = {"shape": list(a.shape), "dtype": str(a.dtype),
                                 "sha256": array_sha256(a), "hex": hex_path(name),
                                 "hex_sha256": hex_sha256[name]}
        if name in qm.weight_scales:
            entry["scale"] = [float(v) for v in qm.weight_scales[name]]
        tensors[name] = entry
    return {"format": FORMAT, "version": VERSION, "seed": qm.seed,
            "config": qm.config.to_dict(), "config_digest": qm.config.digest(),
            "calibration": qm.calibration, "numerics": numerics_constants(),
            "scales": {k: float(v) for k, v in sorted(qm.scales.items())},
            "formats": {k: scale_format(k, qm.config) for k in sorted(qm.scales)},
            "tensors": tensors}


def _hex_bytes(name: str, a: np.ndarray) -> bytes:
    return hex_image(name, a).encode("ascii")


# ----------------------------------------------------------------------------- target checks

_FIX_PATH = "fix: choose another --out path"
#: What a hex path listed in a manifest may look like (anything else is never deleted).
_HEX_NAME = re.compile(r"hex/[A-Za-z0-9_][A-Za-z0-9_.\-]*\.hex")


def _stat(p: Path) -> os.stat_result | None:
    """``os.stat`` of ``p`` (following links), None if it does not exist."""
    try:
        return os.stat(p)
    except FileNotFoundError:
        if os.path.lexists(p):
            raise ExportError(f"--out {p} is a broken symbolic link; {_FIX_PATH} or remove "
                              "the link") from None
        return None
    except NotADirectoryError:
        return None
    except OSError as e:
        raise ExportError(f"--out {p} cannot be inspected ({e.strerror}); {_FIX_PATH}") from None


def _writable_dir(p: Path, target: Path, what: str) -> None:
    from model.paths import cannot_create_in

    why = cannot_create_in(p)
    if why:
        raise ExportError(f"--out {target}: {what} {p} is not writable ({why}); fix: choose a "
                          "writable location for --out or change the directory's permissions")


def check_export_target(out_dir: str | Path) -> None:
    """Raise :class:`ExportError` (naming the path and the fix) unless ``out_dir`` can take an
    export: a new path under a writable directory, an empty writable directory, or a writable
    earlier export (a directory with ``manifest.json``). Cheap: call it before quantizing."""
    target = Path(out_dir)
    st = _stat(target)
    if st is not None:
        if not os.path.isdir(target):
            raise ExportError(f"--out {target} exists and is not a directory; {_FIX_PATH}")
        mpath = target / MANIFEST
        try:
            entries = os.listdir(target)
        except OSError as e:
            raise ExportError(f"--out {target} cannot be listed ({e.strerror}); fix: choose a "
                              "readable directory for --out") from None
        if entries and not mpath.is_file():
            raise ExportError(f"--out {target} is a non-empty directory without {MANIFEST} "
                              "(not an export); fix: choose an empty or new directory, or "
                              "move its files away")
        _writable_dir(target, target, "directory")
        hexdir = target / HEX_DIR
        if os.path.lexists(hexdir):
            if not hexdir.is_dir():
                raise ExportError(f"--out {target}: {hexdir} is not a directory; fix: move it "
                                  "away (the export writes its hex images there)")
            _writable_dir(hexdir, target, "directory")
        for name in (WEIGHTS, MANIFEST):
            if os.path.isdir(target / name):
                raise ExportError(f"--out {target}: {target / name} is a directory; fix: move "
                                  "it away (the export writes a file there)")
        return
    # A new path: the nearest existing ancestor must be a writable directory.
    anc = target.absolute().parent
    while _stat(anc) is None and anc != anc.parent:
        anc = anc.parent
    if not os.path.isdir(anc):
        raise ExportError(f"--out {target}: {anc} is a file, not a directory, so nothing can "
                          f"be created under it; {_FIX_PATH}")
    _writable_dir(anc, target, "the nearest existing directory")


def _old_hex_paths(target: Path) -> set[str]:
    """The hex images an earlier export in ``target`` lists (only well-formed ``hex/*.hex``
    paths; an unreadable old manifest lists nothing)."""
    try:
        man = json.loads((target / MANIFEST).read_text())
        listed = man["tensors"].values()
        return {e["hex"] for e in listed
                if isinstance(e, dict) and isinstance(e.get("hex"), str)
                and _HEX_NAME.fullmatch(e["hex"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


# ----------------------------------------------------------------------------- writing


def _write_export(qm: QuantModel, d: Path) -> list[str]:
    """Write every file of the export of ``qm`` under ``d`` -> their relative paths, the
    manifest last."""
    (d / WEIGHTS).write_bytes(_npz_bytes(qm.tensors))
    (d / HEX_DIR).mkdir()
    written, sha = [WEIGHTS], {}
    for name in sorted(qm.tensors):
        data = _hex_bytes(name, qm.tensors[name])
        (d / hex_path(name)).write_bytes(data)
        sha[name] = hashlib.sha256(data).hexdigest()
        written.append(hex_path(name))
    text = json.dumps(manifest_dict(qm, sha), indent=2, sort_keys=True)
    (d / MANIFEST).write_text(text + "\n")
    return [*written, MANIFEST]


def _export_new(qm: QuantModel, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_export(qm, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700; give the directory normal modes
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _export_into(qm: QuantModel, target: Path) -> None:
    """Replace foldaccel's files in the existing directory ``target`` one by one."""
    old = _old_hex_paths(target)
    tmp = Path(tempfile.mkdtemp(prefix=".foldaccel-tmp-", dir=target))
    try:
        files = _write_export(qm, tmp)
        stale = old - set(files)
        # Renames: every data file, then drop hex images the new manifest does not list, then
        # the manifest, so an interrupted export keeps a manifest naming the old images.
        (target / HEX_DIR).mkdir(exist_ok=True)
        for rel in files:
            if rel != MANIFEST:
                os.replace(tmp / rel, target / rel)
        for rel in sorted(stale):
            (target / rel).unlink(missing_ok=True)
        os.replace(tmp / MANIFEST, target / MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export(qm: QuantModel, out_dir: str | Path) -> Path:
    """Write ``qm`` to ``out_dir`` (new, empty or an earlier export; see the module docstring)
    -> the path."""
    target = Path(out_dir)
    check_export_target(target)
    if os.path.isdir(target):
        _export_into(qm, target)
    else:
        _export_new(qm, target)
    return target


def export_model(cfg: Config, out_dir: str | Path, seed: int = 0,
                 stage=None) -> tuple[Path, QuantModel]:
    """Check ``out_dir`` (:func:`check_export_target`), quantize the float model of ``cfg``
    built from ``seed`` and export it; ``stage`` as in :func:`model.quantize.quantize_model`."""
    from model.quantize import quantize_model

    check_export_target(out_dir)
    qm = quantize_model(cfg, seed=seed, stage=stage)
    return export(qm, out_dir), qm


# ----------------------------------------------------------------------------- loading


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Dotted path of the first differing field of two nested dicts (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub
            diff = _first_difference(a[k], b[k], sub)
            if diff:
                return diff
        return None
    return None if a == b else path


def _lookup(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return "<absent>"
        d = d[part]
    return d


def expected_scales(cfg: Config) -> list[str]:
    """Names of the activation scales an export must carry."""
    return model_points(cfg) + [f"L{layer}.{p}" for layer in range(cfg.model.n_layers)
                                for p in ACT_POINTS]


_PARAM_RANGES = {"m": (0, intops.M_MAX), "m_a": (0, intops.M_MAX), "m_b": (0, intops.M_MAX),
                 "s": (intops.S_MIN, intops.S_MAX)}


def _read_manifest(d: Path) -> tuple[Path, dict[str, Any], Config]:
    """``(path, manifest, config)`` of the export in ``d``; the manifest's format, version,
    top-level fields and complete, valid config (matching its digest) are checked."""
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise ExportError(f"{mpath} not found; fix: point --weights at a directory written by "
                          "'foldaccel export'")
    try:
        man = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{mpath} is not valid JSON ({e}); fix: export again") from None
    except OSError as e:
        raise ExportError(f"{mpath} cannot be read ({e.strerror}); fix: make it readable or "
                          "export again") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT or man.get("version") != VERSION:
        raise ExportError(f"{mpath}: field 'format'/'version' is not {FORMAT!r} version "
                          f"{VERSION}; fix: export again with this foldaccel")
    for key in ("config", "seed", "scales", "formats", "tensors"):
        if key not in man:
            raise ExportError(f"{mpath}: field '{key}' is missing; fix: export again")
    try:
        cfg = config_from_dict(man["config"], f"{mpath} config", complete=True)
    except ConfigError as e:
        raise ExportError(f"{e}; (this config is stored in the export, so the real fix is: "
                          "export again)") from None
    if man.get("config_digest") != cfg.digest():
        raise ExportError(f"{mpath}: field 'config_digest' does not match the stored config "
                          "(manifest edited or corrupted); fix: export again")
    return mpath, man, cfg


def export_config(path: str | Path) -> Config:
    """The config the export in directory ``path`` was made with (validated, complete), read
    from its manifest without loading the tensors. Raises :class:`ExportError` naming the file
    and the fix for a missing or broken manifest."""
    return _read_manifest(Path(path))[2]


def _check_hex(d: Path, mpath: Path, name: str, entry: dict[str, Any]) -> None:
    """The hex image of tensor ``name`` is where the manifest says and has its sha256."""
    if entry.get("hex") != hex_path(name):
        raise ExportError(f"{mpath}: tensor '{name}' lists hex image {entry.get('hex')!r}, "
                          f"expected {hex_path(name)!r}; fix: export again")
    hpath = d / hex_path(name)
    try:
        with open(hpath, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        raise ExportError(f"{hpath}: hex image of tensor '{name}' is missing; fix: export "
                          "again") from None
    except OSError as e:
        raise ExportError(f"{hpath}: hex image of tensor '{name}' cannot be read "
                          f"({e.strerror}); fix: export again") from None
    if digest != entry.get("hex_sha256"):
        raise ExportError(f"{hpath}: sha256 of the hex image of tensor '{name}' does not match "
                          f"'hex_sha256' in {MANIFEST} (file corrupted or edited); fix: export "
                          "again")


def load_export(path: str | Path, config: Config | None = None) -> QuantModel:
    """Load and validate an export directory -> :class:`QuantModel`.

    Checks the manifest format, that its config equals ``config`` (when given), that every
    tensor the config needs is listed and stored with the listed shape, dtype and sha256, that
    its hex image is listed, present and matches ``hex_sha256``, that nothing extra is stored,
    that requantization parameters are in range and that every scale is present and positive.
    Raises :class:`ExportError` naming the file, field or tensor.
    """
    d = Path(path)
    mpath, man, cfg = _read_manifest(d)
    if config is not None:
        diff = _first_difference(man["config"], config.to_dict())
        if diff:
            raise ExportError(
                f"{mpath}: config field '{diff}' = {_lookup(man['config'], diff)!r} differs "
                f"from --config {config.source} value {_lookup(config.to_dict(), diff)!r}; "
                "fix: pass the config the weights were exported with, or export again with "
                "this config")
    specs = tensor_specs(cfg)
    listed = man["tensors"]
    for name in specs:
        if name not in listed:
            raise ExportError(f"{mpath}: tensor '{name}' required by the config is not listed; "
                              "fix: export again")
    for name in listed:
        if name not in specs:
            raise ExportError(f"{mpath}: lists tensor '{name}', which this config does not "
                              "use; fix: export again with this config")
    wpath = d / WEIGHTS
    try:
        npz = np.load(wpath, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ExportError(f"{wpath} cannot be read ({e}); fix: export again") from None
    tensors: dict[str, np.ndarray] = {}
    with npz:
        stored = set(npz.files)
        for name, (shape, dtype) in specs.items():
            entry = listed[name]
            if name not in stored:
                raise ExportError(f"{wpath}: tensor '{name}' is missing; fix: export again")
            try:
                a = npz[name]
            except ValueError as e:  # e.g. an object array (pickles are refused)
                raise ExportError(f"{wpath}: tensor '{name}' cannot be loaded ({e})") from None
            if str(a.dtype) != dtype or entry.get("dtype") != dtype:
                raise ExportError(f"tensor '{name}': dtype {a.dtype} in {WEIGHTS}, "
                                  f"{entry.get('dtype')} in {MANIFEST}, expected {dtype}; "
                                  "fix: export again")
            if tuple(a.shape) != shape or tuple(entry.get("shape", ())) != shape:
                raise ExportError(f"tensor '{name}': shape {tuple(a.shape)} in {WEIGHTS}, "
                                  f"{entry.get('shape')} in {MANIFEST}, expected {shape} for "
                                  "this config; fix: export again")
            if array_sha256(a) != entry.get("sha256"):
                raise ExportError(f"tensor '{name}': sha256 of {WEIGHTS} data does not match "
                                  f"{MANIFEST} (file corrupted or edited); fix: export again")
            lo_hi = _PARAM_RANGES.get(name.rsplit(".", 1)[-1])
            if lo_hi and a.size and (a.min() < lo_hi[0] or a.max() > lo_hi[1]):
                raise ExportError(f"tensor '{name}': values outside [{lo_hi[0]}, {lo_hi[1]}]")
            tensors[name] = a
        extra = sorted(stored - set(specs))
        if extra:
            raise ExportError(f"{wpath}: holds tensor '{extra[0]}' not in the manifest; fix: "
                              "export again")
    for name in specs:
        _check_hex(d, mpath, name, listed[name])
    scales, formats = man["scales"], man["formats"]
    for name in expected_scales(cfg):
        v = scales.get(name)
        if not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ExportError(f"{mpath}: scale '{name}' is missing or not a positive number")
        if not isinstance(formats, dict) or formats.get(name) != scale_format(name, cfg):
            got = formats.get(name) if isinstance(formats, dict) else None
            raise ExportError(f"{mpath}: formats['{name}'] is {got!r}, expected "
                              f"{scale_format(name, cfg)!r}; fix: export again")
    wscales = {}
    weights = [f"L{layer}.{lin}.weight" for layer in range(cfg.model.n_layers)
               for lin in LINEARS]
    weights += [f"{lin}.weight" for lin in (HEAD, TAIL) if f"{lin}.weight" in specs]
    for name in weights:
        sc = np.asarray(listed[name].get("scale", []), dtype=np.float64)
        if sc.shape != (specs[name][0][1],):
            raise ExportError(f"{mpath}: tensor '{name}' needs {specs[name][0][1]} "
                              "per-channel scales")
        wscales[name] = sc
    return QuantModel(cfg, int(man["seed"]), tensors, {k: float(v) for k, v in scales.items()},
                      wscales, man.get("calibration", {}))
