"""Export: byte-identical files, hex images, atomic writes, target checks, validated loading,
CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import model.export as ex
import model.quantize
from model.config import load_config
from model.export import ExportError, check_export_target, export, export_config, load_export
from model.golden import GoldenEncoder
from model.quantize import quantize_model, tensor_specs
from sim.cli import main

TINY = load_config("configs/tiny.toml")


def _re(p) -> str:
    """``p`` as a regular expression matching itself."""
    return re.escape(str(p))


@pytest.fixture(scope="module")
def qm():
    return quantize_model(TINY, seed=0)


@pytest.fixture
def exported(qm, tmp_path):
    return export(qm, tmp_path / "w")


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_two_exports_with_the_same_seed_are_byte_identical(tmp_path):
    assert main(["export", "--config", "configs/tiny.toml", "--out", str(tmp_path / "a"),
                 "--seed", "3"]) == 0
    assert main(["export", "--config", "configs/tiny.toml", "--out", str(tmp_path / "b"),
                 "--seed", "3"]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == len(tensor_specs(TINY)) + 2
    for name in a:
        assert a[name] == b[name], name
    assert main(["export", "--config", "configs/tiny.toml", "--out", str(tmp_path / "c"),
                 "--seed", "4"]) == 0
    assert _files(tmp_path / "c")["weights.npz"] != a["weights.npz"]


def test_npz_members_are_sorted_and_timestamp_free(exported):
    with zipfile.ZipFile(exported / "weights.npz") as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    with np.load(exported / "weights.npz", allow_pickle=False) as npz:
        assert len(npz.files) == len(tensor_specs(TINY))


def test_manifest_checksums_scales_and_roundtrip(qm, exported):
    man = json.loads((exported / "manifest.json").read_text())
    assert man["config"] == TINY.to_dict() and man["seed"] == 0
    with np.load(exported / "weights.npz", allow_pickle=False) as npz:
        for name, entry in man["tensors"].items():
            a = npz[name]
            assert entry["sha256"] == hashlib.sha256(a.astype(a.dtype.newbyteorder("<"))
                                                     .tobytes()).hexdigest()
            assert entry["shape"] == list(a.shape) and entry["dtype"] == str(a.dtype)
    loaded = load_export(exported, TINY)
    assert loaded.scales == qm.scales and loaded.seed == 0
    for name, a in qm.tensors.items():
        assert np.array_equal(loaded[name], a) and loaded[name].dtype == a.dtype
    for name, s in qm.weight_scales.items():
        assert np.array_equal(loaded.weight_scales[name], s)
    # The loaded model computes the same integers.
    g1, g2 = GoldenEncoder(qm), GoldenEncoder(loaded)
    xq = np.random.default_rng(1).integers(-30000, 30000, (9, 64)).astype(np.int16)
    assert np.array_equal(g1.stream(xq), g2.stream(xq))
    # Storage formats of the activations: the int16 residual stream, uint8 probabilities.
    assert man["version"] == 3 and man["numerics"]["prob_bits"] == 8
    assert man["numerics"]["prob_zero_point"] == 128
    fmt = man["formats"]
    assert set(fmt) == set(man["scales"])
    assert fmt["input"] == fmt["L0.x_in"] == fmt["L1.x_in"] == fmt["L0.ln_out"] == "int16"
    assert fmt["L1.resid1"] == fmt["L1.resid2"] == "int16" and fmt["L0.prob"] == "uint8"
    assert fmt["L0.attn_in"] == fmt["L1.ffn_out"] == fmt["L0.score"] == "int8"


def _parse_hex(path: Path, bits: int) -> list[int]:
    vals = []
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            continue
        assert len(line) == bits // 4
        v = int(line, 16)
        vals.append(v - (1 << bits) if v >= 1 << (bits - 1) else v)
    return vals


def test_hex_images(qm, exported):
    for name, bits in (("L0.q.weight", 8), ("L0.q.bias", 32), ("L0.ln_in.eps", 64),
                       ("L1.score.exp_lut", 32), ("rsqrt_lut", 32)):
        a = qm[name]
        assert _parse_hex(exported / "hex" / f"{name}.hex", bits) == \
            [int(v) for v in a.reshape(-1)]
    # Row-major: element [k, n] of the (K, N) weight is on data line k*N + n.
    w = qm["L0.fc1.weight"]
    vals = _parse_hex(exported / "hex" / "L0.fc1.weight.hex", 8)
    assert vals[1 * w.shape[1] + 5] == w[1, 5]
    assert ex.hex_image("t", np.array([-1, 0, 127, -128], np.int8)).splitlines()[1:] == \
        ["ff", "00", "7f", "80"]


# ----------------------------------------------------------------------------- atomicity


def _fails_on_call(real, n: int, message: str):
    """``real``, except that its ``n``-th call raises ``OSError(message)``."""
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(message)
        return real(*args)

    return flaky


def test_failed_export_leaves_nothing_and_keeps_old_export(qm, tmp_path, monkeypatch):
    target = tmp_path / "w"
    real = ex.hex_image
    monkeypatch.setattr(ex, "hex_image", _fails_on_call(real, 20, "disk full (simulated)"))
    with pytest.raises(OSError, match="disk full"):
        export(qm, target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(ex, "hex_image", real)
    export(qm, target)
    before = _files(target)
    monkeypatch.setattr(ex, "hex_image", _fails_on_call(real, 20, "disk full (simulated)"))
    with pytest.raises(OSError):
        export(qm, target)
    assert _files(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def test_export_refuses_foreign_directory(qm, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an export"):
        export(qm, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_reexport_replaces_only_its_own_files(qm, tmp_path):
    target = export(qm, tmp_path / "w")
    fresh = _files(target)
    # A user's files, a hex image the old manifest lists but the new one does not, and an
    # unlisted .hex file foldaccel does not own.
    (target / "notes.txt").write_text("mine")
    (target / "hex" / "mine.txt").write_text("also mine")
    (target / "hex" / "unlisted.hex").write_text("00\n")
    (target / "hex" / "gone.hex").write_text("00\n")
    _edit_manifest(target, lambda m: m["tensors"].__setitem__("gone", {"hex": "hex/gone.hex"}))
    (target / "hex" / "L0.q.bias.hex").write_text("edited\n")
    export(qm, target)
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "hex" / "mine.txt").read_text() == "also mine"
    assert (target / "hex" / "unlisted.hex").read_text() == "00\n"
    assert not (target / "hex" / "gone.hex").exists()
    after = _files(target)
    for name in ("notes.txt", "hex/mine.txt", "hex/unlisted.hex"):
        after.pop(name)
    assert after == fresh
    assert [p.name for p in tmp_path.iterdir()] == ["w"]
    assert sorted(p.name for p in target.iterdir()) == ["hex", "manifest.json", "notes.txt",
                                                        "weights.npz"]
    load_export(target, TINY)


def test_old_manifest_cannot_make_export_delete_other_files(qm, tmp_path):
    target = export(qm, tmp_path / "w")
    (tmp_path / "precious.hex").write_text("x")
    (target / "notes.txt").write_text("mine")
    _edit_manifest(target, lambda m: m["tensors"].update(
        {"a": {"hex": "../precious.hex"}, "b": {"hex": "notes.txt"},
         "c": {"hex": "hex/../notes.txt"}, "d": {"hex": 3}}))
    export(qm, target)
    assert (tmp_path / "precious.hex").read_text() == "x"
    assert (target / "notes.txt").read_text() == "mine"
    load_export(target, TINY)


def test_export_into_an_empty_directory(qm, tmp_path):
    target = tmp_path / "w"
    target.mkdir()
    export(qm, target)
    assert _files(target) == _files(export(qm, tmp_path / "fresh"))


def test_failed_rename_leaves_no_temp_files(qm, tmp_path, monkeypatch):
    target = export(qm, tmp_path / "w")
    (target / "notes.txt").write_text("mine")
    real = os.replace
    monkeypatch.setattr(os, "replace", _fails_on_call(real, 5, "device gone (simulated)"))
    with pytest.raises(OSError, match="device gone"):
        export(qm, target)
    monkeypatch.setattr(os, "replace", real)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]
    assert sorted(p.name for p in target.iterdir()) == ["hex", "manifest.json", "notes.txt",
                                                        "weights.npz"]
    assert not any(p.name.startswith(".") for p in target.rglob("*"))
    export(qm, target)
    load_export(target, TINY)


def test_foreign_directory_is_refused_before_quantizing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("quantize_model must not run for a refused target")

    monkeypatch.setattr(model.quantize, "quantize_model", boom)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError,
                       match=rf"--out {_re(tmp_path)} is a non-empty directory without "
                             r"manifest.json \(not an export\); fix:"):
        ex.export_model(TINY, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main(["export", "--config", "configs/tiny.toml", "--out", str(tmp_path)]) == 2


def test_unwritable_targets_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(model.quantize, "quantize_model", lambda *a, **k: pytest.fail("ran"))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ExportError,
                       match=rf"--out {_re(f)} exists and is not a directory; fix:"):
        ex.export_model(TINY, f)
    for under in (f / "w", f / "a" / "b"):
        with pytest.raises(ExportError,
                           match=rf"--out {_re(under)}: {_re(f)} is a file, not a directory.*; "
                                 r"fix: choose another --out path"):
            ex.export_model(TINY, under)
    with pytest.raises(ExportError, match=r"not a directory"):
        check_export_target("/etc/passwd/x")
    assert f.read_text() == "x"
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ExportError, match=r"broken symbolic link"):
        check_export_target(link)
    check_export_target(tmp_path / "new" / "deeper")  # creatable: fine
    check_export_target(tmp_path / "new")


def test_read_only_parent_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # root bypasses permission bits, so deny access through os.access itself.
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro
                        else real_access(p, mode))
    with pytest.raises(ExportError,
                       match=rf"--out {_re(ro / 'w' / 'x')}: the nearest existing directory "
                             rf"{_re(ro)} is not writable \(no write permission\); fix:"):
        check_export_target(ro / "w" / "x")
    with pytest.raises(ExportError,
                       match=rf"--out {_re(ro)}: directory {_re(ro)} is not writable"):
        check_export_target(ro)


def test_unwritable_location_is_refused_for_real():
    # /proc refuses new entries even for root, who ignores permission bits
    with pytest.raises(ExportError, match=r"is not writable"):
        check_export_target("/proc/foldaccel-no-such/w")


def test_hex_images_are_checked_on_load(exported):
    man = json.loads((exported / "manifest.json").read_text())
    entry = man["tensors"]["L0.q.weight"]
    data = (exported / entry["hex"]).read_bytes()
    assert entry["hex_sha256"] == hashlib.sha256(data).hexdigest()
    (exported / entry["hex"]).write_bytes(data.replace(b"\n", b"\r\n", 3))
    with pytest.raises(ExportError, match=r"hex/L0.q.weight.hex: sha256 of the hex image of "
                                          r"tensor 'L0.q.weight' does not match 'hex_sha256'.*"
                                          r"fix: export again"):
        load_export(exported)
    (exported / entry["hex"]).unlink()
    with pytest.raises(ExportError, match=r"hex/L0.q.weight.hex: hex image of tensor "
                                          r"'L0.q.weight' is missing; fix: export again"):
        load_export(exported)


def test_hex_path_in_manifest_is_checked(exported):
    _edit_manifest(exported, lambda m: m["tensors"]["rsqrt_lut"].__setitem__("hex", "x.hex"))
    with pytest.raises(ExportError, match=r"tensor 'rsqrt_lut' lists hex image 'x.hex', "
                                          r"expected 'hex/rsqrt_lut.hex'"):
        load_export(exported)


def test_export_config_reads_the_stored_config(exported, tmp_path):
    cfg = export_config(exported)
    assert cfg == TINY and cfg.digest() == TINY.digest()
    assert cfg.source.endswith("manifest.json config")
    with pytest.raises(ExportError, match=r"manifest.json not found; fix:"):
        export_config(tmp_path / "nowhere")
    _edit_manifest(exported, lambda m: m["config"]["model"].__setitem__("n_heads", 5))
    with pytest.raises(ExportError, match=r"field 'n_heads' =5 does not divide.*export again"):
        export_config(exported)
    _edit_manifest(exported, lambda m: m["config"]["model"].pop("n_heads"))
    with pytest.raises(ExportError, match=r"missing field\(s\) \[model\] n_heads"):
        export_config(exported)
    _edit_manifest(exported, lambda m: m.__setitem__("config", TINY.to_dict()))
    _edit_manifest(exported, lambda m: m["config"]["hardware"].__setitem__("rows", 8))
    with pytest.raises(ExportError, match=r"'config_digest' does not match"):
        export_config(exported)
    _edit_manifest(exported, lambda m: m.pop("config"))
    with pytest.raises(ExportError, match=r"field 'config' is missing"):
        export_config(exported)


# ----------------------------------------------------------------------------- validation


def _rewrite_npz(d: Path, change) -> None:
    with np.load(d / "weights.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (d / "weights.npz").write_bytes(buf.getvalue())


def _edit_manifest(d: Path, change) -> None:
    man = json.loads((d / "manifest.json").read_text())
    change(man)
    (d / "manifest.json").write_text(json.dumps(man))


def test_missing_tensor_in_npz(exported):
    _rewrite_npz(exported, lambda a: a.pop("L1.fc2.bias"))
    with pytest.raises(ExportError, match=r"weights.npz: tensor 'L1.fc2.bias' is missing"):
        load_export(exported)


def test_missing_tensor_in_manifest(exported):
    _edit_manifest(exported, lambda m: m["tensors"].pop("L0.k.m"))
    with pytest.raises(ExportError, match=r"tensor 'L0.k.m' required by the config"):
        load_export(exported)


def test_wrong_shape(exported):
    _rewrite_npz(exported, lambda a: a.__setitem__("L0.q.weight", a["L0.q.weight"][:, :8]))
    with pytest.raises(ExportError, match=r"tensor 'L0.q.weight': shape \(32, 8\)"):
        load_export(exported)


def test_wrong_dtype(exported):
    _rewrite_npz(exported, lambda a: a.__setitem__("L0.q.bias", a["L0.q.bias"].astype(np.int64)))
    with pytest.raises(ExportError, match=r"tensor 'L0.q.bias': dtype int64"):
        load_export(exported)


def test_bad_checksum(exported):
    def flip(a):
        w = a["L1.v.weight"].copy()
        w[0, 0] = -w[0, 0] if w[0, 0] else 1
        a["L1.v.weight"] = w
    _rewrite_npz(exported, flip)
    with pytest.raises(ExportError, match=r"tensor 'L1.v.weight': sha256"):
        load_export(exported)


def test_extra_tensor(exported):
    _rewrite_npz(exported, lambda a: a.__setitem__("bogus", np.zeros(3, np.int8)))
    with pytest.raises(ExportError, match=r"holds tensor 'bogus'"):
        load_export(exported)


def test_pickled_object_array_is_refused(exported):
    _rewrite_npz(exported, lambda a: a.__setitem__("L0.q.bias", np.array([{}], dtype=object)))
    with pytest.raises(ExportError, match=r"'L0.q.bias' cannot be loaded"):
        load_export(exported)


def test_out_of_range_multiplier(exported):
    _rewrite_npz(exported, lambda a: a.__setitem__("L0.ctx.s", np.array([48], np.int32)))
    _edit_manifest(exported, lambda m: m["tensors"]["L0.ctx.s"].__setitem__(
        "sha256", ex.array_sha256(np.array([48], np.int32))))
    with pytest.raises(ExportError, match=r"tensor 'L0.ctx.s': values outside \[1, 47\]"):
        load_export(exported)


def test_config_mismatch_names_the_field(exported):
    other = TINY.replace(fold_factor=1)
    with pytest.raises(ExportError, match=r"config field 'model.fold_factor' = 2 differs"):
        load_export(exported, other)
    with pytest.raises(ExportError, match=r"config field 'hardware.rows' = 16 differs"):
        load_export(exported, TINY.replace(rows=8))


def test_wrong_activation_format(exported):
    _edit_manifest(exported, lambda m: m["formats"].__setitem__("L1.resid2", "int8"))
    with pytest.raises(ExportError, match=r"formats\['L1.resid2'\] is 'int8', expected 'int16'"):
        load_export(exported)
    _edit_manifest(exported, lambda m: m.pop("formats"))
    with pytest.raises(ExportError, match=r"field 'formats' is missing"):
        load_export(exported)


def test_old_format_version_is_rejected(exported):
    _edit_manifest(exported, lambda m: m.__setitem__("version", 1))
    with pytest.raises(ExportError, match=r"'format'/'version'.*version 3"):
        load_export(exported)


def test_missing_scale_and_bad_manifest(exported, tmp_path):
    _edit_manifest(exported, lambda m: m["scales"].pop("L1.ffn_out"))
    with pytest.raises(ExportError, match=r"scale 'L1.ffn_out' is missing"):
        load_export(exported)
    (exported / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"manifest.json is not valid JSON"):
        load_export(exported)
    with pytest.raises(ExportError, match=r"manifest.json not found"):
        load_export(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- CLI


def test_cli_golden_json(exported, capsys):
    assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                 "--segments", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"sqnr_db", "sqnr_db_per_layer"}
    assert len(out["sqnr_db_per_layer"]) == 2
    assert out["sqnr_db"] == out["sqnr_db_per_layer"][-1] >= 25


def test_cli_golden_per_op_table(exported, capsys):
    assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                 "--segments", "2", "--per-op"]) == 0
    text = capsys.readouterr().out
    assert "encoder output" in text and "probs" in text and "ln_ffn" in text


def test_cli_golden_seed_sweep(exported, capsys):
    assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                 "--segments", "2", "--seeds", "0-2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_seeds"] == [0, 1, 2] and set(out["worst_layer_per_seed"]) == {"0", "1", "2"}
    lows, means = out["sqnr_db_per_layer_min"], out["sqnr_db_per_layer_mean"]
    assert len(lows) == len(means) == 2 and all(lo <= m for lo, m in zip(lows, means, strict=True))
    assert min(lows) == min(out["worst_layer_per_seed"].values())
    assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                 "--segments", "1", "--seeds", "4,7"]) == 0
    assert "min" in capsys.readouterr().out
    for bad in ("x", "5-2", "-3"):
        assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                     "--seeds", bad]) == 2
        assert "--seeds" in capsys.readouterr().err
    assert main(["golden", "--config", "configs/tiny.toml", "--weights", str(exported),
                 "--seeds", "0-1", "--per-op"]) == 2


def test_cli_golden_rejects_mismatched_config(exported, capsys):
    rc = main(["golden", "--config", "configs/tiny.toml", "--fold", "1", "--weights",
               str(exported), "--segments", "1"])
    assert rc == 2
    assert "model.fold_factor" in capsys.readouterr().err


def test_speech_model_roundtrip(tmp_path):
    """The input projection and classifier tensors, their per-channel scales and the int8
    formats of the features, the logits and the last layer's output survive an export."""
    cfg = load_config("configs/speech_tiny.toml")
    sqm = quantize_model(cfg, seed=3, n_utterances=2, n_segments=3)
    d = export(sqm, tmp_path / "w")
    man = json.loads((d / "manifest.json").read_text())
    assert man["formats"]["features"] == "int8" and man["formats"]["logits"] == "int8"
    assert man["formats"]["L1.ln_out"] == "int8" and man["formats"]["L0.ln_out"] == "int16"
    back = load_export(d)
    assert set(back.tensors) == set(tensor_specs(cfg)) >= {"input_proj.weight", "classifier.m"}
    for name, a in sqm.tensors.items():
        assert np.array_equal(back.tensors[name], a), name
    assert np.array_equal(back.weight_scales["classifier.weight"],
                          sqm.weight_scales["classifier.weight"])
    frames = np.random.default_rng(0).normal(size=(9, 80))
    g1, g2 = GoldenEncoder(sqm), GoldenEncoder(back)
    assert np.array_equal(g1.stream(g1.quantize_input(frames)),
                          g2.stream(g2.quantize_input(frames)))
