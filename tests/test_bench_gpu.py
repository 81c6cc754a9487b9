"""The GPU benchmark script is ready for a GPU box: its Genesis shapes are right, and it runs (tiny, CPU)."""

import torch

from bench.bench_gpu import GENESIS, genesis_config, run


def test_genesis_search_hybrid_has_the_sizes_of_the_design():
    from modeling.modeling_darwin import DarwinForCausalLM

    config = genesis_config(GENESIS)
    with torch.device("meta"):
        model = DarwinForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    assert 9.6e9 < params < 9.9e9  # ~19.4 GB in bf16: father text decoder + every mapped mother FFN
    assert len(config.stored_mother_layers) == 32 and config.layer_map[-1] == 31
    assert config.kv_sharing_modes.count("reuse") == 18


def test_the_script_runs_at_toy_size_on_cpu():
    results = run(tiny=True)
    assert results["gpu_tiny_candidates_per_minute"]["value"] > 0
    assert results["gpu_tiny_search_hybrid_memory"]["parameters"] > 0
