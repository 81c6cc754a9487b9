"""GPUs the plan estimates time for: dense bf16 tensor-core peaks (vendor datasheets, no sparsity), FLOP/s."""

GPUS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}
UTILISATION = 0.4  # assumed share of peak a prefill-only scoring loop reaches; measure with bench_gpu
