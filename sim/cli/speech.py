"""``foldaccel speech ...``: speech data for the trained model.

``speech data`` synthesizes the spoken-digit dataset of :mod:`model.speech.dataset` with
eSpeak NG into ``--out`` (train / valid / test split by voice) and prints a summary: utterances,
voices and minutes of audio per split.
"""

from __future__ import annotations

import argparse
import logging

from model.speech.dataset import DEFAULT_UTTERANCES, SPLITS, DatasetError
from model.speech.espeak import SpeechSynthError
from sim.cli.common import USER_ERRORS, add_json_arg, add_seed_arg, emit, format_table

log = logging.getLogger("foldaccel.speech")
USER_ERRORS.extend([DatasetError, SpeechSynthError])


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer; fix: use e.g. "
                                         f"{DEFAULT_UTTERANCES}") from None
    if n < len(SPLITS):
        raise argparse.ArgumentTypeError(f"{n} is too few; fix: use at least {len(SPLITS)} "
                                         "(one per split)")
    return n


def add_speech_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``speech`` and its subcommand ``data`` (handler :func:`cmd_speech`) to ``sub``."""
    p = sub.add_parser("speech", help="speech data: the synthesized spoken-digit dataset",
                       description="Speech data for training the folded encoder.")
    ssub = p.add_subparsers(dest="speech_command", metavar="SUBCOMMAND")
    ssub.required = True
    data = ssub.add_parser(
        "data", help="synthesize the spoken-digit dataset with eSpeak NG",
        description="Synthesize N utterances of 1-7 spoken digits with eSpeak NG (random "
        "English accent and variant, rate, pitch, noise and silence, all from --seed) into "
        "--out: wav/<split>/<id>.wav, <split>.jsonl and dataset.json. Train, valid and test "
        "are split by voice (70/10/20 % of utterances); the same seed gives the same bytes.")
    data.add_argument("--out", required=True, metavar="DIR",
                      help="output directory: new, empty or an earlier dataset's (replaced)")
    data.add_argument("--utterances", type=_count, default=DEFAULT_UTTERANCES, metavar="N",
                      help=f"utterances in all splits (default {DEFAULT_UTTERANCES})")
    add_seed_arg(data, 0, "the transcripts, voices, rates, pitches, noise and silences")
    data.add_argument("--splits", default=",".join(SPLITS), metavar="LIST",
                      help="write only these splits (comma-separated); each keeps the "
                      "utterances it has in the full dataset")
    data.add_argument("--no-progress", action="store_true",
                      help="no progress bar on stderr (default: shown on a terminal)")
    add_json_arg(data)
    data.set_defaults(func=cmd_speech)


#: What ``sim.cli.COMMAND_MODULES`` calls.
register = add_speech_parser


def cmd_speech(args: argparse.Namespace) -> int:
    """Handler of ``foldaccel speech data``: write the dataset, print its summary."""
    from model.speech.dataset import make_dataset, read_metadata, split_counts
    from sim.progress import Progress

    if args.speech_command != "data":  # pragma: no cover - argparse allows only 'data'
        raise DatasetError(f"unknown speech subcommand '{args.speech_command}'")
    log.info("speech data: %d utterances, seed %d -> %s", args.utterances, args.seed, args.out)
    splits = tuple(sp.strip() for sp in args.splits.split(",") if sp.strip())
    total = sum(n for sp, n in split_counts(args.utterances).items() if sp in splits)
    with Progress(total, "speech data", unit="utt", enabled=not args.no_progress) as bar:
        out = make_dataset(args.out, utterances=args.utterances, seed=args.seed,
                           progress=lambda done, _total: bar.update(done - bar.done),
                           splits=splits)
    meta = read_metadata(out)
    used = _voices_used(out)
    summary = {
        "path": str(out), "seed": meta["seed"], "sample_rate": meta["sample_rate"],
        "espeak_ng": meta["generator"]["espeak_ng"],
        "splits": {s: {"utterances": meta["utterances"][s], "voices": len(meta["voices"][s]),
                       "voices_used": used[s],
                       "audio_minutes": round(meta["audio_seconds"][s] / 60, 2)}
                   for s in SPLITS},
    }
    summary["audio_minutes"] = round(sum(v["audio_minutes"] for v in summary["splits"].values()),
                                     2)
    if args.json:
        emit(summary)
        return 0
    rows = [[s, v["utterances"], v["voices"], v["voices_used"], f"{v['audio_minutes']:.1f}"]
            for s, v in summary["splits"].items()]
    rows.append(["total", sum(r[1] for r in rows), sum(r[2] for r in rows),
                 sum(r[3] for r in rows), f"{summary['audio_minutes']:.1f}"])
    print(f"spoken digits, eSpeak NG {summary['espeak_ng']}, seed {summary['seed']}, "
          f"{summary['sample_rate']:,} Hz")
    print(format_table(["split", "utterances", "voices", "voices used", "audio (min)"], rows))
    print(f"dataset: {out}")
    return 0


def _voices_used(out) -> dict[str, int]:
    """Distinct voices that occur in each split's jsonl."""
    import json

    used = {}
    for s in SPLITS:
        with open(out / f"{s}.jsonl") as f:
            used[s] = len({json.loads(line)["voice"] for line in f})
    return used


__all__ = ["add_speech_parser", "cmd_speech", "register"]
