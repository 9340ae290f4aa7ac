"""Config files: complete or `extends` a base, cycles, --fold errors, config_from_dict policy."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from model.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    HardwareConfig,
    ModelConfig,
    config_from_dict,
    load_config,
)

TINY_PATH = CONFIG_DIR / "tiny.toml"
TINY = load_config(TINY_PATH)
N_MODEL = len(dataclasses.fields(ModelConfig))
N_HW = len(dataclasses.fields(HardwareConfig))


def _re(p) -> str:
    """``p`` as a regular expression matching itself."""
    return re.escape(str(p))


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _without(text: str, field: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(f"{field} ="))


# ----------------------------------------------------------------------------- completeness


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_complete(path):
    data = tomllib.loads(path.read_text())
    assert "extends" not in data
    for table, cls in (("model", ModelConfig), ("hardware", HardwareConfig)):
        assert set(data[table]) == {f.name for f in dataclasses.fields(cls)}, table
    load_config(path)


def test_missing_field_is_named_with_file_table_and_fix(tmp_path):
    p = _write(tmp_path, "c.toml", _without(TINY_PATH.read_text(), "d_model"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: missing field(s) [model] d_model (1 of {N_MODEL} fields);")
    assert "[hardware]" not in msg.split(";")[0]
    assert msg.endswith('fix: add `d_model = ...` to [model] (and the other missing fields) or '
                        'add `extends = "demo.toml"` at the top of the file to take them from a '
                        "base config")


def test_missing_hardware_fields_are_all_named(tmp_path):
    text = _without(_without(TINY_PATH.read_text(), "clock_mhz"), "rows")
    with pytest.raises(ConfigError, match=rf"\[hardware\] rows, clock_mhz \(2 of {N_HW} fields\)"
                                          r".*fix: add `rows = \.\.\.` to \[hardware\]"):
        load_config(_write(tmp_path, "c.toml", text))


@pytest.mark.parametrize("text", ["", "# nothing here\n", "[model]\n[hardware]\n"])
def test_empty_file_names_the_missing_fields(tmp_path, text):
    p = _write(tmp_path, "empty.toml", text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: missing field(s) [model] d_model, n_heads, ffn_dim, n_layers, "
                          f"segment_length, right_context and {N_MODEL - 6} more "
                          f"(all {N_MODEL} fields); [hardware] rows, cols,")
    assert f"(all {N_HW} fields)" in msg and 'extends = "demo.toml"' in msg


def test_unknown_keys_still_fail(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown table \[modle\]; fix: use \[model\] and "
                                          r"\[hardware\] or a top-level `extends"):
        load_config(_write(tmp_path, "a.toml", 'extends = "tiny.toml"\n[modle]\nx = 1\n'))
    with pytest.raises(ConfigError, match=r"a.toml \[model\]: unknown field 'dmodel'"):
        load_config(_write(tmp_path, "a.toml", 'extends = "tiny.toml"\n[model]\ndmodel = 1\n'))
    with pytest.raises(ConfigError, match=r"'model' must be a table"):
        load_config(_write(tmp_path, "a.toml", 'extends = "tiny.toml"\nmodel = 3\n'))


def test_to_toml_roundtrips_as_a_complete_file(tmp_path):
    cfg = TINY.replace(fold_factor=4, rows=8)
    assert load_config(_write(tmp_path, "c.toml", cfg.to_toml())) == cfg


# ----------------------------------------------------------------------------- extends


def test_extends_a_shipped_config_by_name(tmp_path):
    p = _write(tmp_path, "c.toml", 'extends = "tiny.toml"\n[model]\nn_layers = 3\n'
                                   "[hardware]\nrows = 8\n")
    cfg = load_config(p)
    assert cfg == TINY.replace(n_layers=3, rows=8) and cfg.source == str(p)


def test_extends_relative_to_the_file_wins_over_configs_dir(tmp_path):
    _write(tmp_path, "sub/tiny.toml", TINY.replace(d_model=128).to_toml())
    _write(tmp_path, "sub/mid.toml", 'extends = "tiny.toml"\n[model]\nn_heads = 8\n')
    p = _write(tmp_path, "top.toml", 'extends = "sub/mid.toml"\n[hardware]\ncols = 4\n')
    assert load_config(p) == TINY.replace(d_model=128, n_heads=8, cols=4)


def test_extends_override_can_fix_the_base_and_errors_name_the_file(tmp_path):
    base = _write(tmp_path, "base.toml", TINY.to_toml().replace("fold_factor = 2",
                                                                "fold_factor = 3"))
    with pytest.raises(ConfigError, match=rf"{_re(base)} \[model\]: field 'fold_factor' =3"):
        load_config(base)
    p = _write(tmp_path, "c.toml", 'extends = "base.toml"\n[model]\nfold_factor = 4\n')
    assert load_config(p).model.fold_factor == 4
    bad = _write(tmp_path, "bad.toml", 'extends = "base.toml"\n[model]\nn_heads = 5\n')
    with pytest.raises(ConfigError, match=rf"{_re(bad)} \[model\]: field 'fold_factor' =3"):
        load_config(bad)


def test_extends_an_incomplete_base_reports_the_missing_fields(tmp_path):
    _write(tmp_path, "base.toml", _without(TINY_PATH.read_text(), "frame_ms"))
    p = _write(tmp_path, "c.toml", 'extends = "base.toml"\n')
    with pytest.raises(ConfigError,
                       match=rf"{_re(p)}: missing field\(s\) \[model\] frame_ms"):
        load_config(p)


def test_extends_cycle_is_detected(tmp_path):
    a = _write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    b = _write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError) as e:
        load_config(a)
    assert str(e.value) == (f"config files extend each other in a cycle: {a} -> {b} -> {a}; "
                            "fix: remove the `extends` line from one of them")
    self_ref = _write(tmp_path, "s.toml", 'extends = "s.toml"\n')
    with pytest.raises(ConfigError, match=r"cycle: .*s.toml -> .*s.toml;"):
        load_config(self_ref)


def test_extends_missing_or_bad_base(tmp_path):
    p = _write(tmp_path, "c.toml", 'extends = "nope.toml"\n')
    with pytest.raises(ConfigError,
                       match=rf"{_re(p)}: extends = 'nope.toml' not found \(looked for "
                             rf"{_re(tmp_path / 'nope.toml')} and "
                             rf"{_re(CONFIG_DIR / 'nope.toml')}\); fix:"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"'extends' must be a file name string, got 3"):
        load_config(_write(tmp_path, "c.toml", "extends = 3\n"))
    _write(tmp_path, "broken.toml", "[model\n")
    with pytest.raises(ConfigError, match=r"broken.toml' is not valid TOML"):
        load_config(_write(tmp_path, "c.toml", 'extends = "broken.toml"\n'))


# ----------------------------------------------------------------------------- --fold


def test_fold_error_says_it_came_from_the_command_line():
    with pytest.raises(ConfigError) as e:
        load_config(TINY_PATH, fold=3)
    msg = str(e.value)
    assert msg.startswith(f"--fold 3 (command line) with {TINY_PATH} [model]: field "
                          "'fold_factor' =3 does not divide d_model=64; fix: ")
    assert msg.endswith("pass a --fold that fits it, or drop --fold")
    with pytest.raises(ConfigError, match=r"^--fold 0 \(command line\).*must be >= 1, got 0"):
        load_config(TINY_PATH, fold=0)
    assert load_config(TINY_PATH, fold=4).model.fold_factor == 4


def test_fold_can_fix_the_file_and_file_errors_stay_the_files(tmp_path):
    p = _write(tmp_path, "c.toml", TINY.to_toml().replace("fold_factor = 2", "fold_factor = 3"))
    assert load_config(p, fold=2).model.fold_factor == 2
    bad = _write(tmp_path, "bad.toml", 'extends = "tiny.toml"\n[model]\nmemory_squash = "x"\n')
    for fold in (None, 2, 3):
        with pytest.raises(ConfigError,
                           match=rf"^{_re(bad)} \[model\]: field 'memory_squash'"):
            load_config(bad, fold=fold)


# ----------------------------------------------------------------------------- config_from_dict


def test_config_from_dict_policies():
    full = TINY.to_dict()
    assert config_from_dict(full, complete=True) == TINY
    partial = {"model": {"d_model": 64}}
    assert config_from_dict(partial) == Config()  # code may rely on the dataclass defaults
    with pytest.raises(ConfigError, match=r"^<dict>: missing field\(s\) \[model\] n_heads, "
                                          r".*\[hardware\] rows.*fix: add 'n_heads'"):
        config_from_dict(partial, complete=True)
    with pytest.raises(ConfigError, match=r"unknown table \[extends\]"):
        config_from_dict({**full, "extends": "tiny.toml"})
    with pytest.raises(ConfigError, match=r"must be a mapping"):
        config_from_dict([], "<x>")
