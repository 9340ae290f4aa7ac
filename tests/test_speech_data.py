"""The spoken-digit dataset (eSpeak NG), its split by voice, and the log-mel front end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.speech import dataset as ds
from model.speech import espeak
from model.speech.frontend import FrontendConfig, features, log_mel

N = 24  # utterances: 17 train, 2 valid, 5 test


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return ds.make_dataset(tmp_path_factory.mktemp("speech") / "digits", utterances=N, seed=0)


def test_same_seed_same_bytes_other_seed_differs(data, tmp_path):
    again = ds.make_dataset(tmp_path / "again", utterances=N, seed=0)
    files = _files(data)
    assert files == _files(again)
    assert len([f for f in files if f.endswith(".wav")]) == N
    other = _files(ds.make_dataset(tmp_path / "other", utterances=N, seed=1))
    assert other.keys() == files.keys()
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl", "wav/train/train-00000.wav"):
        assert other[name] != files[name], name


def test_same_call_same_samples():
    a = espeak.synthesize("three one four", "en-gb-x-rp+m3", rate=160, pitch=40)
    b = espeak.synthesize("three one four", "en-gb-x-rp+m3", rate=160, pitch=40)
    assert a.dtype == np.int16 and a.size > espeak.SAMPLE_RATE // 4
    assert np.array_equal(a, b)
    assert not np.array_equal(a, espeak.synthesize("three one four", "en-gb-x-rp+f2"))


def test_voices_exist_and_errors_name_the_fix():
    assert {"en", "en-us", "en-gb-x-rp"} <= set(espeak.english_voices())
    assert {"m1", "f1", "klatt", "croak"} <= set(espeak.variants())
    every = ds.TRAIN_VARIANTS + ds.VALID_VARIANTS + ds.TEST_VARIANTS
    assert set(every) - {""} <= set(espeak.variants())
    assert set(ds.TRAIN_BASES + ds.VALID_BASES + ds.TEST_BASES) <= set(espeak.english_voices())
    with pytest.raises(espeak.SpeechSynthError, match="no variant 'zz9'.*fix: use one of"):
        espeak.synthesize("one", "en+zz9")
    with pytest.raises(espeak.SpeechSynthError, match="no voice 'xx-nowhere'"):
        espeak.synthesize("one", "xx-nowhere")


def test_split_by_voice(data):
    voices = ds.split_voices()
    sets = {s: set(v) for s, v in voices.items()}
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    train_bases = {v.partition("+")[0] for v in sets["train"]}
    train_variants = {v.partition("+")[2] for v in sets["train"]}
    for split in ("valid", "test"):  # every held-out voice has an unseen accent or variant
        for v in sets[split]:
            base, _, variant = v.partition("+")
            assert base not in train_bases or variant not in train_variants, v
    assert ds.DEFAULT_VOICE in sets["test"]
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["voices"] == voices
    assert meta["utterances"] == ds.split_counts(N) == {"train": 17, "valid": 2, "test": 5}
    for split in ds.SPLITS:
        rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == meta["utterances"][split]
        assert {r["voice"] for r in rows} <= sets[split]
        assert all(ds.voice_split(r["voice"]) == split for r in rows)


def test_utterances_are_digit_strings_with_real_audio(data):
    for split in ds.SPLITS:
        for u in ds.load_split(data, split):
            assert 1 <= len(u.tokens) <= 7 and all(0 <= t <= 9 for t in u.tokens)
            assert u.text == " ".join(map(str, u.tokens))
            assert u.sample_rate == espeak.SAMPLE_RATE == 22050
            assert u.audio.dtype == np.int16 and u.audio.ndim == 1
            assert u.audio.size > espeak.SAMPLE_RATE // 5  # at least one spoken digit
            rms = float(np.sqrt(np.mean(u.audio.astype(np.float64) ** 2)))
            assert rms > 300, (u.id, rms)  # speech, not silence


def test_load_split_round_trips(data):
    voices = ds.split_voices()
    for split in ds.SPLITS:
        rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
        for i, (u, row) in enumerate(zip(ds.load_split(data, split), rows, strict=True)):
            meta, audio = ds._utterance(0, split, i, voices[split])
            assert (u.id, u.text, u.voice, u.rate, u.pitch, u.snr_db) == (
                row["id"], meta["text"], meta["voice"], meta["rate"], meta["pitch"],
                meta["snr_db"])
            assert np.array_equal(u.audio, audio) and row["samples"] == audio.size


def test_load_split_errors(data, tmp_path):
    with pytest.raises(ds.DatasetError, match="no dataset.json.*foldaccel speech data"):
        ds.load_split(tmp_path, "train")
    with pytest.raises(ds.DatasetError, match="no split 'dev'"):
        ds.load_split(data, "dev")
    copy = ds.make_dataset(tmp_path / "copy", utterances=3, seed=2)
    wav = copy / "wav/test/test-00000.wav"
    raw = bytearray(wav.read_bytes())
    raw[-1] ^= 1
    wav.write_bytes(bytes(raw))
    with pytest.raises(ds.DatasetError, match="test-00000.wav' does not match its sha256"):
        ds.load_split(copy, "test")
    (copy / "valid.jsonl").write_text("{}\n")
    with pytest.raises(ds.DatasetError, match="valid.jsonl' does not match its sha256"):
        ds.load_split(copy, "valid")


def test_say_checks_the_transcript():
    audio = ds.say("3 1 4")
    assert audio.dtype == np.int16 and np.array_equal(
        audio, espeak.synthesize("three one four", ds.DEFAULT_VOICE))
    with pytest.raises(ValueError, match="token 'x' is not a digit"):
        ds.say("3 x 4")
    with pytest.raises(ValueError, match="token '12' is not a digit"):
        ds.say("12 3")
    with pytest.raises(ValueError, match="empty"):
        ds.say("  ")


def test_frontend_shape_and_determinism():
    cfg = FrontendConfig()
    assert (cfg.feature_dim, cfg.frame_ms) == (80, 40.0)
    audio = ds.say("7 2")
    m = log_mel(audio, cfg)
    assert m.dtype == np.float32 and m.shape == (1 + audio.size // cfg.hop_length, cfg.n_mels)
    f = features(audio, cfg)
    assert f.dtype == np.float32 and f.shape == (m.shape[0] // 2, 80)
    assert np.array_equal(f[3], np.concatenate([m[6], m[7]]))
    assert log_mel(audio, cfg).tobytes() == m.tobytes()
    assert features(audio[: 4 * cfg.hop_length], cfg).shape == (2, 80)  # 5 frames: tail dropped
    with pytest.raises(ValueError, match="1-D int16"):
        log_mel(audio.astype(np.float32), cfg)


def test_frontend_gain_is_an_offset_and_a_tone_lands_in_its_band():
    import librosa

    cfg = FrontendConfig()
    audio = ds.say("5 9 0", voice="en-us+m3")
    quiet = np.rint(audio.astype(np.float64) * 0.25).astype(np.int16)
    loud, soft = log_mel(audio, cfg), log_mel(quiet, cfg)
    above = loud > np.log(1e-3)  # well above the 1e-6 floor
    assert above.mean() > 0.3
    diff = (soft - loud)[above]
    assert abs(float(np.median(diff)) - 2 * np.log(0.25)) < 0.01
    assert np.quantile(np.abs(diff - 2 * np.log(0.25)), 0.95) < 0.05

    t = np.arange(cfg.sample_rate) / cfg.sample_rate
    tone = np.rint(8000 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16)
    centers = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    band = int(np.argmax(log_mel(tone, cfg)[5:-5].mean(axis=0)))
    assert abs(centers[band] - 1000.0) < (centers[band + 1] - centers[band - 1]) / 2


def test_foreign_directory_refused_untouched(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ds.DatasetError, match=r"'.*mine' is not empty.*fix: choose a new"):
        ds.make_dataset(foreign, utterances=3, seed=0)
    assert _files(foreign) == {"notes.txt": b"keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp dir left


def test_recreate_over_a_dataset_and_failure_leaves_nothing(tmp_path):
    out = ds.make_dataset(tmp_path / "d", utterances=3, seed=0)
    first = _files(out)
    ds.make_dataset(out, utterances=4, seed=5)
    assert json.loads((out / "dataset.json").read_text())["seed"] == 5 and _files(out) != first

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ds.make_dataset(out, utterances=4, seed=0, progress=stop)
    assert json.loads((out / "dataset.json").read_text())["seed"] == 5  # earlier one kept
    with pytest.raises(KeyboardInterrupt):
        ds.make_dataset(tmp_path / "new", utterances=4, seed=0, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_cli_speech_data(tmp_path, monkeypatch, capsys):
    import sim.cli

    if "sim.cli.speech" not in sim.cli.COMMAND_MODULES:  # until it is registered
        monkeypatch.setattr(sim.cli, "COMMAND_MODULES", [*sim.cli.COMMAND_MODULES,
                                                         "sim.cli.speech"])
    out = tmp_path / "cli"
    assert sim.cli.main(["speech", "data", "--out", str(out), "--utterances", "5", "--seed",
                         "3", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {s: v["utterances"] for s, v in summary["splits"].items()} == ds.split_counts(5)
    assert ds.read_metadata(out)["seed"] == 3
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x").write_text("")
    assert sim.cli.main(["speech", "data", "--out", str(tmp_path / "foreign")]) == 2
    assert "foldaccel speech data: error:" in capsys.readouterr().err
    assert sim.cli.main(["speech", "data", "--out", str(out), "--utterances", "5",
                         "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "voices used" in text and "total" in text and str(out) in text
