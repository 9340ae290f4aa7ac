"""Integer golden model of the streaming encoder (numpy, integers only, built from intops).

It mirrors :meth:`model.encoder.EmformerLayer.step` and :meth:`FoldingEmformer.infer` step by
step (see ``docs/NUMERICS.md``, "Quantized layer step"). GEMM operands are int8; the residual
stream is int16: the input frames, ``resid1``, ``resid2`` and the layer outputs ``ln_out``
(hence every LayerNorm input); softmax probabilities are unsigned 8-bit.

1. ``ln_in = LN(x)`` (``x`` = rows ``[rc; segment]``); ``summary = mean_pool(ln_in[R:])``.
2. ``q = Q([ln_in; summary])``; ``k, v = K, V([memory; ln_in])`` on folded rows; the cached
   left-context keys/values go between the right context and the segment.
3. Per head: ``score = requant(q_h k_h^T)`` (every head's first); ``p = softmax_u8(score,
   mask)`` (the summary rows do not see the memory); ``ctx_h = requant(gemm(p - 128, v_h) +
   128 colsum(v_h))``.
4. ``attn_out = unfold(OUT(ctx))``; its last row is the summary output: squashed and rescaled
   (``mem_in`` of the next layer) it becomes the next layer's incoming memory vector.
5. ``resid1 = add16(attn_out[:-1], x)``; ``resid2 = add16(FC2(relu(FC1(LN(resid1)))),
   resid1)``; ``out = LN(resid2)`` (LayerNorms take int16 rows and give int8, except the
   layer output ``out``, which is int16).
6. The left-context caches keep the last ``C*N`` segment key/value rows; each layer's memory
   bank receives its incoming vector (layer 0: the mean of the raw input segment,
   ``requant(sum_rows(frames[segment]))``), both once the step's attention has read them.

The input arrives as int16 frames (:meth:`GoldenEncoder.quantize_input`, the host's one float
step). The dataflow is written once against an *ops backend* (:class:`NumpyOps` here, the
bit-identical torch backend in :mod:`model.fakequant`), so the fake-quant path cannot drift
from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from model import intops
from model.quantize import HEAD, TAIL, QuantModel, torch_single_thread


class NumpyOps:
    """The integer ops on numpy arrays: :mod:`model.intops` plus array plumbing."""

    gemm_i32 = staticmethod(intops.gemm_i32)
    requantize = staticmethod(intops.requantize)
    requantize_i16 = staticmethod(intops.requantize_i16)
    add_requant_i16 = staticmethod(intops.add_requant_i16)
    softmax_u8 = staticmethod(intops.softmax_u8)
    u8_to_i8 = staticmethod(intops.u8_to_i8)
    zero_point_bias = staticmethod(intops.zero_point_bias)
    layernorm_i16 = staticmethod(intops.layernorm_i16)
    mean_pool_i8 = staticmethod(intops.mean_pool_i8)
    sum_rows_i16 = staticmethod(intops.sum_rows_i16)
    clamp_i8 = staticmethod(intops.clamp_i8)
    lut_i8 = staticmethod(intops.lut_i8)
    ring_push = staticmethod(intops.ring_push)
    ring_view = staticmethod(intops.ring_view)

    @staticmethod
    def asarray(a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def constant(name: str, a: np.ndarray) -> np.ndarray:
        """A tensor of the quantized model, by name (the instruction backend places it)."""
        return np.asarray(a)

    @staticmethod
    def begin_layer(layer: int) -> None:
        """Nothing to do here; the instruction backend switches its buffers."""

    @staticmethod
    def to_numpy(a: Any) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def cat(parts: list, axis: int = 0) -> np.ndarray:
        return np.concatenate(parts, axis=axis)

    @staticmethod
    def stack(parts: list) -> np.ndarray:
        return np.stack(parts)


NUMPY_OPS = NumpyOps()


@dataclass(frozen=True)
class LayerState:
    """Integer streaming state of one layer: the memory-bank ring ``(M, D)`` and the
    left-context key/value rings ``(C*N, D/N)`` (int8), with their heads and counts."""

    memory: Any
    mem_head: int
    mem_count: int
    lc_key: Any
    lc_value: Any
    lc_head: int
    lc_count: int


@dataclass(frozen=True)
class GoldenState:
    """One :class:`LayerState` per layer and the number of segments processed."""

    layers: tuple[LayerState, ...]
    segments: int = 0


def fold(x, n: int):
    """``(T, D) -> (T*N, D/N)`` row-major (sub-token j of token t on row t*N + j)."""
    return x.reshape(-1, x.shape[1] // n)


def unfold(x, n: int):
    """Inverse of :func:`fold`."""
    return x.reshape(-1, x.shape[1] * n)


def step_mask(n_memory: int, right_context: int, n_left: int, segment_length: int,
              n: int) -> np.ndarray:
    """Sub-token ``allowed`` mask ``(Tq*N, Tk*N)`` of one step: every query sees every key
    except that the summary's N rows do not see the memory's ``n_memory*N`` columns."""
    rows = (right_context + segment_length + 1) * n
    cols = (n_memory + right_context + n_left + segment_length) * n
    allowed = np.ones((rows, cols), dtype=bool)
    allowed[rows - n:, : n_memory * n] = False
    return allowed


class GoldenEncoder:
    """Streaming integer encoder over the tensors of a :class:`QuantModel`."""

    def __init__(self, qm: QuantModel, ops: Any = NUMPY_OPS):
        self.qm = qm
        self.cfg = qm.config.model
        self.ops = ops
        self.p = {k: ops.constant(k, v) for k, v in qm.tensors.items()}
        self.ints = {k: int(v[0]) for k, v in qm.tensors.items() if v.shape == (1,)}

    # -- building blocks -------------------------------------------------------------------

    def _linear(self, name: str, x, relu: bool = False, out_bits: int = 8):
        o, p = self.ops, self.p
        acc = o.gemm_i32(x, p[name + ".weight"], p[name + ".bias"])
        requant = o.requantize_i16 if out_bits == 16 else o.requantize
        return requant(acc, p[name + ".m"], p[name + ".s"], relu=relu)

    def _layernorm(self, name: str, x, out_bits: int = 8):
        p, i = self.p, self.ints
        return self.ops.layernorm_i16(x, p[name + ".gamma"], p[name + ".beta"], i[name + ".m"],
                                      i[name + ".s"], i[name + ".eps"], out_bits)

    def _add(self, name: str, a, b):
        i = self.ints
        return self.ops.add_requant_i16(a, b, i[name + ".m_a"], i[name + ".m_b"], i[name + ".s"])

    def memory_in(self, layer: int, vec):
        """The vector entering bank ``layer >= 1`` at its ``attn_in`` scale: the previous
        layer's summary output, squashed (clamp, or the tanh table)."""
        o, p, i = self.ops, self.p, self.ints
        name = f"L{layer}.mem_in"
        if name + ".lut" in p:
            return o.lut_i8(vec, p[name + ".lut"])
        return o.clamp_i8(o.requantize(vec, i[name + ".m"], i[name + ".s"]), i[name + ".lo"],
                          i[name + ".hi"])

    # -- one layer, one segment ------------------------------------------------------------

    def layer_step(self, layer: int, x, st: LayerState, incoming, trace: bool = False
                   ) -> tuple[Any, Any, LayerState, dict | None]:
        """Rows ``x = [rc; segment]`` (int16, ``(R+L, D)``: the input frames for layer 0, the
        previous layer's output otherwise) -> ``(out, summary_out, state, trace)``; ``out``
        is int16, ``summary_out`` is ``attn_out``'s last row (before the memory squash). The
        memory bank of ``state`` has received ``incoming`` (the bank's vector of this step),
        and its left-context caches the segment's keys and values, once attention has read
        them."""
        c, o, p = self.cfg, self.ops, self.p
        n, r, length = c.fold_factor, c.right_context, c.segment_length
        h, hd = c.attn_heads, c.head_dim
        pre = f"L{layer}."
        o.begin_layer(layer)
        ln_in = self._layernorm(pre + "ln_in", x)
        summary = o.mean_pool_i8(ln_in[r:], axis=0).reshape(1, -1)
        q = self._linear(pre + "q", fold(o.cat([ln_in, summary]), n))
        mem = o.ring_view(st.memory, st.mem_head, st.mem_count)
        kv_in = fold(o.cat([mem, ln_in]), n)
        k_new, v_new = self._linear(pre + "k", kv_in), self._linear(pre + "v", kv_in)
        split = (mem.shape[0] + r) * n
        lc_k = o.ring_view(st.lc_key, st.lc_head, st.lc_count)
        lc_v = o.ring_view(st.lc_value, st.lc_head, st.lc_count)
        k = o.cat([k_new[:split], lc_k, k_new[split:]])
        v = o.cat([v_new[:split], lc_v, v_new[split:]])
        allowed = step_mask(mem.shape[0], r, lc_k.shape[0] // n, length, n)
        mask = o.asarray(allowed)
        heads = [slice(j * hd, (j + 1) * hd) for j in range(h)]
        # every head's scores, then head by head softmax and P@V (the independent ops in the
        # order the instruction backend overlaps best)
        scores = [o.requantize(o.gemm_i32(q[:, cols], k[:, cols].T), p[pre + "score.m"],
                               p[pre + "score.s"]) for cols in heads]
        probs, ctx = [], []
        for j, cols in enumerate(heads):
            v_j = v[:, cols]
            p_j = o.softmax_u8(scores[j], p[pre + "score.exp_lut"], mask)
            acc = o.gemm_i32(o.u8_to_i8(p_j), v_j, o.zero_point_bias(v_j))
            ctx.append(o.requantize(acc, p[pre + "ctx.m"], p[pre + "ctx.s"]))
            if trace:
                probs.append(p_j)
            else:                  # only the trace keeps them (a backend may reuse their space)
                scores[j] = None
        # the state's rings are read: push this step's rows (the backend spills them early)
        new_k, head, count = o.ring_push(st.lc_key, st.lc_head, st.lc_count, k_new[split:])
        new_v, _, _ = o.ring_push(st.lc_value, st.lc_head, st.lc_count, v_new[split:])
        mem_ring, mem_head, mem_count = o.ring_push(st.memory, st.mem_head, st.mem_count,
                                                    incoming.reshape(1, -1))
        context = o.cat(ctx, axis=1)
        out_proj = self._linear(pre + "out", context)
        attn_out = unfold(out_proj, n)
        resid1 = self._add(pre + "resid1", attn_out[:-1], x)
        ln_ffn = self._layernorm(pre + "ln_ffn", resid1)
        fn = c.ffn_fold
        hidden = self._linear(pre + "fc1", fold(ln_ffn, fn), relu=True)
        ffn_out = unfold(self._linear(pre + "fc2", hidden), fn)
        resid2 = self._add(pre + "resid2", ffn_out, resid1)
        # int16 residual stream; int8 after the last layer when a classifier takes it
        last = layer == c.n_layers - 1 and c.vocab
        out = self._layernorm(pre + "ln_out", resid2, out_bits=8 if last else 16)
        new_st = LayerState(mem_ring, mem_head, mem_count, new_k, new_v, head, count)
        tr = None
        if trace:
            tr = {"x_in": x, "ln_in": ln_in, "summary": summary, "q": q, "k": k, "v": v,
                  "allowed": allowed, "scores": o.stack(scores), "probs": o.stack(probs),
                  "context": context, "out_proj": out_proj, "attn_out": attn_out,
                  "resid1": resid1, "ln_ffn": ln_ffn, "ffn_hidden": hidden,
                  "ffn_out": ffn_out, "resid2": resid2, "ln_out": out}
        return out, attn_out[-1], new_st, tr

    # -- the encoder -----------------------------------------------------------------------

    def init_state(self) -> GoldenState:
        c, o = self.cfg, self.ops
        empty = LayerState(
            o.asarray(np.zeros((c.max_memory, c.d_model), np.int8)), 0, 0,
            o.asarray(np.zeros((c.left_context * c.fold_factor, c.folded_dim), np.int8)),
            o.asarray(np.zeros((c.left_context * c.fold_factor, c.folded_dim), np.int8)), 0, 0)
        return GoldenState(tuple(empty for _ in range(c.n_layers)), 0)

    def quantize_input(self, frames: np.ndarray) -> np.ndarray:
        """Float frames ``(T, input_dim)`` -> the host's integer rows (its one float step;
        float64 arithmetic): int16 ``sat16(floor(x / s_input + 1/2))``, or with an input
        projection int8 features ``sat8(floor(x / s_features + 1/2))``."""
        x = np.asarray(frames, dtype=np.float64)
        if self.cfg.n_features:
            return intops.saturate_i8(np.floor(x / self.qm.scales["features"] + 0.5))
        return intops.saturate_i16(np.floor(x / self.qm.scales["input"] + 0.5))

    def infer(self, chunk, state: GoldenState | None = None, trace: bool = False
              ) -> tuple[Any, GoldenState, list[dict] | None]:
        """One streaming step on a chunk ``(L+R, input_dim)`` (segment, then right context;
        int16 rows, or int8 features with an input projection) -> ``(segment output, state,
        traces)``; the output is ``(L, D)`` int16 at the last layer's ln_out scale, or with a
        classifier the ``(L, vocab)`` int8 logits (scale ``logits``).
        Traces hold the integer tensors of every layer; ``probs`` are the unsigned 8-bit
        probabilities (the array operand is ``probs - 128``)."""
        c, o, i = self.cfg, self.ops, self.ints
        length, r = c.segment_length, c.right_context
        if tuple(chunk.shape) != (length + r, c.input_dim):
            raise ValueError(f"chunk must have shape {(length + r, c.input_dim)} (segment_length"
                             f" + right_context rows), got {tuple(chunk.shape)}")
        state = self.init_state() if state is None else state
        x = o.cat([chunk[length:], chunk[:length]])
        if c.n_features:
            x = self._linear(HEAD, x, out_bits=16)
        incoming = o.requantize(o.sum_rows_i16(x[r:], axis=0), i["input_mem.m"],
                                i["input_mem.s"])
        layers, traces = [], []
        for layer, st in enumerate(state.layers):
            out, summary_out, st2, tr = self.layer_step(layer, x, st, incoming, trace)
            layers.append(st2)
            if layer + 1 < c.n_layers:
                incoming = self.memory_in(layer + 1, summary_out)
                if tr is not None:
                    tr["new_memory"] = incoming
            traces.append(tr)
            x = out
        # the classifier follows the last layer (a run of the first layers only stops before)
        full = len(state.layers) == c.n_layers
        out = self._linear(TAIL, x[r:]) if c.vocab and full else x[r:]
        return out, GoldenState(tuple(layers), state.segments + 1), traces if trace else None

    def chunks(self, frames_q) -> list[Any]:
        """The streaming chunks ``frames[s*L : (s+1)*L + R]`` of an utterance."""
        c = self.cfg
        body = frames_q.shape[0] - c.right_context
        if body < c.segment_length or body % c.segment_length:
            raise ValueError(f"utterance of {frames_q.shape[0]} frames is not n*"
                             f"{c.segment_length} + {c.right_context}")
        return [frames_q[s * c.segment_length: (s + 1) * c.segment_length + c.right_context]
                for s in range(body // c.segment_length)]

    def stream(self, frames_q) -> Any:
        """Run a whole integer utterance chunk by chunk -> ``(S*L, output_dim)``."""
        state, outs = None, []
        for chunk in self.chunks(frames_q):
            out, state, _ = self.infer(chunk, state)
            outs.append(out)
        return self.ops.cat(outs)


# ----------------------------------------------------------------------------- accuracy report


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum ref**2 / sum (ref - test)**2)``; ``inf`` when identical."""
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((ref - np.asarray(test, np.float64)) ** 2))
    sig = float(np.sum(ref**2))
    if err == 0:
        return math.inf
    return 10 * math.log10(sig / err) if sig > 0 else -math.inf


#: Trace key -> activation point whose scale dequantizes it (None: fixed prob scale).
TRACE_POINTS = {"ln_in": "attn_in", "summary": "attn_in", "q": "q", "k": "k", "v": "v",
                "scores": "score", "probs": "prob", "context": "ctx", "attn_out": "attn_out",
                "resid1": "resid1", "ln_ffn": "ln_ffn", "ffn_hidden": "ffn_hidden",
                "ffn_out": "ffn_out", "resid2": "resid2", "ln_out": "ln_out"}


def compare_with_float(qm: QuantModel, n_segments: int, input_seed: int,
                       per_op: bool = False) -> dict[str, Any]:
    """Stream the same seeded utterance through the float model and the golden model.

    Returns ``sqnr_db`` (final encoder output), ``sqnr_db_per_layer`` (each layer's output over
    all segments) and, with ``per_op``, ``sqnr_db_per_op`` (``{layer: {trace key: dB}}``, masked
    scores excluded). The input comes from :func:`model.calibration.calibration_utterance`.
    """
    import torch

    from model.calibration import calibration_utterance
    from model.encoder import build_model

    cfg = qm.config
    model = build_model(cfg, seed=qm.seed)
    frames = calibration_utterance(cfg, n_segments, input_seed)
    gold = GoldenEncoder(qm)
    frames_q = gold.quantize_input(frames)
    n_layers = cfg.model.n_layers
    acc: dict[tuple[int, str], tuple[list, list]] = {}
    fstate, gstate = None, None
    keys = TRACE_POINTS if per_op else {"ln_out": "ln_out"}
    with torch.no_grad(), torch_single_thread():
        for fchunk, gchunk in zip(model.chunks(torch.as_tensor(frames)),
                                  gold.chunks(frames_q), strict=True):
            _, fstate, ftr = model.infer_trace(fchunk, fstate)
            _, gstate, gtr = gold.infer(gchunk, gstate, trace=True)
            for layer in range(n_layers):
                for key, point in keys.items():
                    f = ftr[layer][key].double().numpy()
                    g = gtr[layer][key].astype(np.float64) * qm.scale(layer, point)
                    if key in ("scores", "probs"):
                        keep = np.isfinite(f) if key == "scores" else np.broadcast_to(
                            gtr[layer]["allowed"], f.shape)
                        f, g = f[keep], g[keep]
                    fs, gs = acc.setdefault((layer, key), ([], []))
                    fs.append(f.ravel())
                    gs.append(g.ravel())

    def db(layer: int, key: str) -> float:
        fs, gs = acc[(layer, key)]
        return sqnr_db(np.concatenate(fs), np.concatenate(gs))

    report: dict[str, Any] = {
        "sqnr_db": db(n_layers - 1, "ln_out"),
        "sqnr_db_per_layer": [db(layer, "ln_out") for layer in range(n_layers)],
        "segments": n_segments, "input_seed": input_seed}
    if per_op:
        report["sqnr_db_per_op"] = {layer: {key: db(layer, key) for key in TRACE_POINTS}
                                    for layer in range(n_layers)}
    return report
