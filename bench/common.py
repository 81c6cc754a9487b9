"""Helpers shared by the benchmarks: a Darwin child at chosen widths, timing, and result rows."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch


def darwin_model(hidden: int, father_ffn: int, mother_ffn: int, layers: int, ratios=None, stored=None,
                 layer_kinds=None, vocab: int = 1024, heads: int = 8, head_dim: int = 256, dtype=torch.float32, seed: int = 0,
                 weights_only: bool = False):
    """A randomly initialised Darwin child (search form unless `stored` says otherwise).

    `weights_only`: skip random init (slow at real widths) and fill parameters with a constant; buffers are
    left unset, so such a model is for timing weight operations, not for forward passes.
    """
    from modeling.configuration_darwin import DarwinConfig
    from modeling.modeling_darwin import DarwinForCausalLM

    config = DarwinConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=father_ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 4), head_dim=head_dim,
        global_head_dim=head_dim, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=4096,
        sliding_window=512, layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"],
        final_logit_softcapping=30.0, vocab_size_per_layer_input=vocab, hidden_size_per_layer_input=64,
        num_kv_shared_layers=0, tie_word_embeddings=True, mother_intermediate_size=mother_ffn,
        mother_hidden_act="silu", ratios=ratios or [0.0] * layers, layer_map=list(range(layers)),
        stored_mother_layers=stored, layer_kinds=layer_kinds,
    )
    if weights_only:
        with torch.device("meta"):
            model = DarwinForCausalLM(config)
        model = model.to_empty(device="cpu").to(dtype)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.01)
        return model.eval()
    torch.manual_seed(seed)
    return DarwinForCausalLM(config).to(dtype).eval()


def median_seconds(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(value: float, unit: str, target: str, **extra) -> dict:
    return {"value": round(value, 4), "unit": unit, "target": target, **extra}


@contextmanager
def one_thread():
    """torch on one thread while measuring: on a shared machine oversubscribed OpenMP threads make the noise
    the signal."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def synthetic_search_config(folder, popsize: int, items: int, batch: int):
    """A cross-architecture release config for benchmarks: one CMA-ES generation on the synthetic task on CPU."""
    from release.config import FitnessSpec, GenomeSpec, ReleaseConfig, SearchSpec, TaskSpec

    return ReleaseConfig(
        name="bench", father={"repo": "bench/father"}, mother={"repo": "bench/mother"}, child={"repo": "bench/child"},
        genome=GenomeSpec(r_max=0.5, init_mean=0.25), runs_dir=folder,
        search=SearchSpec(popsize=popsize, sigma0=0.1, max_generations=1, seed=0, device="cpu", dtype="float32"),
        fitness=FitnessSpec(tasks=[TaskSpec(name="synthetic", weight=1.0, search_size=items)], batch_size=batch),
    )


def proc_status(pid: str = "self") -> dict[str, int]:
    """The memory figures of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, ...), in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            fields[name] = int(value.split()[0]) * 1024
    return fields
