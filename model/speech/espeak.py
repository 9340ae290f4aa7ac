"""Speech synthesis with eSpeak NG through its C API (``ctypes``), deterministic per call.

The library and its voice data come from the ``espeakng-loader`` wheel (``libespeak-ng.so``
and ``espeak-ng-data``), so nothing outside the virtualenv is needed. Synthesis runs in
``AUDIO_OUTPUT_SYNCHRONOUS`` mode: :func:`synthesize` returns when the callback has collected
every int16 sample, at :data:`SAMPLE_RATE` (22,050 Hz, what ``espeak_Initialize`` reports).

**Determinism.** eSpeak NG keeps function-local static state in its wave generator (the pitch
flutter phase, the automatic gain control, the last cycle's harmonics) that survives
``espeak_Terminate``: the same text synthesized twice in one process comes out a few samples
longer or shorter and differently shaped. :func:`synthesize` therefore loads a fresh instance of
the library for every call and unloads it afterwards (``dlclose``; about 5 ms), and seeds the
library's own random generator, so a call's samples depend only on its arguments and the
installed eSpeak NG build. The voice lists are read once per process and cached.

A voice is ``"base"`` or ``"base+variant"``: ``base`` a language voice such as ``en-us``
(:func:`english_voices`), ``variant`` a file of ``espeak-ng-data/voices/!v`` such as ``m3``
(:func:`variants`). eSpeak NG silently ignores an unknown variant, so it is checked here.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: Sample rate of eSpeak NG's output in Hz (checked against ``espeak_Initialize``).
SAMPLE_RATE = 22050

#: Speaking rate limits (words per minute) and pitch limits (0-99) that eSpeak NG accepts.
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 99)

_FIX = "fix: /work/main/.venv/bin/pip install espeakng-loader==0.2.4 (or `make install`)"

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EE_OK, _EE_NOT_FOUND = 0, 2
_RAND_SEED = 1

# English voices that are not accents: en-shaw reads the Shavian alphabet.
_NOT_ACCENTS = frozenset({"en-shaw"})


class SpeechSynthError(RuntimeError):
    """eSpeak NG or a voice cannot be loaded, or synthesis failed; the message has the fix."""


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)
_lock = threading.Lock()
_chunks: list[bytes] = []


@_SynthCallback
def _collect(wav, n: int, _events) -> int:
    if n > 0 and wav:
        _chunks.append(ctypes.string_at(wav, 2 * n))
    return 0  # continue synthesis


@functools.cache
def _paths() -> tuple[str, bytes]:
    """(library path, data path) from the espeakng-loader wheel."""
    try:
        import espeakng_loader
    except ImportError:
        raise SpeechSynthError(f"the espeakng-loader package is not installed; {_FIX}") from None
    lib, data = espeakng_loader.get_library_path(), Path(espeakng_loader.get_data_path())
    if not Path(lib).is_file() or not (data / "phontab").is_file():
        raise SpeechSynthError(f"eSpeak NG from espeakng-loader is incomplete (library '{lib}', "
                               f"data '{data}'); {_FIX.replace('install', 'install -I', 1)}")
    return lib, str(data).encode()


def _unload(lib: ctypes.CDLL) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
    if close is not None:
        close(lib._handle)


@contextmanager
def _engine() -> Iterator[ctypes.CDLL]:
    """A freshly loaded, initialized library (module doc: why fresh); the caller holds _lock."""
    path, data = _paths()
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    except OSError as e:
        raise SpeechSynthError(f"cannot load eSpeak NG '{path}': {e}; {_FIX}") from None
    try:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            raise SpeechSynthError(
                f"eSpeak NG did not initialize with its data '{data.decode()}' (returned "
                f"{rate}, expected the sample rate {SAMPLE_RATE}); {_FIX}")
        lib.espeak_SetSynthCallback(_collect)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        yield lib
    finally:
        lib.espeak_Terminate()
        _unload(lib)


def _languages(ptr: int) -> list[str]:
    """The packed ``languages`` field: (priority byte, NUL-terminated name)*, then a 0 byte."""
    out, i = [], 0
    while ctypes.c_ubyte.from_address(ptr + i).value:
        name = ctypes.string_at(ptr + i + 1)
        out.append(name.decode())
        i += 2 + len(name)
    return out


def _list(lib: ctypes.CDLL, spec: _Voice | None) -> list[tuple[str, list[str]]]:
    """(identifier, languages) of every voice matching ``spec`` (None: all base voices)."""
    arr = lib.espeak_ListVoices(ctypes.byref(spec) if spec is not None else None)
    out, i = [], 0
    while arr[i]:
        v = arr[i].contents
        out.append((v.identifier.decode(), _languages(v.languages) if v.languages else []))
        i += 1
    return out


@functools.cache
def _catalog() -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(English base voices, variant names, eSpeak NG version), read once per process."""
    with _lock, _engine() as lib:
        bases = sorted({ident.rsplit("/", 1)[-1].lower() for ident, langs in _list(lib, None)
                        if not ident.startswith("mb/")  # MBROLA voices need another program
                        and any(x == "en" or x.startswith("en-") for x in langs)}
                       - _NOT_ACCENTS)
        spec, lang = _Voice(), ctypes.c_char_p(b"variant")  # lang: alive during the call
        spec.languages = ctypes.cast(lang, ctypes.c_void_p)
        names = sorted({ident.rsplit("/", 1)[-1] for ident, _ in _list(lib, spec)
                        if ident.startswith("!v/")}, key=lambda s: (s.lower(), s))
        version = lib.espeak_Info(None).decode()
    return tuple(bases), tuple(names), version


def english_voices() -> list[str]:
    """The English base voices (accents) in the shipped data, e.g. ``en-us``, ``en-gb-x-rp``."""
    return list(_catalog()[0])


def variants() -> list[str]:
    """The voice variants (``espeak-ng-data/voices/!v``), e.g. ``m1``, ``f3``, ``klatt``."""
    return list(_catalog()[1])


def library_version() -> str:
    """The eSpeak NG version string of the loaded library, e.g. ``1.52.0``."""
    return _catalog()[2]


def split_voice(voice: str) -> tuple[str, str]:
    """``"base+variant"`` -> (base, variant); ``"base"`` -> (base, ``""``)."""
    base, _, variant = voice.partition("+")
    return base, variant


def synthesize(text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with ``voice`` (``"base[+variant]"``) at ``rate`` words per minute and
    ``pitch`` (0-99) -> int16 mono samples at :data:`SAMPLE_RATE`; the same call gives the
    same samples (module doc)."""
    base, variant = split_voice(voice)
    if not base or "+" in variant:
        raise SpeechSynthError(f"voice '{voice}' is not 'base' or 'base+variant'; fix: use "
                               "e.g. 'en-us' or 'en-us+m3'")
    if variant and variant not in _catalog()[1]:
        raise SpeechSynthError(f"voice '{voice}': no variant '{variant}' in eSpeak NG's data; "
                               f"fix: use one of {', '.join(variants())}")
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise SpeechSynthError(f"rate {rate} is outside {RATE_RANGE[0]}..{RATE_RANGE[1]} "
                               "words per minute; fix: use e.g. 175")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise SpeechSynthError(f"pitch {pitch} is outside {PITCH_RANGE[0]}..{PITCH_RANGE[1]}; "
                               "fix: use e.g. 50")
    if not text.strip():
        raise SpeechSynthError("nothing to say: the text is empty")
    data = text.encode() + b"\0"
    with _lock, _engine() as lib:
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise SpeechSynthError(f"eSpeak NG has no voice '{base}'; fix: use one of "
                                   f"{', '.join(english_voices())} (or another language)")
        lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        _chunks.clear()
        try:
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                   None, None)
            if err == _EE_OK:
                err = lib.espeak_Synchronize()
            samples = b"".join(_chunks)
        finally:
            _chunks.clear()
    if err != _EE_OK:
        raise SpeechSynthError(f"eSpeak NG failed to synthesize {text!r} with '{voice}' "
                               f"(error {err})")
    return np.frombuffer(samples, dtype="<i2").astype(np.int16)


__all__ = ["PITCH_RANGE", "RATE_RANGE", "SAMPLE_RATE", "SpeechSynthError", "english_voices",
           "library_version", "split_voice", "synthesize", "variants"]
