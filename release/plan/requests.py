"""The search subset's scoring requests, tokenised as the scorer will tokenise them, without a model.

lm-eval builds the requests (`Task.build_all_requests` on the search items, as `evaluate` does); each
(context, continuation) pair is encoded by HFLM's own `_encode_pair` with the father's tokenizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from release.config import ReleaseConfig
from release.plan.costs import Request

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "chat_template.jinja", "chat_template.json")


def _encoder(tokenizer):
    """An HFLM that only encodes: its own `_encode_pair`/`tok_encode`, no model behind it."""
    from release.evals.scorer import StockLM  # imports lm_eval and torch

    lm = object.__new__(StockLM)
    lm.tokenizer, lm.add_bos_token, lm.backend = tokenizer, None, "causal"
    lm.custom_prefix_token_id, lm._encoded = None, {}
    return lm


def encode_requests(pairs: list[tuple[str, str]], tokenizer) -> list[Request]:
    lm = _encoder(tokenizer)
    out = []
    for context, continuation in pairs:
        if context == "":  # as HFLM.loglikelihood: an empty context is the prefix token
            ctx, cont = [lm.prefix_token_id], lm.tok_encode(continuation)
        else:
            ctx, cont = lm._encode_pair(context, continuation)
        out.append(Request(list(ctx), list(cont)))
    return out


def search_pairs(suite) -> list[tuple[str, str]]:
    """(context, continuation) of every loglikelihood request of the search split."""
    pairs = []
    samples = suite.samples("search")
    for task in suite.tasks:
        for leaf, obj in task.leaves.items():
            if leaf not in samples:
                continue
            obj.build_all_requests(samples=samples[leaf], cache_requests=False)
            pairs += [tuple(inst.args[:2]) for inst in obj.instances]
    return pairs


def search_requests(config: ReleaseConfig, tokenizer) -> list[Request]:
    from release.evals import TaskSuite  # imports lm_eval and torch

    with tempfile.TemporaryDirectory(prefix="darwin-plan-") as tmp:
        suite = TaskSuite.from_spec(config.fitness, Path(tmp), config.search.seed)
        return encode_requests(search_pairs(suite), tokenizer)
