"""`foldaccel model info`: acceptance numbers, JSON contract, human table, user errors."""

import json

import pytest

from model.config import CONFIG_DIR
from sim.cli import main

BASE = str(CONFIG_DIR / "emformer_base.toml")
D, F, LAYERS = 512, 2048, 20


def _attn(n: int) -> int:
    return 4 * (D // n) ** 2 + 4 * (D // n)


PER_LAYER_FFN_LN = 2 * D * F + F + D + 6 * D


def _run_json(capsys, *argv) -> dict:
    assert main(["model", "info", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object, nothing else on stdout


@pytest.mark.parametrize("fold,attn", [(2, 263_168), (4, 66_048)])
def test_info_json_emformer_base(capsys, fold, attn):
    info = _run_json(capsys, "--config", BASE, "--fold", str(fold))
    assert attn == _attn(fold)
    assert info["fold_factor"] == fold
    assert info["params"]["attention_per_layer"] == attn
    assert info["params"]["ffn_per_layer"] == 2 * D * F + F + D
    assert info["params"]["total"] == LAYERS * (attn + PER_LAYER_FFN_LN)
    assert info["baseline_fold1"]["params"]["attention_per_layer"] == 1_050_624
    assert info["baseline_fold1"]["params"]["total"] == LAYERS * (1_050_624 + PER_LAYER_FFN_LN)
    red = info["reduction_vs_fold1"]
    assert red["params_total"] == pytest.approx(
        1 - (attn + PER_LAYER_FFN_LN) / (1_050_624 + PER_LAYER_FFN_LN), abs=1e-6)
    assert red["attention_params_per_layer"] == pytest.approx(1 - attn / 1_050_624, abs=1e-6)
    assert info["weight_bytes_int8"] < info["baseline_fold1"]["weight_bytes_int8"]
    assert 0 < red["macs_per_step"] < 1
    assert isinstance(info["macs_per_step"], int)


def test_info_fold1_has_no_reduction(capsys):
    info = _run_json(capsys, "--config", BASE, "--fold", "1")
    assert info["params"]["attention_per_layer"] == 1_050_624
    assert all(v == 0 for v in info["reduction_vs_fold1"].values())


def test_info_human_table(capsys):
    assert main(["model", "info", "--config", BASE, "--fold", "2"]) == 0
    out = capsys.readouterr().out
    assert "263,168" in out and "1,050,624" in out
    attn_row = next(line for line in out.splitlines() if line.startswith("attention params"))
    assert attn_row.split()[-1] == f"{263_168 / 1_050_624:.3f}"  # ratio vs fold 1
    per_layer_1, per_layer_2 = 1_050_624 + PER_LAYER_FFN_LN, 263_168 + PER_LAYER_FFN_LN
    assert f"parameters {100 * (1 - per_layer_2 / per_layer_1):.2f}%" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_info_default_config(capsys):
    info = _run_json(capsys)
    assert info["config"].endswith("demo.toml")


@pytest.mark.parametrize("fold", ["3", "0"])
def test_bad_fold_exits_2_naming_the_field(capsys, fold):
    assert main(["model", "info", "--config", BASE, "--fold", fold, "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "fold_factor" in cap.err


def test_bad_config_exits_2_naming_the_field(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "tiny.toml"\n[model]\nd_model = 64\nn_heads = 5\n')
    assert main(["model", "info", "--config", str(bad)]) == 2
    assert "field 'n_heads' =5 does not divide d_model=64" in capsys.readouterr().err
    bad.write_text("[model]\nd_model = 64\nn_heads = 4\n")  # incomplete, no extends
    assert main(["model", "info", "--config", str(bad)]) == 2
    assert "missing field(s) [model] ffn_dim" in capsys.readouterr().err
    assert main(["model", "info", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_info_requires_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["model"])
    assert e.value.code == 2
