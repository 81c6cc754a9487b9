"""lm-eval models for the live torch module: stock HFLM, and a prefix-cache scorer that agrees with it.

`StockLM` is lm-eval's own HFLM, only counting the tokens it feeds the model and able to hide its
progress bars. `PrefixCacheLM` keeps everything HFLM does (tokenisation via `_encode_pair`, prompts,
metrics, filters) and replaces just `_loglikelihood_tokens`: requests sharing a context are scored
from one forward pass over that context; its cache (KV, sliding-window or recurrent state) is copied
across the options (`Cache.reorder_cache`, which every transformers cache layer implements), and all
options' continuation tokens run as one right-padded batch. Causal attention means right padding never
reaches a real position, as in HFLM's own batches.

Requests that gain nothing (every option one token long: HFLM already shares that context) or that HFLM
would left-truncate go through the stock path unchanged. The first `verify` contexts scored from a cache
are also scored by the stock path; if any log-likelihood differs by more than `tolerance` or the chosen
option differs, the scorer says so and uses the stock path from then on (e.g. a custom model whose cache
cannot be copied exactly).
"""

from __future__ import annotations

import copy
import inspect
import logging

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

log = logging.getLogger(__name__)


class StockLM(HFLM):
    """lm-eval's HFLM on an in-memory module, counting the tokens (positions) it runs through the model."""

    def __init__(self, *args, progress: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress
        self.tokens_processed = 0
        self._encoded: dict[tuple, list[int]] = {}

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

    def _model_call(self, inps, attn_mask=None, labels=None):
        self.tokens_processed += inps.numel()
        return super()._model_call(inps, attn_mask=attn_mask, labels=labels)


class PrefixCacheLM(StockLM):
    """HFLM that computes each shared context once and scores every option from its cache."""

    def __init__(self, *args, verify: int = 2, tolerance: float = 1e-4, **kwargs):
        super().__init__(*args, **kwargs)
        self.verify_left, self.tolerance = verify, tolerance
        self.verified, self.max_verified_dll = 0, 0.0
        params = inspect.signature(self.model.forward).parameters
        # transformers 5 renamed past_key_values to cache; custom models may still use the old name.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self._cache_ok = self.backend == "causal"
        if not self._cache_ok:
            log.warning("prefix-cache scorer: %s backend, using the stock lm-eval path", self.backend)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
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
                scored = self._verify(scored, super()._loglikelihood_tokens(group, True, override_bs))
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

    def _verify(self, fast: list[tuple[float, bool]], stock: list[tuple[float, bool]]) -> list[tuple[float, bool]]:
        self.verify_left -= 1
        self.verified += 1
        worst = max(abs(a[0] - b[0]) for a, b in zip(fast, stock, strict=True))
        self.max_verified_dll = max(self.max_verified_dll, worst)
        choice = [max(range(len(lls)), key=lambda j: lls[j][0]) for lls in (fast, stock)]
        same_choice = choice[0] == choice[1]
        if worst <= self.tolerance and same_choice and [a[1] for a in fast] == [b[1] for b in stock]:
            return fast
        log.warning("prefix-cache scorer disagrees with stock lm-eval on %s (max |dLL| %.2e, same choice: %s): "
                    "using the stock path from now on", type(self.model).__name__, worst, same_choice)
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

    def _score_context(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]] | None:
        prefix = torch.tensor([ctx], dtype=torch.long, device=self.device)
        out = self._forward(prefix, **({"logits_to_keep": 1} if self._logits_to_keep else {}))
        cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
        if cache is None or not hasattr(cache, "reorder_cache"):
            log.warning("prefix-cache scorer: %s returned no reorderable cache; using the stock path",
                        type(self.model).__name__)
            self._cache_ok = False
            return None
        first = self._log_softmax(out.logits[0, -1].unsqueeze(0))[0]  # predicts every option's first token

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
                tails[row, : len(conts[j]) - 1] = torch.tensor(conts[j][:-1], device=self.device)
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
