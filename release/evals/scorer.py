"""lm-eval models for the live torch module: stock HFLM, and a prefix-cache scorer that agrees with it.

`StockLM` is lm-eval's own HFLM (its `_loglikelihood_tokens`: collation, truncation, slicing, greedy
check), counting the tokens it feeds the model and able to hide its progress bars. `PrefixCacheLM` keeps
everything HFLM does (tokenisation via `_encode_pair`, prompts, metrics, filters) and replaces just
`_loglikelihood_tokens`: requests sharing a context are scored from one forward pass over that context; its
cache (KV, sliding-window or recurrent state) is copied across the options (`Cache.reorder_cache`, which
every transformers cache layer implements), and all options' continuation tokens run as one right-padded
batch. Causal attention means right padding never reaches a real position, as in HFLM's own batches.
Requests that gain nothing (every option one token long: HFLM already shares that context) or that HFLM
would left-truncate go through the stock path unchanged.

Memory: neither path materialises `[batch, sequence, vocab]` logits or log-probabilities beyond the scored
positions. Stock HFLM runs `log_softmax` in fp32 over the whole padded batch (8 x 1.1k MuSR tokens x a 262k
vocabulary = 9.2 GB, on top of 4.6 GB of bf16 logits); `StockLM._model_call` asks the model for the logits
of the last K positions only (`logits_to_keep`), K = the batch's right padding plus the longest continuation
of the call, which covers every row's continuation. HFLM's own slicing then picks the same positions (it
offsets by `logits.shape[1] - padded length`, as for prompt-tuning's virtual tokens), so the log-likelihoods
are HFLM's. The fast path asks for the last position of the context and the continuation positions only.
A model without `logits_to_keep` computes full logits, which are cut before the log-softmax.

Self-check (why it is precision-aware). The fast path computes the same sums as HFLM in another order:
the context alone, then the options against its cache, with other matrix shapes and attention kernels. In
floating point that changes the rounding, and the difference grows with the dtype's epsilon, the model's
depth and the prompt length: on real-depth models with MuSR prompts, fast vs stock differs by 0.26-0.42
nats in bf16 and 1e-3-9e-3 in fp32 (GPU), and stock vs stock at batch 1 vs 8 already differs by 3e-3 in
fp32. A fixed tolerance is either too tight for bf16 (the scorer turned itself off everywhere) or too loose
for fp32 (a real defect passes). So the check measures the noise of this model, dtype, device and prompt:
the first `verify` contexts scored from a cache are also scored by the stock path twice, once as configured
and once as a noise probe: another batch composition (each option alone; all together when the batch is 1)
with `rounding_noise` active, which rounds a random 1/16 of every matrix product's outputs to the other
neighbouring value, as another kernel or batch shape does (on GPUs the composition alone already rounds
differently; on CPUs it often rounds identically, hence the flips). Same algorithm, same weights: their
difference is rounding noise by construction. The fast path passes when every option satisfies

    |LL_fast - LL_stock| <= noise_factor * max(noise, one unit in the last place of LL)

and it picks the option the stock path picks unless the stock path's margin between the two is within that
tolerance. `noise_factor` (4) covers the fast path's own rounding, of the same kind: checked on all 20
stories of the MuSR benchmark subset with the tiny Gemma 4 father, fast vs stock was at most 1.5x the probe
in fp32 (median 0.4x) and 0.7x in bf16 (median 0.2x); the issue's fp32 GPU figures are 3e-3 stock vs stock
and up to 9e-3 fast vs stock. A real defect is not rounding: a cache that drops positions or a
continuation slice off by one moves log-likelihoods by whole nats on a trained model, and by 3-200x the
probe on the random tiny ones (the tests plant both, in bf16 and fp32). Verified contexts return the stock
answers. One check per scorer suffices: the algorithm does not depend on the weights, so a search that
changes the genome needs no new check. Greedy flags are not compared: multiple-choice metrics never read
them, and one near-tied position flips them under rounding alone. When the check fails, the scorer says so
and uses the stock path from then on (e.g. a custom model whose cache cannot be copied exactly).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

log = logging.getLogger(__name__)

FLIP_FRACTION = 1 / 16  # share of each matrix product's outputs the noise probe rounds the other way
NOISE_FACTOR = 4.0  # allowed fast-vs-stock difference, in units of the measured stock-vs-stock noise


@contextlib.contextmanager
def rounding_noise(model: torch.nn.Module, seed: int = 0):
    """While active, a random fraction `FLIP_FRACTION` of every `nn.Linear` output is rounded the other way:
    moved to its neighbouring value in its own dtype (one unit in the last place, up or down at random; seeded).
    That is what another kernel or batch shape does to a matrix product: its sums accumulate in another order
    and some of them round to the other neighbour. The model's weights are not touched."""
    generators: dict[torch.device, torch.Generator] = {}

    def perturb(module, args, output):
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return output
        g = generators.setdefault(output.device, torch.Generator(device=output.device).manual_seed(seed))
        draw = torch.rand((2, *output.shape), generator=g, device=output.device)
        away = torch.where(draw[1] < 0.5, float("inf"), float("-inf")).to(output.dtype)
        return torch.where(draw[0] < FLIP_FRACTION, torch.nextafter(output, away), output)

    handles = [m.register_forward_hook(perturb) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


class StockLM(HFLM):
    """lm-eval's HFLM on an in-memory module, counting the tokens (positions) it runs through the model, and
    computing logits only for the positions a batch scores (module docstring)."""

    def __init__(self, *args, progress: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress
        self.tokens_processed = 0
        self._encoded: dict[tuple, list[int]] = {}
        self._longest_continuation: int | None = None  # of the requests being scored; None: keep every position
        self._logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        # The search scores the same prompts for every candidate: tokenise each one once per run.
        if kwargs:
            return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)
        key = (string, add_special_tokens, left_truncate_len)
        if key not in self._encoded:
            self._encoded[key] = super().tok_encode(string, add_special_tokens, left_truncate_len)
        return list(self._encoded[key])

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm or not self.progress)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return super().generate_until(requests, disable_tqdm=disable_tqdm or not self.progress)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        # Each generated token is one more position per row (with the KV cache: the prompt once, then one each).
        self.tokens_processed += out.numel()
        return out

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self.backend != "causal" or not requests:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        self._longest_continuation = max(len(cont) for _, _, cont in requests)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        finally:
            self._longest_continuation = None

    def positions_to_keep(self, inps: torch.Tensor) -> int:
        """How many trailing positions of this right-padded batch hold every row's continuation.

        Row b's continuation ends at its own length L_b and is at most the call's longest continuation C
        long, so it lies in the last (padded length - L_b) + C positions. HFLM pads with zeros: a row's
        trailing zeros bound its padding from above (a real token 0 only makes K larger, never too small).
        """
        width = inps.shape[1]
        if self._longest_continuation is None:
            return width
        nonzero = inps != 0
        # Trailing zeros of each row: position of the last nonzero token from the right.
        last = torch.where(nonzero.any(dim=1), width - 1 - nonzero.int().flip(1).argmax(dim=1), -1)
        padding = int((width - 1 - last).max())
        return min(width, padding + self._longest_continuation)

    def _model_call(self, inps, attn_mask=None, labels=None):
        self.tokens_processed += inps.numel()
        keep = self.positions_to_keep(inps) if attn_mask is None and labels is None else inps.shape[1]
        if keep == inps.shape[1]:
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            if self._logits_to_keep:
                return self.model(inps, logits_to_keep=keep).logits
            return self.model(inps).logits[:, -keep:]


class PrefixCacheLM(StockLM):
    """HFLM that computes each shared context once and scores every option from its cache."""

    def __init__(self, *args, verify: int = 2, noise_factor: float = NOISE_FACTOR, **kwargs):
        super().__init__(*args, **kwargs)
        self.verify_left, self.noise_factor = verify, noise_factor
        self.checks: list[dict] = []  # one entry per verified context: what the self-check measured
        params = inspect.signature(self.model.forward).parameters
        # transformers 5 renamed past_key_values to cache; custom models may still use the old name.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._cache_ok = self.backend == "causal"
        if not self._cache_ok:
            log.warning("prefix-cache scorer: %s backend, using the stock lm-eval path", self.backend)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        # Rolling windows share no context to cache: lm-eval's own path, unchanged.
        self._rolling = True
        try:
            return super().loglikelihood_rolling(requests, disable_tqdm)
        finally:
            self._rolling = False

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if getattr(self, "_rolling", False):
            return StockLM._loglikelihood_tokens(self, requests, disable_tqdm, override_bs)
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, _) in enumerate(requests):
            by_context.setdefault(tuple(ctx), []).append(i)
        cached, stock = [], []
        for ctx, idx in by_context.items():
            conts = [requests[i][2] for i in idx]
            (cached if self._worth_caching(ctx, conts) else stock).append(idx)
        results: list = [None] * len(requests)
        stock_idx = [i for idx in stock for i in idx]
        if stock_idx:
            out = super()._loglikelihood_tokens([requests[i] for i in stock_idx], disable_tqdm, override_bs)
            for i, r in zip(stock_idx, out, strict=True):
                results[i] = r
        for idx in tqdm(cached, desc="Scoring contexts (prefix cache)", disable=disable_tqdm or self.rank != 0):
            group = [requests[i] for i in idx]
            scored = self._score_context(list(group[0][1]), [r[2] for r in group]) if self._cache_ok else None
            if scored is not None and self.verify_left > 0:
                scored = self._verify(group, scored, override_bs)
            if scored is None:  # no usable cache: the stock path for this context
                scored = super()._loglikelihood_tokens(group, True, override_bs)
            for i, answer in zip(idx, scored, strict=True):
                results[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
        return results

    @property
    def caching(self) -> bool:
        """False once the scorer fell back to the stock path for good (no cache, or a failed check)."""
        return self._cache_ok

    @property
    def verified(self) -> int:
        return len(self.checks)

    @property
    def max_verified_dll(self) -> float:
        return max((c["max_dll"] for c in self.checks), default=0.0)

    def _stock_twice(self, group, override_bs) -> tuple[list, list]:
        """The stock path's answers, and again in another batch composition with rounding-sized noise injected
        at every linear layer (module docstring): their difference is this model's floating-point noise."""
        stock = StockLM._loglikelihood_tokens(self, group, True, override_bs)
        configured = self.batch_size_per_gpu
        self.batch_size_per_gpu = 1 if configured != 1 else len(group)
        try:
            with rounding_noise(self.model):
                other = StockLM._loglikelihood_tokens(self, group, True, override_bs)
        finally:
            self.batch_size_per_gpu = configured
        return stock, other

    def _verify(self, group, fast: list[tuple[float, bool]], override_bs) -> list[tuple[float, bool]]:
        """Judge the fast answers for one context against the stock path, within the stock path's own noise."""
        self.verify_left -= 1
        stock, other = self._stock_twice(group, override_bs)
        # Log-likelihoods are sums in the softmax dtype: a unit in their last place is the finest difference.
        summed_in = self.softmax_dtype or getattr(self.model, "dtype", torch.float32)
        resolution = torch.finfo(summed_in).eps * max(abs(b[0]) for b in stock)
        noise = max(max(abs(a[0] - b[0]) for a, b in zip(stock, other, strict=True)), resolution)
        tolerance = self.noise_factor * noise
        worst = max(abs(a[0] - b[0]) for a, b in zip(fast, stock, strict=True))
        pick_fast, pick_stock = (max(range(len(lls)), key=lambda j: lls[j][0]) for lls in (fast, stock))
        margin = stock[pick_stock][0] - stock[pick_fast][0]  # 0 when both pick the same option
        check = {"max_dll": worst, "noise": noise, "tolerance": tolerance, "same_choice": pick_fast == pick_stock,
                 "stock_margin": margin, "options": len(group)}
        self.checks.append(check)
        if worst <= tolerance and margin <= tolerance:
            log.debug("prefix-cache check passed: %s", check)
            return stock  # the reference answers cost nothing more here
        log.warning("prefix-cache scorer disagrees with stock lm-eval on %s beyond floating-point noise "
                    "(max |dLL| %.2e, tolerance %.2e = %g x noise %.2e; same choice: %s): using the stock path "
                    "from now on", type(self.model).__name__, worst, tolerance, self.noise_factor, noise,
                    pick_fast == pick_stock)
        self._cache_ok = False
        return stock

    def _worth_caching(self, ctx: tuple[int, ...], conts: list[list[int]]) -> bool:
        if not self._cache_ok or max(len(c) for c in conts) < 2:
            return False
        if len(ctx) + max(len(c) for c in conts) > self.max_length + 1:
            log.warning("context of %d tokens exceeds max_length %d: stock (left-truncating) path",
                        len(ctx), self.max_length)
            return False
        return True

    def _forward(self, input_ids: torch.Tensor, **kwargs):
        self.tokens_processed += input_ids.numel()
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                             enabled=self.mixed_precision_dtype is not None):
            return self.model(input_ids=input_ids, use_cache=True, **kwargs)

    def _log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)  # as HFLM does

    def _prefix(self, ctx: list[int]):
        """One forward pass over the context: (log-probs of the next token [vocab], its cache), or None."""
        prefix = torch.tensor([ctx], dtype=torch.long, device=self.device)
        out = self._forward(prefix, **({"logits_to_keep": 1} if self._logits_to_keep else {}))
        cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
        if cache is None or not hasattr(cache, "reorder_cache"):
            log.warning("prefix-cache scorer: %s returned no reorderable cache; using the stock path",
                        type(self.model).__name__)
            self._cache_ok = False
            return None
        return self._log_softmax(out.logits[:, -1])[0], cache  # predicts every option's first token

    @staticmethod
    def _tail_tokens(cont: list[int]) -> list[int]:
        """The tokens an option feeds after the context: all but its last (position t predicts token t+1)."""
        return cont[:-1]

    def _score_context(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]] | None:
        prefixed = self._prefix(ctx)
        if prefixed is None:
            return None
        first, cache = prefixed

        # Per option: log-probs over its continuation positions [len(cont), vocab].
        option_logprobs: dict[int, torch.Tensor] = {j: first.unsqueeze(0) for j, c in enumerate(conts) if len(c) == 1}
        multi = [j for j, c in enumerate(conts) if len(c) > 1]
        step = max(int(self.batch_size), 1) if str(self.batch_size).isdigit() else len(multi)
        chunks = [multi[k:k + step] for k in range(0, len(multi), step)]
        for n, chunk in enumerate(chunks):
            # The forward below appends to the cache: every chunk but the last works on a copy.
            chunk_cache = cache if n == len(chunks) - 1 else copy.deepcopy(cache)
            chunk_cache.reorder_cache(torch.zeros(len(chunk), dtype=torch.long, device=self.device))
            width = max(len(conts[j]) - 1 for j in chunk)
            tails = torch.zeros(len(chunk), width, dtype=torch.long, device=self.device)
            for row, j in enumerate(chunk):
                tail = self._tail_tokens(conts[j])
                tails[row, : len(tail)] = torch.tensor(tail, device=self.device)
            # [chunk, width, vocab]: continuation positions only (right-padded to the chunk's longest option).
            logprobs = self._log_softmax(self._forward(tails, **{self._cache_arg: chunk_cache}).logits)
            for row, j in enumerate(chunk):
                option_logprobs[j] = torch.cat([first.unsqueeze(0), logprobs[row, : len(conts[j]) - 1]])

        answers = []
        for j, cont in enumerate(conts):
            logprobs = option_logprobs[j].unsqueeze(0)  # [1, len(cont), vocab], as HFLM slices it
            target = torch.tensor(cont, dtype=torch.long, device=self.device).unsqueeze(0)
            greedy = bool((logprobs.argmax(dim=-1) == target).all())
            answers.append((float(torch.gather(logprobs, 2, target.unsqueeze(-1)).squeeze(-1).sum()), greedy))
        return answers
