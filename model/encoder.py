"""Float streaming encoder: augmented-memory (Emformer-order) layers with folding attention.

Shapes: D = d_model, N = fold_factor, L = segment_length, R = right_context, C = left_context,
M = max_memory, S = number of segments. Compute happens in the dtype of the parameters
(``build_model(..., dtype=torch.float32)`` by default; tests that compare the two entry points
use float64). LayerNorms use ``eps = 1e-5`` with affine parameters.

One layer, one segment (:meth:`EmformerLayer.step`), rows ``x = [right context (R); segment
(L)]``:

1. ``ln_in = LN_in(x)``; ``summary = mean(ln_in[R:])`` (the normalized segment rows).
2. Queries: tokens ``[ln_in; summary]`` (``R + L + 1``). Keys/values: tokens ``[memory bank (m);
   ln_in (R + L)]`` are projected, and the cached left-context keys/values (``c*N`` folded rows,
   already projected) are inserted between the right context and the segment, giving the key
   order ``[memory; right context; left context; segment]``. Memory vectors are *not*
   normalized (they are the squashed outputs of the layer below), as in torchaudio.
3. Mask (token level, expanded by ``kron(., ones(N, N))``): right-context and segment queries see
   every key; the summary query sees everything except the memory bank.
4. ``attn_out = unfold(out_proj(context))``. Its last row, squashed by ``clamp(±memory_clamp)`` or
   ``tanh`` (``memory_squash``), is the layer's ``new_memory``.
5. ``resid1 = attn_out[:R+L] + x``; ``resid2 = FFN(LN_ffn(resid1)) + resid1`` (ReLU FFN);
   ``out = LN_out(resid2)``.
6. The new left-context cache is the last ``C*N`` rows of ``[lc cache; segment keys/values]``.

Memory bank flow (as torchaudio's Emformer): the bank of layer 0 receives the mean of each raw
input segment; the bank of layer i+1 receives layer i's ``new_memory``. A segment sees only
memories of *earlier* segments: the vector a layer receives for segment s is appended to its
bank after segment s, and the bank keeps the last M vectors (oldest first). The last layer's
``new_memory`` is unused.

Two entry points compute the same function:

* :meth:`FoldingEmformer.forward` takes a whole utterance ``(S*L + R, D)`` and returns the
  ``(S*L, D)`` segment outputs; every layer runs once over all segments with the block mask of
  :func:`full_attention_mask` (left context = the previous C frames of the same layer's input).
* :meth:`FoldingEmformer.infer` takes one chunk ``(L + R, D)`` (a segment followed by its
  right-context frames, i.e. ``frames[s*L : (s+1)*L + R]``) and a :class:`StreamState`.

Every segment has exactly L frames: an utterance whose length is not ``S*L + R`` is rejected
(pad it, e.g. by repeating the last frame, to a whole number of segments first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from model.config import Config, ModelConfig, model_config
from model.folding import FeedForward, FoldingAttention, expand_mask, unfold

LN_EPS = 1e-5



def step_attention_mask(n_memory: int, right_context: int, n_left: int,
                        segment_length: int) -> Tensor:
    """Token-level ``allowed`` mask of one streaming step.

    Rows: ``[right context; segment; summary]``; columns: ``[memory (n_memory); right context;
    left context (n_left tokens); segment]``. Only the summary row is restricted (no memory).
    """
    rows = right_context + segment_length + 1
    cols = n_memory + right_context + n_left + segment_length
    allowed = torch.ones(rows, cols, dtype=torch.bool)
    allowed[-1, :n_memory] = False
    return allowed


def full_attention_mask(cfg: ModelConfig | Config, n_segments: int) -> Tensor:
    """Token-level ``allowed`` mask of the whole-utterance forward over ``S`` segments.

    Rows: ``[all right-context blocks (S*R); all segment frames (S*L); summaries (S)]``.
    Columns: ``[memories (S-1); all right-context blocks (S*R); all segment frames (S*L)]``.
    Right-context and segment rows of segment s see memories ``max(0, s-M) .. s-1``, their own
    right-context block and frames ``max(0, s*L - C) .. (s+1)*L - 1``; summary s sees the same
    except the memories.
    """
    c = model_config(cfg)
    s_n, length, r, lc, m = (n_segments, c.segment_length, c.right_context, c.left_context,
                             c.max_memory)
    rows = s_n * (r + length) + s_n
    mem0, rc0 = 0, s_n - 1
    utt0 = rc0 + s_n * r
    allowed = torch.zeros(rows, utt0 + s_n * length, dtype=torch.bool)
    for s in range(s_n):
        visible = torch.zeros(allowed.shape[1], dtype=torch.bool)
        visible[rc0 + s * r: rc0 + (s + 1) * r] = True
        visible[utt0 + max(0, s * length - lc): utt0 + (s + 1) * length] = True
        summary_row = s_n * (r + length) + s
        allowed[summary_row] = visible
        visible[mem0 + max(0, s - m): mem0 + s] = True
        allowed[s * r: (s + 1) * r] = visible
        allowed[s_n * r + s * length: s_n * r + (s + 1) * length] = visible
    return allowed


def push_memory(bank: Tensor, vector: Tensor, max_memory: int) -> Tensor:
    """Append ``vector (D,)`` to ``bank (m, D)`` and keep the last ``max_memory`` rows."""
    return torch.cat([bank, vector.reshape(1, -1)])[-max_memory:]


@dataclass(frozen=True)
class LayerStep:
    """Result of :meth:`EmformerLayer.step`.

    ``out (R+L, D)`` rows ``[right context; segment]``; ``new_memory (D,)``; the updated
    left-context cache ``lc_key``/``lc_value`` ``(c*N, D/N)`` with ``c <= C``; ``trace`` holds
    the intermediate tensors when requested (see :meth:`EmformerLayer.step`), else ``None``.
    """

    out: Tensor
    new_memory: Tensor
    lc_key: Tensor
    lc_value: Tensor
    trace: dict[str, Tensor] | None = None


@dataclass(frozen=True)
class LayerState:
    """Streaming state of one layer: ``memory (m, D)`` with ``m <= M`` (oldest first) and the
    projected, folded left-context cache ``lc_key``/``lc_value`` ``(c*N, D/N)``, ``c <= C``."""

    memory: Tensor
    lc_key: Tensor
    lc_value: Tensor


@dataclass(frozen=True)
class StreamState:
    """Streaming state of the encoder: one :class:`LayerState` per layer and the number of
    segments processed so far."""

    layers: tuple[LayerState, ...]
    segments: int = 0


class EmformerLayer(nn.Module):
    """One augmented-memory layer. Parameters: ``ln_in``, ``attn.{q,k,v,out}_proj``,
    ``ln_ffn``, ``ffn.fc1``, ``ffn.fc2``, ``ln_out`` (each with ``weight`` and ``bias``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.ln_in = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = FoldingAttention(cfg)
        self.ln_ffn = nn.LayerNorm(d, eps=LN_EPS)
        self.ffn = FeedForward(cfg)
        self.ln_out = nn.LayerNorm(d, eps=LN_EPS)

    def squash(self, x: Tensor) -> Tensor:
        """Memory squash: ``clamp(x, ±memory_clamp)`` or ``tanh(x)``."""
        if self.cfg.memory_squash == "tanh":
            return torch.tanh(x)
        return torch.clamp(x, -self.cfg.memory_clamp, self.cfg.memory_clamp)

    def _post_attention(self, x: Tensor, attn_rows: Tensor) -> dict[str, Tensor]:
        resid1 = attn_rows + x
        ln_ffn = self.ln_ffn(resid1)
        ffn = self.ffn.parts(ln_ffn)
        resid2 = ffn["ffn_out"] + resid1
        return {"resid1": resid1, "ln_ffn": ln_ffn, **ffn, "resid2": resid2,
                "ln_out": self.ln_out(resid2)}

    def step(self, x: Tensor, memory: Tensor, lc_key: Tensor, lc_value: Tensor,
             trace: bool = False) -> LayerStep:
        """Run one segment through this layer (see the module docstring for the math).

        ``x (R+L, D)`` rows ``[right context; segment]``; ``memory (m, D)`` this layer's bank;
        ``lc_key``/``lc_value`` ``(c*N, D/N)`` the cache. With ``trace=True`` the result's
        ``trace`` holds: ``x_in``, ``ln_in``, ``summary (1, D)``, ``q (Tq*N, D/N)`` (unscaled),
        ``k``/``v`` ``(Tk*N, D/N)`` in key order ``[memory; rc; lc; segment]``, ``allowed``
        (sub-token mask ``(Tq*N, Tk*N)``), ``scores`` (scaled, ``-inf`` where masked) and
        ``probs`` ``(heads, Tq*N, Tk*N)``, ``context`` ``(Tq*N, D/N)``, ``out_proj`` (folded),
        ``attn_out (Tq, D)``, ``resid1``, ``ln_ffn``, ``ffn_pre``/``ffn_hidden`` (fc1 output
        before/after ReLU, folded when ``fold_scope='attn+ffn'``), ``ffn_out``, ``resid2``,
        ``ln_out`` (= ``out``), ``new_memory``, ``lc_key``, ``lc_value``;
        ``Tq = R+L+1``, ``Tk = m+R+c+L``.
        """
        cfg = self.cfg
        n, r, length, d = cfg.fold_factor, cfg.right_context, cfg.segment_length, cfg.d_model
        if x.shape != (r + length, d):
            raise ValueError(f"layer step expects x of shape {(r + length, d)} "
                             f"(right_context + segment_length rows), got {tuple(x.shape)}")
        m = memory.shape[0]
        if m > cfg.max_memory:
            raise ValueError(f"memory bank holds {m} vectors, more than max_memory="
                             f"{cfg.max_memory}")
        if lc_key.shape != lc_value.shape or lc_key.shape[0] % n:
            raise ValueError(f"left-context cache shapes {tuple(lc_key.shape)} / "
                             f"{tuple(lc_value.shape)} are not (c*{n}, {cfg.folded_dim})")
        c = lc_key.shape[0] // n
        if c > cfg.left_context:
            raise ValueError(f"left-context cache holds {c} tokens, more than left_context="
                             f"{cfg.left_context}")

        ln_in = self.ln_in(x)
        summary = ln_in[r:].mean(dim=0, keepdim=True)
        q = self.attn.project_q(torch.cat([ln_in, summary]))
        k_new, v_new = self.attn.project_kv(torch.cat([memory, ln_in]))
        split = (m + r) * n
        k = torch.cat([k_new[:split], lc_key, k_new[split:]])
        v = torch.cat([v_new[:split], lc_value, v_new[split:]])
        allowed = expand_mask(step_attention_mask(m, r, c, length), n)
        att = self.attn.attend(q, k, v, allowed)
        out_proj = self.attn.project_out(att["context"])
        attn_out = unfold(out_proj, n)
        new_memory = self.squash(attn_out[-1])
        post = self._post_attention(x, attn_out[:-1])

        keep = cfg.left_context * n
        if keep:
            new_lc_key = torch.cat([lc_key, k_new[split:]])[-keep:]
            new_lc_value = torch.cat([lc_value, v_new[split:]])[-keep:]
        else:
            new_lc_key, new_lc_value = lc_key, lc_value
        tr = None
        if trace:
            tr = {"x_in": x, "ln_in": ln_in, "summary": summary, "q": q, "k": k, "v": v,
                  "allowed": allowed, **att, "out_proj": out_proj, "attn_out": attn_out,
                  **post, "new_memory": new_memory, "lc_key": new_lc_key,
                  "lc_value": new_lc_value}
        return LayerStep(post["ln_out"], new_memory, new_lc_key, new_lc_value, tr)

    def forward_full(self, x_rc: Tensor, x_utt: Tensor,
                     memory: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Whole-utterance pass of this layer over S segments at once.

        ``x_rc (S*R, D)``: the right-context blocks in segment order; ``x_utt (S*L, D)``: the
        segment frames; ``memory (S-1, D)``: the vectors this layer's bank receives for
        segments 0..S-2. Returns ``(out_rc, out_utt, new_memories (S, D))``.
        """
        cfg = self.cfg
        n, length, d = cfg.fold_factor, cfg.segment_length, cfg.d_model
        s_n = x_utt.shape[0] // length
        n_rc = x_rc.shape[0]
        x = torch.cat([x_rc, x_utt])
        ln = self.ln_in(x)
        summaries = ln[n_rc:].reshape(s_n, length, d).mean(dim=1)
        q = self.attn.project_q(torch.cat([ln, summaries]))
        k, v = self.attn.project_kv(torch.cat([memory, ln]))
        allowed = expand_mask(full_attention_mask(cfg, s_n), n)
        context = self.attn.attend(q, k, v, allowed)["context"]
        attn_out = unfold(self.attn.project_out(context), n)
        out = self._post_attention(x, attn_out[:-s_n])["ln_out"]
        return out[:n_rc], out[n_rc:], self.squash(attn_out[-s_n:])


class FoldingEmformer(nn.Module):
    """The encoder: ``n_layers`` :class:`EmformerLayer` s in ``layers``; with
    ``n_features > 0`` an ``input_proj`` (``n_features -> d_model``) before them, with
    ``vocab > 0`` a ``classifier`` (``d_model -> vocab`` logits) after them."""

    def __init__(self, cfg: ModelConfig | Config):
        super().__init__()
        self.cfg = model_config(cfg)
        c = self.cfg
        if c.n_features:
            self.input_proj = nn.Linear(c.n_features, c.d_model)
        self.layers = nn.ModuleList(EmformerLayer(c) for _ in range(c.n_layers))
        if c.vocab:
            self.classifier = nn.Linear(c.d_model, c.vocab)

    def project(self, frames: Tensor) -> Tensor:
        """Input rows -> the first layer's ``d_model`` rows (the input projection, if any)."""
        return self.input_proj(frames) if self.cfg.n_features else frames

    def classify(self, out: Tensor) -> Tensor:
        """The last layer's rows -> the model output (the classifier's logits, if any)."""
        return self.classifier(out) if self.cfg.vocab else out

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].ln_in.weight.dtype

    def _check_input(self, x: Tensor, what: str) -> Tensor:
        if not isinstance(x, Tensor):
            x = torch.as_tensor(x, dtype=self.dtype)
        if x.dtype != self.dtype:
            raise TypeError(f"{what} has dtype {x.dtype} but the model computes in "
                            f"{self.dtype}; convert one of them (e.g. model.double())")
        c = self.cfg
        if x.ndim != 2 or x.shape[1] != c.input_dim:
            what_dim = f"n_features={c.n_features}" if c.n_features else f"d_model={c.d_model}"
            raise ValueError(f"{what} must have shape (frames, {what_dim}), "
                             f"got {tuple(x.shape)}")
        return x

    def n_segments(self, n_frames: int) -> int:
        """Number of segments of an utterance of ``n_frames``; rejects ragged lengths."""
        c = self.cfg
        body = n_frames - c.right_context
        if body < c.segment_length or body % c.segment_length:
            raise ValueError(
                f"utterance of {n_frames} frames is not n_segments*segment_length + "
                f"right_context = n*{c.segment_length} + {c.right_context} with n >= 1; "
                "pad it to a whole number of segments (e.g. repeat the last frame)")
        return body // c.segment_length

    def chunks(self, frames: Tensor) -> Iterator[Tensor]:
        """The streaming chunks ``frames[s*L : (s+1)*L + R]`` of an utterance, in order."""
        c = self.cfg
        for s in range(self.n_segments(frames.shape[0])):
            yield frames[s * c.segment_length: (s + 1) * c.segment_length + c.right_context]

    def forward(self, frames: Tensor) -> Tensor:
        """Whole utterance ``(S*L + R, input_dim)`` -> segment outputs ``(S*L, output_dim)``
        (block masks)."""
        frames = self.project(self._check_input(frames, "frames"))
        c = self.cfg
        s_n = self.n_segments(frames.shape[0])
        length, r = c.segment_length, c.right_context
        x_utt = frames[: s_n * length]
        x_rc = torch.cat([frames[(s + 1) * length: (s + 1) * length + r] for s in range(s_n)])
        memory = x_utt.reshape(s_n, length, -1).mean(dim=1)[:-1]
        for layer in self.layers:
            x_rc, x_utt, new_memory = layer.forward_full(x_rc, x_utt, memory)
            memory = new_memory[:-1]
        return self.classify(x_utt)

    def init_state(self) -> StreamState:
        """Empty state: no memories, empty left-context caches."""
        c = self.cfg
        kw = {"dtype": self.dtype}
        empty = LayerState(torch.zeros(0, c.d_model, **kw), torch.zeros(0, c.folded_dim, **kw),
                           torch.zeros(0, c.folded_dim, **kw))
        return StreamState(tuple(empty for _ in self.layers), 0)

    def infer_trace(self, chunk: Tensor, state: StreamState | None = None
                    ) -> tuple[Tensor, StreamState, list[dict[str, Tensor]]]:
        """:meth:`infer` that also returns each layer's step trace (see
        :meth:`EmformerLayer.step`)."""
        return self._infer(chunk, state, trace=True)

    def infer(self, chunk: Tensor, state: StreamState | None = None
              ) -> tuple[Tensor, StreamState]:
        """One streaming step: ``chunk (L+R, D)`` = a segment then its right-context frames.

        Returns the segment's output ``(L, output_dim)`` and the new state (``state=None`` starts a
        fresh stream). Layer i runs :meth:`EmformerLayer.step` on rows ``[rc; segment]``; the
        vector it received (raw segment mean for layer 0, layer i-1's ``new_memory`` otherwise)
        is then pushed onto its bank.
        """
        out, new_state, _ = self._infer(chunk, state, trace=False)
        return out, new_state

    def _infer(self, chunk, state, trace):
        chunk = self.project(self._check_input(chunk, "chunk"))
        c = self.cfg
        length, r = c.segment_length, c.right_context
        if chunk.shape[0] != length + r:
            raise ValueError(f"chunk must have segment_length + right_context = {length + r} "
                             f"rows, got {chunk.shape[0]}")
        state = self.init_state() if state is None else state
        x = torch.cat([chunk[length:], chunk[:length]])
        incoming = chunk[:length].mean(dim=0)     # of the projected rows
        layers, traces = [], []
        for layer, ls in zip(self.layers, state.layers, strict=True):
            res = layer.step(x, ls.memory, ls.lc_key, ls.lc_value, trace=trace)
            layers.append(LayerState(push_memory(ls.memory, incoming, c.max_memory),
                                     res.lc_key, res.lc_value))
            traces.append(res.trace)
            incoming, x = res.new_memory, res.out
        return self.classify(x[r:]), StreamState(tuple(layers), state.segments + 1), traces

    def stream(self, frames: Tensor) -> Tensor:
        """Run a whole utterance through :meth:`infer` chunk by chunk -> ``(S*L, D)``."""
        frames = self._check_input(frames, "frames")
        state, outs = None, []
        for chunk in self.chunks(frames):
            out, state = self.infer(chunk, state)
            outs.append(out)
        return torch.cat(outs)


def init_weights(model: nn.Module, seed: int) -> None:
    """Deterministic init from ``seed`` (module order): linear weights and biases
    ``U(±1/sqrt(fan_in))``; LayerNorm ``weight = 1 + U(±0.1)``, ``bias = U(±0.1)`` (not the
    identity, so the LayerNorm parameters matter in tests). Values are drawn in float32."""
    g = torch.Generator().manual_seed(seed)

    def draw(p: Tensor, lo: float, hi: float, offset: float = 0.0) -> None:
        vals = torch.empty(p.shape, dtype=torch.float32).uniform_(lo, hi, generator=g)
        with torch.no_grad():
            p.copy_(vals + offset)

    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            bound = mod.in_features ** -0.5
            draw(mod.weight, -bound, bound)
            draw(mod.bias, -bound, bound)
        elif isinstance(mod, nn.LayerNorm):
            draw(mod.weight, -0.1, 0.1, 1.0)
            draw(mod.bias, -0.1, 0.1)


def build_model(cfg: ModelConfig | Config, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> FoldingEmformer:
    """A :class:`FoldingEmformer` for ``cfg`` with weights from :func:`init_weights`, in eval
    mode. The same seed gives identical weights (for any dtype: drawn in float32, then cast)."""
    from model.accounting import check_model_fits

    mcfg = model_config(cfg)
    mcfg.validate()
    check_model_fits(mcfg)
    model = FoldingEmformer(mcfg)
    init_weights(model, seed)
    return model.to(dtype).eval()
