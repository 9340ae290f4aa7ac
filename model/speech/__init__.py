"""Speech data for the trained folded model: spoken digit strings synthesized with eSpeak NG
(:mod:`model.speech.espeak`, :mod:`model.speech.dataset`) and the log-mel front end
(:mod:`model.speech.frontend`). Importing this package loads neither eSpeak NG nor librosa."""

from model.speech.dataset import (
    DEFAULT_VOICE,
    DIGITS,
    SPLITS,
    DatasetError,
    Utterance,
    load_split,
    make_dataset,
    parse_transcript,
    say,
)
from model.speech.espeak import SAMPLE_RATE, SpeechSynthError, synthesize
from model.speech.frontend import FrontendConfig, features, log_mel

__all__ = ["DEFAULT_VOICE", "DIGITS", "SAMPLE_RATE", "SPLITS", "DatasetError", "FrontendConfig",
           "SpeechSynthError", "Utterance", "features", "load_split", "log_mel", "make_dataset",
           "parse_transcript", "say", "synthesize"]
