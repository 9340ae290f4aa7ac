"""``foldaccel train``, ``transcribe`` and ``evaluate``: the trained speech model.

``train`` trains a speech config's folded encoder with CTC on the spoken-digit set
(:mod:`model.speech.train`); ``transcribe`` recognizes one utterance (a WAV file or digits
synthesized with eSpeak NG) on an engine; ``evaluate`` reports WER/CER on a dataset's test
voices for each engine (:mod:`sim.asr`).
"""

from __future__ import annotations

import argparse
import logging
import wave
from pathlib import Path
from typing import Any

import numpy as np

from model.speech.dataset import DatasetError
from model.speech.espeak import SpeechSynthError
from model.speech.train import CheckpointError
from sim.asr import ENGINES, SpeechModelError
from sim.cli.common import (
    USER_ERRORS,
    UserError,
    add_config_args,
    add_json_arg,
    add_seed_arg,
    config_from_args,
    emit,
    format_table,
    positive_int,
)

log = logging.getLogger(__name__)
USER_ERRORS.extend([CheckpointError, SpeechModelError, DatasetError, SpeechSynthError])

#: The dataset ``train`` makes when no ``--data`` is given (``speech data`` defaults).
DEFAULT_DATA = Path("build") / "speech" / "data"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="DIR",
                   help="export of a trained checkpoint (`foldaccel export --checkpoint`; "
                   "default: the committed fold-2 model, models/speech/fold2/weights)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="the float checkpoint for --engine float (default: DIR/../checkpoint.pt "
                   "when it is the one the export was made from)")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the RTL runs' scratch folders (default: removed after success)")
    add_json_arg(p)


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train", help="train a speech config's folded encoder with CTC on spoken digits",
        description="Train the folded streaming encoder of a speech config (n_features log-mel "
        "inputs, a CTC classifier of blank + 10 digits) on the training voices of a spoken-digit "
        "dataset (`foldaccel speech data`; made in build/speech/data when --data is not given), "
        "on --threads CPU threads, with a progress bar. Writes DIR/checkpoint.pt (torch.save of "
        "plain tensors, loaded with weights_only=True) and DIR/training_curve.png. The same "
        "seed, data and thread count give the same loss curve.")
    add_config_args(tr, default="speech.toml")
    tr.add_argument("--out", required=True, metavar="DIR", help="output directory")
    tr.add_argument("--data", metavar="DIR",
                    help=f"dataset directory (default: {DEFAULT_DATA}, generated with the "
                    "`speech data` defaults if missing)")
    tr.add_argument("--steps", type=positive_int, default=3000, metavar="K",
                    help="optimizer steps")
    tr.add_argument("--batch", type=positive_int, default=16, metavar="B",
                    help="utterances per step")
    tr.add_argument("--threads", type=positive_int, default=1, metavar="T",
                    help="torch CPU threads (part of what makes a run reproducible)")
    add_seed_arg(tr, 0, "the initial weights and the batch order")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(tr)
    tr.set_defaults(func=cmd_train)

    tx = sub.add_parser(
        "transcribe", help="recognize spoken digits on an engine (float, fakequant, golden, rtl)",
        description="Stream one utterance segment by segment through the speech model on "
        "--engine and print its transcript. The host computes the log-mel features and the "
        "final CTC collapse; the input projection, the encoder and the classifier run on the "
        "engine. --engine rtl runs them on the Verilated accelerator and checks every logit "
        "against the golden model.")
    src = tx.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", metavar="FILE",
                     help="16-bit mono WAV at the model's sample rate (no default: give "
                     "--wav or --say)")
    src.add_argument("--say", metavar="DIGITS",
                     help="digits to synthesize with eSpeak NG, e.g. \"3 1 4\" (no default: "
                     "give --wav or --say)")
    tx.add_argument("--voice", default=None, metavar="VOICE",
                    help="eSpeak NG voice for --say (default: a test voice never trained on)")
    tx.add_argument("--engine", choices=ENGINES, default="golden", help="where the model runs")
    _add_model_args(tx)
    tx.set_defaults(func=cmd_transcribe)

    ev = sub.add_parser(
        "evaluate", help="WER/CER of the speech model on a dataset's test voices",
        description="Recognize the test split of a dataset (`foldaccel speech data`) on each "
        "--engine and report WER and CER (jiwer; a word is a digit). Golden, fakequant and rtl "
        "compute the same integers, so their transcripts are identical.")
    ev.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"),
                    help="which split to recognize")
    ev.add_argument("--engine", default="float,fakequant,golden", metavar="LIST",
                    help=f"comma-separated engines of {', '.join(ENGINES)}")
    ev.add_argument("--limit", type=positive_int, default=None, metavar="N",
                    help="only the first N utterances (default: all)")
    _add_model_args(ev)
    ev.set_defaults(func=cmd_evaluate)


# ----------------------------------------------------------------------------- train


def _dataset(path: str | None, seed: int = 0) -> Path:
    """The dataset directory; the default one is generated when missing."""
    from model.speech.dataset import DEFAULT_UTTERANCES, make_dataset
    from sim.progress import Progress

    if path is not None:
        return Path(path)
    d = DEFAULT_DATA
    if not (d / "dataset.json").is_file():
        log.info("generating the default dataset in %s", d)
        with Progress(DEFAULT_UTTERANCES, "speech data", unit="utt") as bar:
            make_dataset(d, utterances=DEFAULT_UTTERANCES, seed=seed,
                         progress=lambda done, _t: bar.update(done - bar.done))
    return d


def cmd_train(args: argparse.Namespace) -> int:
    from model.speech.dataset import load_split
    from model.speech.frontend import FrontendConfig
    from model.speech.train import TrainOptions, check_speech_config, train, training_items
    from sim.fileio import check_writable
    from sim.progress import Progress

    cfg = config_from_args(args)
    frontend = FrontendConfig()
    check_speech_config(cfg, frontend)
    check_writable(Path(args.out), "--out", directory=True)
    data = _dataset(args.data)
    opts = TrainOptions(steps=args.steps, batch=args.batch, seed=args.seed,
                        threads=args.threads)
    log.info("loading %s ...", data)
    tr = training_items(load_split(data, "train"), cfg, frontend)
    va = training_items(load_split(data, "valid"), cfg, frontend, speeds=(1.0,))
    with Progress(opts.steps, f"train fold {cfg.model.fold_factor}", unit="step",
                  enabled=not args.no_progress) as bar:
        def tick(step: int, loss: float) -> None:
            bar.note = f"loss {loss:.3f}"
            bar.update(1)
        res = train(cfg, tr, va, args.out, opts, progress=tick, frontend=frontend)
    out = {"checkpoint": str(res.checkpoint), "steps": opts.steps, "seed": opts.seed,
           "train_utterances": len(tr), "final_loss": round(float(np.mean(res.losses[-50:])), 4),
           "valid_wer": res.valid[-1][1] if res.valid else None,
           "train_seconds": round(res.seconds, 1)}
    if args.json:
        emit(out)
    else:
        print(format_table(["field", "value"], [[k, v] for k, v in out.items()]))
    return 0


# ----------------------------------------------------------------------------- recognize


def read_wav(path: str | Path, rate: int) -> np.ndarray:
    """A 16-bit mono WAV at ``rate`` Hz -> int16 samples (clear errors otherwise)."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            ch, width, fr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise UserError(f"--wav {p}: file not found") from None
    except (OSError, EOFError, wave.Error) as e:
        raise UserError(f"--wav {p}: not a readable WAV file ({e}); fix: pass a 16-bit PCM "
                        "WAV") from None
    if ch != 1 or width != 2 or fr != rate:
        raise UserError(f"--wav {p}: {ch} channel(s), {8 * width}-bit, {fr} Hz; the model takes "
                        f"mono 16-bit at {rate} Hz; fix: convert it, e.g. "
                        f"`sox IN -c 1 -b 16 -r {rate} OUT.wav`")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def _audio(args: argparse.Namespace, rate: int) -> tuple[np.ndarray, str | None]:
    from model.speech.dataset import DEFAULT_VOICE, say

    if args.wav is not None:
        return read_wav(args.wav, rate), None
    try:
        audio = say(args.say, voice=args.voice or DEFAULT_VOICE)
    except ValueError as e:
        raise UserError(f"--say {args.say!r}: {e}") from None
    return audio, args.say


def cmd_transcribe(args: argparse.Namespace) -> int:
    from sim.asr import load_speech_model, recognize

    sm = load_speech_model(args.weights, args.checkpoint)
    audio, said = _audio(args, sm.frontend.sample_rate)
    rec = recognize(sm, audio, args.engine, keep_runs=args.keep_runs)
    out: dict[str, Any] = {"transcript": rec.transcript, "engine": rec.engine,
                           "segments": rec.segments, "seconds": round(rec.seconds, 3),
                           "audio_seconds": round(len(audio) / sm.frontend.sample_rate, 3),
                           "weights": str(sm.weights)}
    if said is not None:
        out["said"] = " ".join(said.split())
    out |= rec.rtl
    if args.json:
        emit(out)
    else:
        print(rec.transcript)
        log.info("%s", ", ".join(f"{k}={v}" for k, v in out.items() if k != "transcript"))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model.speech.ctc import error_rates
    from model.speech.dataset import load_split
    from sim.asr import load_speech_model, recognize
    from sim.progress import Progress

    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise UserError(f"--engine {args.engine!r}: unknown engine {bad[0] if bad else ''!r}; "
                        f"use a comma-separated list of {', '.join(ENGINES)}")
    sm = load_speech_model(args.weights, args.checkpoint)
    utts = load_split(args.data, args.split)[:args.limit]
    refs = [u.text for u in utts]
    results: dict[str, dict[str, Any]] = {}
    with Progress(len(engines) * len(utts), "evaluate", unit="utt") as bar:
        for engine in engines:
            hyps, extra = [], {"cycles": 0, "mismatches": 0, "compared": 0}
            for u in utts:
                rec = recognize(sm, u.audio, engine, keep_runs=args.keep_runs)
                hyps.append(rec.transcript)
                for k in extra:
                    extra[k] += rec.rtl.get(k, 0)
                bar.update(1)
            rates = error_rates(refs, hyps)
            results[engine] = {**{k: round(v, 5) for k, v in rates.items()},
                               "utterances": len(utts), "transcripts": hyps,
                               **(extra if engine == "rtl" else {})}
    first = results[engines[0]]
    out = {"wer": first["wer"], "cer": first["cer"], "engine": engines[0],
           "split": args.split, "data": str(args.data), "weights": str(sm.weights),
           "engines": results, "references": refs}
    if args.json:
        emit(out)
    else:
        rows = [[e, f"{100 * r['wer']:.2f}", f"{100 * r['cer']:.2f}", r["utterances"]]
                for e, r in results.items()]
        print(format_table(["engine", "WER %", "CER %", "utterances"], rows))
    return 0
