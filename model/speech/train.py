"""CTC training of the folded streaming encoder on the spoken-digit set, and its checkpoints.

The model is :class:`model.encoder.FoldingEmformer` of a speech config (``n_features`` log-mel
inputs, a ``vocab``-way classifier), trained in its whole-utterance masked form
(:meth:`FoldingEmformer.forward`, which computes exactly what the streaming
:meth:`~FoldingEmformer.infer` computes segment by segment), so the trained weights stream
unchanged. Per step: ``batch`` training utterances (a seeded permutation per epoch; every
utterance at the speeds of :data:`SPEEDS`), each padded to whole segments by repeating its
last feature frame and SpecAugmented (:func:`spec_augment`), the sum of their CTC losses
(``torch.nn.functional.ctc_loss``, blank 0, over the ``S*L`` output frames) divided by the
batch's target tokens; Adam with a linear warm-up and a cosine decay to 10 %, gradient norm
clipped at 5. Every ``eval_every`` steps the greedy WER on the validation voices is recorded.

Everything is seeded (weights from :func:`model.encoder.build_model`, the batch order, torch's
own generator) and torch runs on a fixed number of threads, so the same seed, data and thread
count give the same loss curve.

Checkpoints are ``torch.save`` of a dict of plain values and tensors (:func:`save_checkpoint`),
loaded with ``weights_only=True`` (:func:`load_checkpoint`): no pickled code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Config, config_from_dict
from model.speech import ctc
from model.speech.frontend import FrontendConfig, features

CHECKPOINT_FORMAT = "foldaccel-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class TrainOptions:
    """Training hyper-parameters (the defaults train the demo-size models)."""

    steps: int = 1500
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 100
    clip: float = 5.0
    eval_every: int = 250
    eval_utterances: int = 200
    seed: int = 0
    threads: int = 1
    # SpecAugment (Park et al. 2019) on the log-mel rows: masks per utterance and their widths
    freq_masks: int = 2
    freq_width: int = 8          # mel bins (the same bins in every stacked frame)
    time_masks: int = 2
    time_width: int = 3          # encoder frames


@dataclass
class TrainResult:
    """What :func:`train` made: the checkpoint and the curves."""

    checkpoint: Path
    losses: list[float] = field(default_factory=list)
    valid: list[tuple[int, float]] = field(default_factory=list)   # (step, WER)
    seconds: float = 0.0


def check_speech_config(cfg: Config, frontend: FrontendConfig) -> None:
    """A config the speech task can train: features of the front end's width, a classifier of
    :data:`ctc.VOCAB` outputs, the front end's frame duration."""
    m = cfg.model
    if m.n_features != frontend.feature_dim:
        raise CheckpointError(f"{cfg.source}: [model] n_features = {m.n_features}, the front end "
                              f"gives {frontend.feature_dim} features per frame; fix: set "
                              f"n_features = {frontend.feature_dim} (e.g. configs/speech.toml)")
    if m.vocab != ctc.VOCAB:
        raise CheckpointError(f"{cfg.source}: [model] vocab = {m.vocab}, the digit task needs "
                              f"{ctc.VOCAB} (blank + 10 digits); fix: set vocab = {ctc.VOCAB}")
    if abs(m.frame_ms - frontend.frame_ms) > 1e-6:
        raise CheckpointError(f"{cfg.source}: [model] frame_ms = {m.frame_ms}, the front end's "
                              f"frames are {frontend.frame_ms} ms; fix: set frame_ms = "
                              f"{frontend.frame_ms}")


def pad_to_segments(frames: np.ndarray, cfg: Config) -> np.ndarray:
    """Feature frames ``(T, F)`` -> ``(S*L + R, F)`` with ``S = max(1, ceil((T - R) / L))``,
    padded by repeating the last frame (what a streaming host does at the end of audio)."""
    m = cfg.model
    length, r = m.segment_length, m.right_context
    s = max(1, math.ceil((frames.shape[0] - r) / length))
    need = s * length + r
    if frames.shape[0] >= need:
        return frames[:need]
    pad = np.repeat(frames[-1:], need - frames.shape[0], axis=0)
    return np.concatenate([frames, pad]).astype(np.float32)


def utterance_features(audio: np.ndarray, cfg: Config,
                       frontend: FrontendConfig | None = None) -> np.ndarray:
    """int16 audio -> the encoder's padded float32 input rows (front end, then padding)."""
    return pad_to_segments(features(audio, frontend or FrontendConfig()), cfg)


#: Speed perturbation factors of the training audio (Ko et al. 2015): each training utterance
#: is used at these speeds (resampled; pitch, formants and tempo scale together).
SPEEDS = (0.9, 1.0, 1.1)


def perturb_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """``audio`` played ``factor`` times faster (linear-interpolation resampling; int16)."""
    if factor == 1.0:
        return audio
    x = audio.astype(np.float64)
    t = np.arange(0, len(x) - 1, factor)
    return np.clip(np.rint(np.interp(t, np.arange(len(x)), x)), -32768, 32767).astype(np.int16)


def training_items(utterances, cfg: Config, frontend: FrontendConfig | None = None,
                   speeds: tuple[float, ...] = SPEEDS) -> list[tuple[np.ndarray, str]]:
    """``(padded features, transcript)`` of every utterance at every speed of ``speeds``."""
    return [(utterance_features(perturb_speed(u.audio, f), cfg, frontend), u.text)
            for u in utterances for f in speeds]


def spec_augment(x, opts: TrainOptions, gen, n_mels: int):
    """SpecAugment of one utterance's rows ``(T, stack*n_mels)`` (torch): ``freq_masks``
    bands of up to ``freq_width`` mel bins and ``time_masks`` runs of up to ``time_width``
    frames set to the utterance's mean (seeded by the torch generator ``gen``)."""
    import torch

    x = x.clone()
    fill = x.mean()
    t, width = x.shape
    stack = width // n_mels
    view = x.view(t, stack, n_mels)
    for _ in range(opts.freq_masks):
        w = int(torch.randint(0, opts.freq_width + 1, (1,), generator=gen))
        f0 = int(torch.randint(0, max(1, n_mels - w), (1,), generator=gen))
        view[:, :, f0:f0 + w] = fill
    for _ in range(opts.time_masks):
        w = int(torch.randint(0, opts.time_width + 1, (1,), generator=gen))
        t0 = int(torch.randint(0, max(1, t - w), (1,), generator=gen))
        view[t0:t0 + w] = fill
    return x


def _lr(step: int, opts: TrainOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    t = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def float_logits(model, frames: np.ndarray) -> np.ndarray:
    """The float model's logits ``(S*L, vocab)`` of padded input rows (no gradients)."""
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(frames, dtype=model.dtype)).double().numpy()


def evaluate_float(model, items: list[tuple[np.ndarray, str]]) -> float:
    """Greedy WER of the float model on ``(padded features, transcript)`` pairs."""
    hyps = [ctc.greedy_transcript(float_logits(model, x)) for x, _ in items]
    return ctc.error_rates([t for _, t in items], hyps)["wer"]


def train(cfg: Config, train_items: list[tuple[np.ndarray, str]],
          valid_items: list[tuple[np.ndarray, str]], out_dir: str | Path,
          opts: TrainOptions | None = None,
          progress: Callable[[int, float], None] | None = None,
          frontend: FrontendConfig | None = None) -> TrainResult:
    """Train ``cfg``'s model on ``(padded features, transcript)`` pairs and write
    ``out_dir/checkpoint.pt`` and ``out_dir/training_curve.png``. ``progress(step, loss)`` is
    called after every step."""
    import torch

    from model.encoder import build_model

    opts = opts or TrainOptions()
    frontend = frontend or FrontendConfig()
    check_speech_config(cfg, frontend)
    if not train_items:
        raise CheckpointError("no training utterances; fix: generate a dataset first")
    out = Path(out_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    t0 = time.monotonic()
    try:
        torch.manual_seed(opts.seed)
        model = build_model(cfg, seed=opts.seed).train()
        optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
        rng = np.random.default_rng(opts.seed)
        gen = torch.Generator().manual_seed(opts.seed)
        order: list[int] = []
        xs = [torch.as_tensor(x) for x, _ in train_items]
        ys = [torch.tensor(ctc.encode(t), dtype=torch.long) for _, t in train_items]
        result = TrainResult(out / "checkpoint.pt")
        evals = valid_items[:opts.eval_utterances]
        for step in range(opts.steps):
            for g in optim.param_groups:
                g["lr"] = _lr(step, opts)
            loss = torch.zeros((), dtype=torch.float32)
            n_tokens = 0
            for _ in range(opts.batch):
                if not order:
                    order = list(rng.permutation(len(xs)))
                i = order.pop()
                logp = model(spec_augment(xs[i], opts, gen, frontend.n_mels)).log_softmax(-1)
                loss = loss + torch.nn.functional.ctc_loss(
                    logp[:, None, :], ys[i][None], torch.tensor([logp.shape[0]]),
                    torch.tensor([len(ys[i])]), blank=ctc.BLANK, reduction="sum",
                    zero_infinity=True)
                n_tokens += len(ys[i])
            loss = loss / max(1, n_tokens)
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip)
            optim.step()
            result.losses.append(float(loss.detach()))
            if evals and ((step + 1) % opts.eval_every == 0 or step + 1 == opts.steps):
                model.eval()
                result.valid.append((step + 1, evaluate_float(model, evals)))
                model.train()
            if progress:
                progress(step + 1, result.losses[-1])
        model.eval()
        result.seconds = time.monotonic() - t0
        save_checkpoint(result.checkpoint, cfg, model, frontend, opts, result)
        plot_curve(result, out / "training_curve.png", cfg)
        return result
    finally:
        torch.set_num_threads(before)


def save_checkpoint(path: Path, cfg: Config, model, frontend: FrontendConfig,
                    opts: TrainOptions, result: TrainResult) -> None:
    """Write the checkpoint atomically (temp file + rename)."""
    import torch

    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": cfg.to_dict(), "frontend": dataclasses.asdict(frontend),
            "options": dataclasses.asdict(opts),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "losses": list(result.losses), "valid_wer": [list(v) for v in result.valid],
            "train_seconds": round(result.seconds, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Checkpoint:
    """A loaded checkpoint: its config, front end, the float model (eval mode) and metadata."""

    path: Path
    config: Config
    frontend: FrontendConfig
    model: Any
    meta: dict[str, Any]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a :func:`save_checkpoint` file (``weights_only=True``) into a float model."""
    import torch

    from model.encoder import FoldingEmformer

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' not found; fix: pass a checkpoint.pt written "
                              "by `foldaccel train`")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"checkpoint '{p}' cannot be read ({type(e).__name__}: {e}); "
                              "fix: train again or pass another file") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{p}' is not a foldaccel checkpoint; fix: pass a checkpoint.pt "
                              "written by `foldaccel train`")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"'{p}' has checkpoint version {data.get('version')}, this "
                              f"foldaccel reads {CHECKPOINT_VERSION}; fix: train again")
    cfg = config_from_dict(data["config"], f"{p} config", complete=True)
    try:
        frontend = FrontendConfig(**data["frontend"])
    except TypeError as e:
        raise CheckpointError(f"'{p}': bad front-end parameters ({e}); fix: train again") from None
    check_speech_config(cfg, frontend)
    model = FoldingEmformer(cfg)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"'{p}': weights do not fit its config ({e}); fix: train "
                              "again") from None
    meta = {k: v for k, v in data.items() if k not in ("state_dict", "config", "frontend")}
    return Checkpoint(p, cfg, frontend, model.float().eval(), meta)


def plot_curve(result: TrainResult, path: Path, cfg: Config) -> None:
    """Training loss per step and validation WER, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(result.losses) + 1)
    ax.plot(steps, result.losses, lw=0.6, color="tab:blue", alpha=0.5, label="CTC loss / token")
    if len(result.losses) >= 20:
        k = 20
        smooth = np.convolve(result.losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", label="loss (20-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("CTC loss per token")
    ax.set_yscale("log")
    if result.valid:
        ax2 = ax.twinx()
        vs, vw = zip(*result.valid, strict=True)
        ax2.plot(vs, [100 * w for w in vw], "o-", color="tab:red", label="valid WER (float)")
        ax2.set_ylabel("validation WER (%)", color="tab:red")
        ax2.set_ylim(bottom=0)
    m = cfg.model
    ax.set_title(f"fold {m.fold_factor}: D={m.d_model}, {m.n_layers} layers")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
