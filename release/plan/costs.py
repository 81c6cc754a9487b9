"""What a release will cost, computed from the child's tensor list and the search subsets, without weights.

- download: the bytes of the files the pull selects (release/parents/selection.py) vs the repos' sizes;
- the search hybrid: parameters (every child tensor of the search form) and bytes at the search dtype;
- tokens per candidate: the search subset's requests built by lm-eval, tokenised with the father's
  tokenizer as lm-eval's HFLM does, and counted the way the scorer batches them (`count_tokens`);
- FLOPs per candidate: 2 x (matmul parameters a token passes through) x tokens, plus attention scores;
  an upper bound: every free layer runs its mother FFN, and the LM head runs at every position;
- peak memory of one evaluation batch: the hybrid plus the most demanding forward pass (the larger of its
  phases: the layers' activations, the LM head's logits, their fp32 log-softmax) plus the log-probabilities
  the scorer still holds from the forwards before it;
- time: FLOPs / (GPU peak x utilisation) for the GPUs in release/plan/gpus.py;
- peak memory of the diagnostics, which stream (release/mri/): the MRI holds the father and one mother FFN
  at a time plus the probe's kept activations; the health check the child alone (then the father and one
  mother FFN, then the mother), plus the child's kept probe activations.
Checked against measured runs in tests/test_plan.py (tiny) and bench/bench_plan.py (mid-size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from release.mri.prompts import probe_prompts
from release.plan.gpus import GPUS, UTILISATION

if TYPE_CHECKING:
    from release.plan.checks import ParentPlan

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
STORED_BYTES = {"BF16": 2, "F16": 2, "F32": 4}  # safetensors dtypes
EMBEDDING_SUFFIXES = ("embed_tokens.weight", "embed_tokens_per_layer.weight")


@dataclass(frozen=True)
class Request:
    context: list[int]
    continuation: list[int]  # generate: one placeholder per token it may generate
    kind: str = "loglikelihood"  # or "rolling" (a loglikelihood_rolling window), "generate" (generate_until)


@dataclass
class TokenCount:
    tokens: int  # token positions the model runs per candidate
    requests: int
    longest: int  # longest prompt (context + continuation) in tokens
    forwards: list[tuple[int, int, int]]  # each forward pass: (rows, positions, positions whose logits are kept)
    # per forward: rows x positions of fp32 log-probabilities [.., vocab] the scorer still holds from earlier ones
    carried: list[int] = field(default_factory=list)

    @property
    def largest_batch(self) -> tuple[int, int]:
        rows, width, _ = max(self.forwards, key=lambda f: f[0] * f[1], default=(0, 0, 0))
        return rows, width


def hybrid_params(plan: ParentPlan) -> int:
    total = 0
    for t in plan.tensors.values():
        n = 1
        for d in t.shape:
            n *= d
        total += n
    return total


def matmul_params_per_token(plan: ParentPlan) -> int:
    """Parameters a token multiplies through: every 2-D weight but embedding tables, the LM head (tied to
    the embeddings) once, and the mother FFNs of free layers (worst case: all of them blending)."""
    cfg = plan.config
    father, mother_per_layer = 0, {}
    for name, t in plan.tensors.items():
        if len(t.shape) != 2:
            continue
        n = t.shape[0] * t.shape[1]
        if name.startswith("model.mother_ffns."):
            mother_per_layer[int(name.split(".")[2])] = mother_per_layer.get(int(name.split(".")[2]), 0) + n
        elif name.endswith(EMBEDDING_SUFFIXES):
            if name == "model.embed_tokens.weight" and getattr(cfg, "tie_word_embeddings", True):
                father += n  # the LM head
        else:
            father += n
    free = set(range(cfg.num_hidden_layers)) - set(plan.frozen)
    mother = sum(mother_per_layer.get(cfg.layer_map[i], 0) for i in free)
    return father + mother


def count_tokens(requests: list[Request], batch_size: int, max_length: int, scorer: str) -> TokenCount:
    """Token positions per candidate, and every forward pass, batched as release.evals.scorer does: the
    fast path runs a shared context once (last logits only) and the options' tails against its cache; the
    stock path is lm-eval's HFLM (one row per distinct context + continuation[:-1], longest first, padded
    per batch) keeping logits for the batch's padding plus the call's longest continuation."""
    stock: list[Request] = []
    forwards: list[tuple[int, int, int]] = []
    carried: list[int] = []
    by_context: dict[tuple[int, ...], list[Request]] = {}
    for r in requests:
        if r.kind == "loglikelihood":
            by_context.setdefault(tuple(r.context), []).append(r)
    forwards += _other_kinds(requests, batch_size, max_length)
    for ctx, group in by_context.items():
        longest_cont = max(len(r.continuation) for r in group)
        if scorer != "fast" or longest_cont < 2 or len(ctx) + longest_cont > max_length + 1:
            stock.extend(group)
            continue
        forwards.append((1, len(ctx), 1))  # the context once, keeping only its last logits
        carried.append(0)
        multi = [r for r in group if len(r.continuation) > 1]
        held, previous = 1, 0  # the context's next-token log-probs; the option rows kept so far; the last chunk's
        for k in range(0, len(multi), batch_size):
            chunk = multi[k:k + batch_size]
            width = max(len(r.continuation) - 1 for r in chunk)
            forwards.append((len(chunk), width, width))
            carried.append(held + previous)
            held += sum(len(r.continuation) for r in chunk)  # each option's log-probs, copied out of the chunk's
            previous = len(chunk) * width
    if stock:
        longest_cont = max(len(r.continuation) for r in stock)
        inputs = {tuple((r.context + r.continuation)[-(max_length + 1):][:-1]) for r in stock}
        lengths = sorted((len(i) for i in inputs), reverse=True)
        previous = 0
        for k in range(0, len(lengths), batch_size):
            batch = lengths[k:k + batch_size]
            keep = min(batch[0], batch[0] - batch[-1] + longest_cont)
            forwards.append((len(batch), batch[0], keep))
            # HFLM rebinds its log-probs variable only once the next batch's are computed: the previous
            # batch's stay alive through this whole forward.
            carried.append(previous)
            previous = len(batch) * keep
    longest = max((len(r.context) + len(r.continuation) for r in requests), default=0)
    return TokenCount(sum(rows * width for rows, width, _ in forwards), len(requests), longest, forwards, carried)


def _other_kinds(requests: list[Request], batch_size: int, max_length: int) -> list[tuple[int, int, int]]:
    """Forward passes of the stock lm-eval paths: rolling windows in batches of `batch_size` (in order, as
    HFLM's loglikelihood_rolling does), generation as one prompt prefill plus one position per new token
    and row, at most max_gen_toks (longest contexts first, as HFLM's generate_until batches them)."""
    forwards = []
    rolling = [r for r in requests if r.kind == "rolling"]
    for k in range(0, len(rolling), batch_size):
        widths = [len((r.context + r.continuation)[-(max_length + 1):][:-1]) for r in rolling[k:k + batch_size]]
        longest = max(len(r.continuation) for r in rolling[k:k + batch_size])
        forwards.append((len(widths), max(widths), min(max(widths), max(widths) - min(widths) + longest)))
    generate = sorted((r for r in requests if r.kind == "generate"), key=lambda r: -len(r.context))
    for k in range(0, len(generate), batch_size):
        batch = generate[k:k + batch_size]
        forwards.append((len(batch), len(batch[0].context) + max(len(r.continuation) for r in batch), 1))
    return forwards


def flops_per_candidate(plan: ParentPlan, count: TokenCount) -> float:
    cfg = plan.config
    linear = 2 * matmul_params_per_token(plan) * count.tokens
    # Attention scores and weighted sum: ~4 x heads x head_dim x (positions attended) per token and layer;
    # a token attends to about half of its prompt on average.
    attended = min(count.longest / 2, getattr(cfg, "sliding_window", None) or count.longest)
    attention = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * attended * count.tokens
    return float(linear + attention)


def forward_bytes(plan: ParentPlan, rows: int, width: int, keep: int, dtype: str) -> int:
    """Activation bytes alive at the peak of one forward pass (on top of the weights): the largest of its
    phases, which are never alive at once (measured: bench/bench_plan.py)."""
    cfg = plan.config
    act = DTYPE_BYTES[dtype]
    logits = rows * keep * cfg.vocab_size
    # Alive through the whole pass: the KV cache of every layer and the per-layer inputs (Gemma 4's PLE).
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim
    ple = cfg.num_hidden_layers * (getattr(cfg, "hidden_size_per_layer_input", 0) or 0)
    # Inside the layer running: residual, norms and attention (~4 x hidden), and the gate/up activations of
    # one FFN (a blending layer runs the father's FFN, then the mother's: never both at once).
    mother_width = getattr(cfg, "mother_intermediate_size", 0) or 0
    layer = 4 * cfg.hidden_size + 2 * max(cfg.intermediate_size, mother_width)
    layers = rows * width * (kv + 2 * ple + layer) * act
    # The LM head, then Gemma's logit soft-capping (x / cap, tanh, x * cap): each step allocates its result
    # while its input is alive, so two logits tensors of the model dtype, the cache still referenced.
    head = logits * 2 * act + rows * width * (kv + 2 * ple) * act
    # Back in the scorer: the kept logits and their fp32 log-softmax.
    scoring = logits * (act + 4)
    return int(max(layers, head, scoring))


def _forward_peaks(plan: ParentPlan, count: TokenCount, dtype: str) -> list[int]:
    """Per forward: its own peak plus the fp32 log-probabilities the scorer still holds from earlier forwards."""
    carried = count.carried or [0] * len(count.forwards)
    return [forward_bytes(plan, *f, dtype) + held * plan.config.vocab_size * 4
            for f, held in zip(count.forwards, carried, strict=True)]


def peak_batch_bytes(plan: ParentPlan, count: TokenCount, dtype: str) -> int:
    """Activation bytes at the most demanding forward pass of a candidate."""
    return max(_forward_peaks(plan, count, dtype), default=0)


def peak_forward(plan: ParentPlan, count: TokenCount, dtype: str) -> tuple[int, int, int]:
    """(rows, positions, kept positions) of the forward pass where a candidate's memory peaks."""
    peaks = _forward_peaks(plan, count, dtype)
    return count.forwards[peaks.index(max(peaks))]


@dataclass
class Estimate:
    hybrid_params: int
    hybrid_bytes: int
    dtype: str
    tokens: TokenCount | None
    flops: float | None
    peak_bytes: int | None  # hybrid + largest batch
    seconds: dict[str, float]  # GPU name -> seconds per candidate


def estimate(plan: ParentPlan, count: TokenCount | None, dtype: str) -> Estimate:
    params = hybrid_params(plan)
    weights = params * DTYPE_BYTES[dtype]
    if count is None:
        return Estimate(params, weights, dtype, None, None, None, {})
    flops = flops_per_candidate(plan, count)
    seconds = {gpu: flops / (peak * UTILISATION) for gpu, peak in GPUS.items()}
    return Estimate(params, weights, dtype, count, flops, weights + peak_batch_bytes(plan, count, dtype), seconds)


@dataclass
class DiagnosticsPeak:
    """Bytes the streaming diagnostics hold at their peak on the search device, in the search dtype: weights,
    the probe activations they keep, and the health check's perplexity logits (host RSS on CPU adds the shard
    pages mapped while a model loads)."""

    mri: int
    health: int
    mri_weights: int
    health_weights: int
    mri_kept: int
    health_kept: int
    perplexity_logits: int
    probe_positions: int
    # On CPU, RSS also counts the shard pages mapped while `from_pretrained` loads the child (the health
    # check loads it as users do): up to its stored bytes on top of `health` while it loads.
    child_stored: int = 0


def probe_positions(tokenizer, per_domain: int | None, seed: int) -> tuple[int, int]:
    """(padded, real) positions of the probe batches: one right-padded batch per domain, as the MRI and the
    health check run them."""
    padded = real = 0
    for prompts in probe_prompts(per_domain, seed).values():
        lengths = [len(tokenizer(p).input_ids) for p in prompts]
        padded, real = padded + len(prompts) * max(lengths), real + sum(lengths)
    return padded, real


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def diagnostics_peak(plan: ParentPlan, dtype: str, positions: tuple[int, int],
                     calibration_tokens: int = 512) -> DiagnosticsPeak:
    """The MRI's and the health check's peak: the largest of the phases each streams through. `positions`:
    `probe_positions`; `calibration_tokens`: the perplexity text's length (the check reads 512 at most: the
    default, an upper bound)."""
    cfg, act = plan.config, DTYPE_BYTES[dtype]
    mother_ffns: dict[str, int] = {}
    father_only = 0
    for name, t in plan.tensors.items():
        if name.startswith("model.mother_ffns."):
            j = name.split(".")[2]
            mother_ffns[j] = mother_ffns.get(j, 0) + _numel(t.shape)
        else:
            father_only += _numel(t.shape)
    one_ffn = max(mother_ffns.values(), default=0)
    mother = sum(_numel(t.shape) for key, t in plan.mother.tensors.items()
                 if key.startswith(("model.language_model.", "lm_head.")))  # her text model, what the check loads
    child = hybrid_params(plan)  # an upper bound: every mapped mother FFN stored (every free layer blending)
    padded, real = positions
    per_position = cfg.hidden_size * cfg.num_hidden_layers * act  # one hidden-size vector per layer
    mri_kept = 2 * padded * per_position  # each layer's FFN-step input and father branch, padding included
    health_kept = 3 * real * per_position  # the child's FFN-step input and update, its hidden state: real tokens
    tokens = min(calibration_tokens, 512)

    def logits(vocab: int) -> int:  # the model's logits, their fp32 copy and the fp32 log-softmax
        return tokens * vocab * (act + 8)

    mri_weights = (father_only + one_ffn) * act
    health_weights = max(child, father_only + one_ffn, mother) * act
    perplexity = logits(cfg.vocab_size)
    health = max(child * act + health_kept + perplexity, (father_only + one_ffn) * act + health_kept,
                 mother * act + logits(plan.mother.config.get("text_config", plan.mother.config)["vocab_size"]))
    stored = sum(_numel(t.shape) * STORED_BYTES.get(t.dtype, 2) for t in plan.tensors.values())
    return DiagnosticsPeak(mri_weights + mri_kept, health, mri_weights, health_weights, mri_kept, health_kept,
                           perplexity, padded, stored)
