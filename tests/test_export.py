"""Export: byte-identical files, hex images, atomic writes, validated loading, CLI."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import model.export as ex
from model.config import load_config
from model.export import ExportError, export, load_export
from model.golden import GoldenEncoder
from model.quantize import quantize_model, tensor_specs
from sim.cli import main

TINY = load_config("configs/tiny.toml")


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
    assert man["version"] == 2 and man["numerics"]["prob_bits"] == 8
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


def test_failed_export_leaves_nothing_and_keeps_old_export(qm, tmp_path, monkeypatch):
    target = tmp_path / "w"
    calls = {"n": 0}
    real = ex.hex_image

    def flaky(name, a):
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError("disk full (simulated)")
        return real(name, a)

    monkeypatch.setattr(ex, "hex_image", flaky)
    with pytest.raises(OSError, match="disk full"):
        export(qm, target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(ex, "hex_image", real)
    export(qm, target)
    before = _files(target)
    calls["n"] = 0
    monkeypatch.setattr(ex, "hex_image", flaky)
    with pytest.raises(OSError):
        export(qm, target)
    assert _files(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def test_export_refuses_foreign_directory(qm, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an export"):
        export(qm, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_replaces_an_older_export(qm, tmp_path):
    export(qm, tmp_path / "w")
    (tmp_path / "w" / "stale.txt").write_text("old")
    export(qm, tmp_path / "w")
    assert not (tmp_path / "w" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


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
    with pytest.raises(ExportError, match=r"'format'/'version'.*version 2"):
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
