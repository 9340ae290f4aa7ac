"""A deterministic spoken-digit dataset synthesized with eSpeak NG (:mod:`model.speech.espeak`).

**Utterances.** A transcript is 1-7 digits separated by spaces (``"3 1 4"``); it is spoken as
the words of :data:`DIGITS` (``"three one four"``). Each utterance draws, in this order, from
its own generator ``numpy.random.default_rng([seed, split_index, i])``: the number of digits,
the digits, the voice (uniform over its split's voices), the rate (130-210 words per minute),
the pitch (30-70), the SNR (clean, 30, 20 or 10 dB), the noise colour (white or pink), the
leading and trailing silence (0-300 ms each) and the peak level (0.3-0.9 of full scale); after
synthesis, the noise samples. Noise covers the whole padded signal at the drawn SNR relative to
the synthesized speech's mean power; the mix is then scaled to the drawn peak. So the same seed
gives the same bytes (with the same eSpeak NG build and numpy), and the first ``k`` utterances
of a split do not depend on the total ``utterances``.

**Split by voice.** A voice is ``base+variant`` (:func:`voice_split`):

- test: the variant is one of :data:`TEST_VARIANTS` or the base is one of :data:`TEST_BASES`;
- valid: otherwise, the variant is one of :data:`VALID_VARIANTS` or the base is in
  :data:`VALID_BASES`;
- train: the rest, i.e. :data:`TRAIN_BASES` x :data:`TRAIN_VARIANTS` (``""``: the plain base).

So no voice is in two splits, and every valid or test voice has an accent or a variant
(speaker) that train never uses. Utterances go 70 / 10 / 20 % to train / valid / test
(:func:`split_counts`). Only the variants listed here are used: human-sounding ones, both
genders; the robotic and novelty variants of eSpeak NG's data are left out.

**Files** (:func:`make_dataset`): ``DIR/wav/<split>/<id>.wav`` (16-bit PCM mono at 22,050 Hz),
``DIR/<split>.jsonl`` (one object per utterance: ``id``, ``wav``, ``text``, ``voice``,
``rate``, ``pitch``, ``snr_db``, ``noise``, ``lead_ms``, ``trail_ms``, ``peak``, ``samples``,
``sha256`` of the wav file) and ``DIR/dataset.json`` (format, seed, counts, voices and audio
seconds per split, generator parameters, sha256 of every jsonl).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.paths import cannot_create_in, nearest_existing
from model.speech.espeak import SAMPLE_RATE, library_version, synthesize

#: Token vocabulary: token ``k`` is spoken as ``DIGITS[k]``.
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}

TRAIN_BASES = ("en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
               "en-us")
VALID_BASES = ("en-us-nyc",)
TEST_BASES = ("en-029",)
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "croak", "klatt", "klatt3", "adam",
                  "benjamin", "david", "robert", "john", "Mike", "quincy", "whisper",
                  "f1", "f2", "f3", "Annie", "linda", "steph", "aunty", "grandma")
VALID_VARIANTS = ("m8", "klatt6", "Michael", "f5", "belinda")
TEST_VARIANTS = ("m7", "klatt2", "edward", "travis", "grandpa", "f4", "Andrea", "steph2",
                 "whisperf")

#: Voice of :func:`say` by default: a test voice (variant f4 is never in train).
DEFAULT_VOICE = "en-us+f4"

FORMAT, VERSION = "foldaccel-speech-digits", 1
DIGITS_RANGE = (1, 7)
RATE_RANGE = (130, 210)
PITCH_RANGE = (30, 70)
SNR_CHOICES: tuple[float | None, ...] = (None, 30.0, 20.0, 10.0)
NOISE_KINDS = ("white", "pink")
SILENCE_MS = (0, 300)
PEAK_RANGE = (0.3, 0.9)
DEFAULT_UTTERANCES = 8000


class DatasetError(ValueError):
    """A dataset that cannot be written or read; the message names the path and the fix."""


@dataclass(eq=False)
class Utterance:
    """One utterance of a split: transcript, tokens, int16 audio and how it was made."""

    id: str
    split: str
    text: str
    tokens: list[int]
    audio: np.ndarray
    voice: str
    rate: int
    pitch: int
    snr_db: float | None
    noise: str | None
    sample_rate: int = SAMPLE_RATE


# -- transcripts -------------------------------------------------------------------------------

def parse_transcript(text: str) -> list[int]:
    """``"3 1 4"`` -> ``[3, 1, 4]``; raise :class:`ValueError` naming the first bad token."""
    tokens = text.split()
    if not tokens:
        raise ValueError(f"transcript {text!r} is empty; fix: write digits separated by spaces, "
                         "e.g. '3 1 4'")
    for tok in tokens:
        if len(tok) != 1 or tok not in "0123456789":
            raise ValueError(f"transcript {text!r}: token {tok!r} is not a digit 0-9; fix: "
                             "write single digits separated by spaces, e.g. '3 1 4'")
    return [int(t) for t in tokens]


def spoken(tokens: list[int]) -> str:
    """The words eSpeak NG is given for ``tokens``: ``[3, 1, 4]`` -> ``"three one four"``."""
    return " ".join(DIGITS[t] for t in tokens)


def say(text: str, voice: str = DEFAULT_VOICE, rate: int = 175, pitch: int = 50) -> np.ndarray:
    """Synthesize the transcript ``text`` (e.g. ``"3 1 4"``) -> clean int16 audio at
    :data:`SAMPLE_RATE` (no noise, no added silence)."""
    return synthesize(spoken(parse_transcript(text)), voice, rate=rate, pitch=pitch)


# -- voices ------------------------------------------------------------------------------------

def voice_split(voice: str) -> str:
    """The split of ``voice`` (``base`` or ``base+variant``) under the module's scheme."""
    base, _, variant = voice.partition("+")
    if variant in TEST_VARIANTS or base in TEST_BASES:
        return "test"
    if variant in VALID_VARIANTS or base in VALID_BASES:
        return "valid"
    return "train"


def _voice(base: str, variant: str) -> str:
    return f"{base}+{variant}" if variant else base


def split_voices() -> dict[str, list[str]]:
    """Every voice of the dataset, by split (sorted; disjoint)."""
    bases = TRAIN_BASES + VALID_BASES + TEST_BASES
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for base in bases:
        for variant in TRAIN_VARIANTS + VALID_VARIANTS + TEST_VARIANTS:
            v = _voice(base, variant)
            out[voice_split(v)].append(v)
    return {s: sorted(vs) for s, vs in out.items()}


def split_counts(utterances: int) -> dict[str, int]:
    """Utterances per split: 70 / 10 / 20 %, at least one each."""
    if utterances < len(SPLITS):
        raise DatasetError(f"{utterances} utterances are too few; fix: use at least "
                           f"{len(SPLITS)} (one per split)")
    valid = max(1, round(utterances * SPLIT_FRACTIONS["valid"]))
    test = max(1, round(utterances * SPLIT_FRACTIONS["test"]))
    return {"train": utterances - valid - test, "valid": valid, "test": test}


# -- one utterance -----------------------------------------------------------------------------

def _noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise of ``n`` samples."""
    x = rng.standard_normal(n)
    if kind == "pink" and n > 1:
        spec = np.fft.rfft(x)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n=n)
    return x / max(float(np.sqrt(np.mean(x * x))), 1e-12)


def _utterance(seed: int, split: str, i: int, voices: list[str]) -> tuple[dict, np.ndarray]:
    """The metadata (without paths) and audio of utterance ``i`` of ``split``."""
    rng = np.random.default_rng([seed, SPLITS.index(split), i])
    n = int(rng.integers(DIGITS_RANGE[0], DIGITS_RANGE[1] + 1))
    tokens = [int(t) for t in rng.integers(0, 10, size=n)]
    voice = voices[int(rng.integers(len(voices)))]
    rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
    pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    snr = SNR_CHOICES[int(rng.integers(len(SNR_CHOICES)))]
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    lead_ms, trail_ms = (int(v) for v in rng.integers(SILENCE_MS[0], SILENCE_MS[1] + 1, 2))
    peak = round(float(rng.uniform(*PEAK_RANGE)), 4)

    speech = synthesize(spoken(tokens), voice, rate=rate, pitch=pitch).astype(np.float64)
    if not speech.size or not np.any(speech):
        raise DatasetError(f"eSpeak NG produced silence for {spoken(tokens)!r} with '{voice}'")
    lead, trail = lead_ms * SAMPLE_RATE // 1000, trail_ms * SAMPLE_RATE // 1000
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    if snr is not None:
        power = float(np.mean(speech * speech))
        x = x + _noise(rng, kind, x.size) * np.sqrt(power / 10.0 ** (snr / 10.0))
    x *= peak * 32767.0 / float(np.max(np.abs(x)))
    audio = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    meta = {"text": " ".join(map(str, tokens)), "voice": voice, "rate": rate, "pitch": pitch,
            "snr_db": snr, "noise": kind if snr is not None else None, "lead_ms": lead_ms,
            "trail_ms": trail_ms, "peak": peak, "samples": int(audio.size)}
    return meta, audio


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV file contents of int16 ``audio`` (deterministic bytes)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return buf.getvalue()


# -- the dataset -------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory holding a dataset of this module (its dataset.json)."""
    try:
        meta = json.loads((Path(path) / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _check_target(out: Path) -> None:
    """Refuse an output path that is a file, a foreign non-empty directory or unwritable."""
    where = f"dataset directory '{out}'"
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise DatasetError(f"{where} exists and is not a directory; fix: choose another "
                               "path")
        if any(out.iterdir()) and not is_dataset(out):
            raise DatasetError(f"{where} is not empty and holds no speech dataset (no "
                               "dataset.json of this format); fix: choose a new or empty "
                               "directory")
    base = nearest_existing(out.parent)
    if not base.is_dir():
        raise DatasetError(f"{where} cannot be created: '{base}' is a file, not a directory; "
                           "fix: choose another path")
    why = cannot_create_in(base)
    if why:
        raise DatasetError(f"{where} cannot be written: {why} in '{base}'; fix: choose a "
                           "writable location")


def _install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``, replacing an earlier dataset or empty dir there."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, old / "d")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / "d", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def make_dataset(out_dir: Path | str, utterances: int = DEFAULT_UTTERANCES, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 splits: tuple[str, ...] = SPLITS) -> Path:
    """Write the dataset (module doc) of ``utterances`` utterances from ``seed`` into
    ``out_dir`` (new, empty or an earlier dataset's) -> its path. ``progress(done, total)`` is
    called after each utterance. Built in a temporary directory beside ``out_dir`` and renamed
    at the end, so a failure leaves nothing half-written. ``splits``: write only these (the
    others are empty); a split's utterances are the same as in the full dataset."""
    out = Path(os.path.abspath(out_dir))
    if seed < 0:
        raise DatasetError(f"seed {seed} is negative; fix: use a seed >= 0")
    bad = [sp for sp in splits if sp not in SPLITS]
    if bad or not splits:
        raise DatasetError(f"unknown split {bad[0] if bad else ''!r}; fix: use some of "
                           f"{', '.join(SPLITS)}")
    counts = {sp: n if sp in splits else 0 for sp, n in split_counts(utterances).items()}
    utterances = sum(counts.values())
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    voices = split_voices()
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        digests, seconds, done = {}, {}, 0
        for split in SPLITS:
            (tmp / "wav" / split).mkdir(parents=True)
            lines, total = [], 0
            for i in range(counts[split]):
                meta, audio = _utterance(seed, split, i, voices[split])
                uid = f"{split}-{i:05d}"
                rel = f"wav/{split}/{uid}.wav"
                data = wav_bytes(audio)
                (tmp / rel).write_bytes(data)
                lines.append(json.dumps({"id": uid, "wav": rel, **meta,
                                         "sha256": _sha256(data)}))
                total += audio.size
                done += 1
                if progress is not None:
                    progress(done, utterances)
            text = "".join(line + "\n" for line in lines).encode()
            (tmp / f"{split}.jsonl").write_bytes(text)
            digests[f"{split}.jsonl"] = _sha256(text)
            seconds[split] = round(total / SAMPLE_RATE, 3)
        meta = {
            "format": FORMAT, "version": VERSION, "seed": seed, "sample_rate": SAMPLE_RATE,
            "utterances": counts, "audio_seconds": seconds, "digits": list(DIGITS),
            "generator": {
                "espeak_ng": library_version(), "digits_per_utterance": list(DIGITS_RANGE),
                "rate_wpm": list(RATE_RANGE), "pitch": list(PITCH_RANGE),
                "snr_db": list(SNR_CHOICES), "noise": list(NOISE_KINDS),
                "silence_ms": list(SILENCE_MS), "peak": list(PEAK_RANGE),
                "split_fractions": SPLIT_FRACTIONS,
            },
            "voices": voices, "sha256": digests,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the dataset normal modes
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_metadata(data_dir: Path | str) -> dict:
    """``DIR/dataset.json``, checked; raise :class:`DatasetError` if missing or not ours."""
    d = Path(data_dir)
    fix = f"fix: create it with `foldaccel speech data --out {d}`"
    path = d / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"'{d}' is not a speech dataset (no dataset.json); {fix}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"'{path}' is corrupt ({e}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"'{path}' is not a {FORMAT} dataset; {fix}")
    if meta.get("version") != VERSION:
        raise DatasetError(f"'{path}' has format version {meta.get('version')}, this code "
                           f"reads version {VERSION}; {fix}")
    return meta


def load_split(data_dir: Path | str, split: str) -> list[Utterance]:
    """The utterances of ``split`` (train, valid or test) of the dataset in ``data_dir``, with
    their audio; every file is checked against its sha256."""
    if split not in SPLITS:
        raise DatasetError(f"no split '{split}'; fix: use one of {', '.join(SPLITS)}")
    d = Path(data_dir)
    meta = read_metadata(d)
    fix = f"fix: re-create it with `foldaccel speech data --out {d} --seed {meta.get('seed')}`"
    jsonl = d / f"{split}.jsonl"
    try:
        text = jsonl.read_bytes()
    except OSError as e:
        raise DatasetError(f"'{jsonl}' cannot be read ({e.strerror}); {fix}") from None
    if _sha256(text) != meta.get("sha256", {}).get(jsonl.name):
        raise DatasetError(f"'{jsonl}' does not match its sha256 in dataset.json; {fix}")
    out = []
    for row in map(json.loads, text.decode().splitlines()):
        wav = d / row["wav"]
        try:
            data = wav.read_bytes()
        except OSError as e:
            raise DatasetError(f"'{wav}' cannot be read ({e.strerror}); {fix}") from None
        if _sha256(data) != row["sha256"]:
            raise DatasetError(f"'{wav}' does not match its sha256 in {jsonl.name}; {fix}")
        with wave.open(io.BytesIO(data)) as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        out.append(Utterance(id=row["id"], split=split, text=row["text"],
                             tokens=parse_transcript(row["text"]), audio=audio,
                             voice=row["voice"], rate=row["rate"], pitch=row["pitch"],
                             snr_db=row["snr_db"], noise=row["noise"],
                             sample_rate=meta["sample_rate"]))
    return out


__all__ = ["DEFAULT_UTTERANCES", "DEFAULT_VOICE", "DIGITS", "SPLITS", "DatasetError",
           "Utterance", "is_dataset", "load_split", "make_dataset", "parse_transcript",
           "read_metadata", "say", "split_counts", "split_voices", "spoken", "voice_split",
           "wav_bytes"]


def synth_split(split: str, n: int, seed: int = 0) -> list[Utterance]:
    """The first ``n`` utterances of ``split`` of the dataset of ``seed``, synthesized in
    memory (the same audio :func:`make_dataset` writes; e.g. calibration audio)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; fix: use one of {', '.join(SPLITS)}")
    voices = split_voices()[split]
    out = []
    for i in range(n):
        meta, audio = _utterance(seed, split, i, voices)
        out.append(Utterance(id=f"{split}-{i:05d}", split=split, text=meta["text"],
                             tokens=parse_transcript(meta["text"]), audio=audio,
                             voice=meta["voice"], rate=meta["rate"], pitch=meta["pitch"],
                             snr_db=meta["snr_db"], noise=meta["noise"]))
    return out
