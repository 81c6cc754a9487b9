"""8. Scorer memory: peak RSS of one scoring call above its baseline, divided by the model's own size.

Stock lm-eval (`HFLM._loglikelihood_tokens`) takes the logits of every position of a padded batch and an fp32
log-softmax over them: [batch, sequence, vocab] twice, whatever few positions it scores. With Gemma 4's 262k
vocabulary that dwarfs a small model and adds ~9 GB to a real one (8 x 1.1k MuSR tokens). Our stock path
(`StockLM`) asks the model for the scored positions' logits only; the fast path (`PrefixCacheLM`) for the
context's last position and the continuation positions. All three score the same requests.

Model: a Gemma 4 text decoder with the real 262,144-token vocabulary (tied embeddings, per-layer inputs,
logit softcapping) but hidden size 64 and 4 layers, fp32 on CPU, so that scoring memory is measured against
a model small enough to run here; batch 4, contexts of ~300 tokens, four options of 2-6 tokens each.

Fair because: each scorer runs alone in a fresh subprocess that has built the model and already scored a
short warm-up request (imports, allocator pools) before its baseline is read; the kernel's peak counter
(VmHWM, reset via clear_refs just before scoring) is read after. The largest logits tensor each path asks
the model for is also recorded (a hook on the LM head), which does not depend on the allocator.

    python -m bench bench_scorer_memory
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.common import proc_status, row

VOCAB, HIDDEN, LAYERS = 262_144, 64, 4
BATCH, CONTEXTS, OPTIONS, CONTEXT_TOKENS = 4, 4, 4, 300
SCORERS = ("lm-eval HFLM", "StockLM", "PrefixCacheLM")
# Ours: at most twice the model. At this size the model is little more than its 262k-row embedding, and the
# scored positions' fp32 logits (live two or three times with softcapping) compare with it; on the real 9.7B
# hybrid the same rows are ~2% of the model. HFLM's figure grows with sequence length x vocabulary instead.
TARGET = 2.0


def _model():
    import torch
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    config = Gemma4TextConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, global_head_dim=32,
        max_position_embeddings=4096, sliding_window=64, layer_types=["sliding_attention", "full_attention"] * 2,
        final_logit_softcapping=30.0, vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=8,
        num_kv_shared_layers=0, tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    torch.manual_seed(0)
    return Gemma4ForCausalLM(config).eval()


def _requests(seed: int = 0, contexts: int = CONTEXTS, length: int = CONTEXT_TOKENS):
    """(request string, context ids, continuation ids) triples, as HFLM's `_loglikelihood_tokens` takes them."""
    import random

    rng = random.Random(seed)
    requests = []
    for q in range(contexts):
        ctx = [2] + [rng.randrange(3, VOCAB) for _ in range(length + 7 * q)]
        for k in range(OPTIONS):
            cont = [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 6))]
            requests.append(((f"q{q}", f"o{k}"), ctx, cont))
    return requests


def scorer_process(name: str) -> None:
    """Runs in the subprocess: build, warm up, read the baseline, score, print the figures as JSON."""
    import gc

    import torch
    from lm_eval.models.huggingface import HFLM

    from release.evals.scorer import PrefixCacheLM, StockLM
    from release.tiny import father_tokenizer

    torch.set_num_threads(1)
    model = _model()
    kwargs = dict(pretrained=model, tokenizer=father_tokenizer(), backend="causal", batch_size=BATCH,
                  softmax_dtype=torch.float32, max_length=4096)
    lm = {"lm-eval HFLM": lambda: HFLM(**kwargs), "StockLM": lambda: StockLM(progress=False, **kwargs),
          "PrefixCacheLM": lambda: PrefixCacheLM(progress=False, verify=0, **kwargs)}[name]()
    largest = [0]

    def record(module, args, out):
        largest[0] = max(largest[0], out.numel() * out.element_size())

    model.get_output_embeddings().register_forward_hook(record)
    with torch.no_grad():
        lm._loglikelihood_tokens(_requests(seed=1, contexts=1, length=40), disable_tqdm=True)  # warm-up
    largest[0] = 0
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline = proc_status()["VmRSS"]
    with torch.no_grad():
        answers = lm._loglikelihood_tokens(_requests(), disable_tqdm=True)
    peak = proc_status()["VmHWM"]
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"baseline": baseline, "peak": peak, "model": model_bytes, "largest_logits": largest[0],
                      "loglikelihoods": [a[0] for a in answers]}), flush=True)


def _measure(name: str) -> dict:
    code = "import sys; from bench.bench_scorer_memory import scorer_process; scorer_process(sys.argv[1])"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, name], cwd=root, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"scorer subprocess for {name} failed with exit code {out.returncode} (see above)")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict:
    results = {name: _measure(name) for name in SCORERS}
    mb = 1e6
    model = results["StockLM"]["model"]
    stock_lls = results["lm-eval HFLM"]["loglikelihoods"]
    worst = {name: max(abs(a - b) for a, b in zip(stock_lls, r["loglikelihoods"], strict=True))
             for name, r in results.items()}
    print(f"   Gemma 4 text decoder, vocab {VOCAB:,}, hidden {HIDDEN}, {LAYERS} layers, fp32: {model / mb:.0f} MB; "
          f"batch {BATCH}, {CONTEXTS} contexts of ~{CONTEXT_TOKENS} tokens x {OPTIONS} options")
    print(f"   {'':15}{'peak - baseline':>17}{'/ model':>9}{'largest logits':>16}{'max |dLL| vs HFLM':>19}")
    ratio = {}
    for name, r in results.items():
        ratio[name] = (r["peak"] - r["baseline"]) / model
        print(f"   {name:15}{(r['peak'] - r['baseline']) / mb:>14.0f} MB{ratio[name]:>9.2f}"
              f"{r['largest_logits'] / mb:>13.1f} MB{worst[name]:>19.2e}")
    extra = {f"{key}_mb": round((results[name]["peak"] - results[name]["baseline"]) / mb, 1)
             for key, name in (("hflm", "lm-eval HFLM"), ("stock", "StockLM"), ("fast", "PrefixCacheLM"))}
    extra |= {f"{key}_largest_logits_mb": round(results[name]["largest_logits"] / mb, 2)
              for key, name in (("hflm", "lm-eval HFLM"), ("stock", "StockLM"), ("fast", "PrefixCacheLM"))}
    return {
        "scorer_memory_stock_per_model": row(ratio["StockLM"], "(peak RSS - baseline) / model size",
                                             f"<= {TARGET:g}", hflm_per_model=round(ratio["lm-eval HFLM"], 3),
                                             model_mb=round(model / mb, 1), max_abs_dll_vs_hflm=worst["StockLM"],
                                             **extra),
        "scorer_memory_fast_per_model": row(ratio["PrefixCacheLM"], "(peak RSS - baseline) / model size",
                                            f"<= {TARGET:g}", max_abs_dll_vs_hflm=worst["PrefixCacheLM"]),
        "scorer_memory_hflm_over_stock": row(
            (results["lm-eval HFLM"]["peak"] - results["lm-eval HFLM"]["baseline"])
            / max(results["StockLM"]["peak"] - results["StockLM"]["baseline"], 1),
            "x more scoring memory in lm-eval's HFLM than in StockLM", "> 1"),
    }


if __name__ == "__main__":
    run()
