"""The search subset's scoring requests, tokenised as the scorer will tokenise them, without a model.

lm-eval builds the requests (`Task.build_all_requests` on the search items, as `evaluate` does); each
(context, continuation) pair is encoded by HFLM's own `_encode_pair` with the father's tokenizer, a
loglikelihood_rolling text is cut into lm-eval's own rolling windows, and a generate_until context is
encoded as HFLM's generate_until does and counted with its `max_gen_toks` (an upper bound: generation
may stop earlier at a stop sequence).
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
    return [tuple(inst.args[:2]) for inst in search_instances(suite) if inst.request_type == "loglikelihood"]


def search_instances(suite) -> list:
    """Every lm-eval request (Instance) of the search split, built as lm-eval's evaluate builds them."""
    out = []
    samples = suite.samples("search")
    suite.reseed_fewshot()
    for task in suite.tasks:
        for leaf, obj in task.leaves.items():
            if leaf not in samples:
                continue
            obj.build_all_requests(samples=samples[leaf], cache_requests=False)
            out += list(obj.instances)
    return out


def encode_instances(instances: list, tokenizer, max_length: int, max_gen_toks: int | None = None) -> list[Request]:
    """Requests of every output type, tokenised as HFLM does (see the module docstring)."""
    from lm_eval import utils

    lm = _encoder(tokenizer)
    pairs = [tuple(i.args[:2]) for i in instances if i.request_type == "loglikelihood"]
    out = encode_requests(pairs, tokenizer)
    for inst in instances:
        if inst.request_type == "loglikelihood_rolling":
            windows = utils.get_rolling_token_windows(token_list=lm.tok_encode(inst.args[0]),
                                                      prefix_token=lm.prefix_token_id, max_seq_len=max_length,
                                                      context_len=1)
            out += [Request(list(ctx), list(cont), "rolling") for ctx, cont in map(utils.make_disjoint_window, windows)]
        elif inst.request_type == "generate_until":
            kwargs = inst.args[1] if len(inst.args) > 1 and isinstance(inst.args[1], dict) else {}
            new = int(kwargs.get("max_gen_toks") or max_gen_toks or 256)  # 256: HFLM's default
            ctx = lm.tok_encode(inst.args[0], left_truncate_len=max_length - new)
            out.append(Request(list(ctx), [0] * new, "generate"))
    return out


def search_requests(config: ReleaseConfig, tokenizer, max_length: int = 8192) -> list[Request]:
    from release.evals import TaskSuite  # imports lm_eval and torch

    with tempfile.TemporaryDirectory(prefix="darwin-plan-") as tmp:
        suite = TaskSuite.from_spec(config.fitness, Path(tmp), config.search.seed)
        return encode_instances(search_instances(suite), tokenizer, max_length, config.fitness.max_gen_toks)
