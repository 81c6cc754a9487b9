"""6. GPU: the search-form hybrid at full Genesis size, in bf16, on one GPU.

Random weights of the real shapes (Gemma 4 E4B father: 42 layers, hidden 2560, FFN 10240, per-layer
inputs 256, vocabulary 262144, KV sharing over the last 18 layers; every one of the 32 Qwen3.5-4B mother
FFNs of width 9216 stored): what the search holds in GPU memory. A candidate is what the search does
per genome: write the ratios, then score 100 MuSR-length prompts (~1,000 tokens each, log-likelihoods of
the last 32 positions), batched. Reported: memory after building, peak memory while scoring, and
candidate evaluations per minute, for a genome with every free layer active (the slowest case).

Needs a CUDA GPU: `python -m bench.bench_gpu` (about 2 minutes on an H200). Not part of `make bench`,
which runs on CPU. `run(tiny=True)` runs the same code at toy size on CPU (the test suite does that).
"""

from __future__ import annotations

import sys
import time

import torch

from bench.common import row

GENESIS = dict(layers=42, mother_layers=32, hidden=2560, father_ffn=10240, mother_ffn=9216, vocab=262_144,
               heads=8, kv_heads=2, head_dim=256, global_head_dim=512, ple=256, kv_shared=18, window=512,
               prompts=100, prompt_tokens=1024, scored_tokens=32, batch=8, candidates=3)
TINY = dict(layers=12, mother_layers=8, hidden=64, father_ffn=128, mother_ffn=96, vocab=512, heads=2,
            kv_heads=1, head_dim=16, global_head_dim=32, ple=8, kv_shared=4, window=16, prompts=6,
            prompt_tokens=48, scored_tokens=4, batch=4, candidates=2)
FROZEN = [15, 16, 22, 23, 24, 25]  # Genesis


def genesis_config(s: dict):
    from modeling.configuration_darwin import DarwinConfig
    from release.breeders.hybrid import default_layer_map

    layer_map = default_layer_map(s["layers"], s["mother_layers"])
    return DarwinConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["father_ffn"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        head_dim=s["head_dim"], global_head_dim=s["global_head_dim"], hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=131_072, sliding_window=s["window"],
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * (s["layers"] // 6),
        final_logit_softcapping=30.0, vocab_size_per_layer_input=s["vocab"],
        hidden_size_per_layer_input=s["ple"], num_kv_shared_layers=s["kv_shared"], tie_word_embeddings=True,
        mother_intermediate_size=s["mother_ffn"], mother_hidden_act="silu", layer_map=layer_map,
        stored_mother_layers=sorted(set(layer_map)),
    )


def build(s: dict, device: torch.device, dtype: torch.dtype):
    from modeling.modeling_darwin import DarwinForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = DarwinForCausalLM(genesis_config(s))
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


@torch.no_grad()
def score(model, prompts: torch.Tensor, s: dict) -> float:
    """Sum of the log-likelihoods of the last `scored_tokens` tokens of every prompt (one candidate)."""
    total = torch.zeros((), device=prompts.device, dtype=torch.float32)
    for batch in prompts.split(s["batch"]):
        logits = model(input_ids=batch, logits_to_keep=s["scored_tokens"] + 1, use_cache=False).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = batch[:, -s["scored_tokens"]:]
        total += logp.gather(-1, target.unsqueeze(-1)).sum()
    return total.item()  # one sync per candidate, as the search's fitness has


def run(tiny: bool = False) -> dict:
    s = TINY if tiny else GENESIS
    device = torch.device("cpu" if tiny else "cuda")
    if not tiny and not torch.cuda.is_available():
        print("   no CUDA GPU here: bench_gpu measures nothing (run it on a GPU box)")
        return {}
    dtype = torch.float32 if tiny else torch.bfloat16
    t0 = time.perf_counter()
    model = build(s, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    built_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    resident = torch.cuda.memory_allocated() if device.type == "cuda" else params * 4
    g = torch.Generator(device="cpu").manual_seed(0)
    prompts = torch.randint(0, s["vocab"], (s["prompts"], s["prompt_tokens"]), generator=g).to(device)
    genome = [0.0 if i in FROZEN else 0.25 for i in range(s["layers"])]
    model.set_ratios(genome)
    score(model, prompts[: s["batch"]], s)  # warm-up: kernels, allocator
    times = []
    for k in range(s["candidates"]):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.set_ratios([r * (1 + 0.1 * k) for r in genome])
        score(model, prompts, s)
        times.append(time.perf_counter() - start)
    per_candidate = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else resident
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (tiny)"
    print(f"   {name}: {params / 1e9:.2f} B parameters ({dtype}), built in {built_s:.0f} s; "
          f"{resident / 2**30:.1f} GiB resident, {peak / 2**30:.1f} GiB peak while scoring")
    print(f"   {s['prompts']} prompts x {s['prompt_tokens']} tokens per candidate: {per_candidate:.2f} s, "
          f"{60 / per_candidate:.1f} candidate evaluations per minute")
    prefix = "gpu_tiny" if tiny else "gpu"
    return {
        f"{prefix}_search_hybrid_memory": row(resident / 2**30, "GiB", "fits one GPU", peak_gib=round(peak / 2**30, 2),
                                              parameters=params, device=name),
        f"{prefix}_candidates_per_minute": row(60 / per_candidate, "candidates/min", "measured",
                                               prompts=s["prompts"], prompt_tokens=s["prompt_tokens"]),
    }


if __name__ == "__main__":
    run(tiny="--tiny" in sys.argv)
